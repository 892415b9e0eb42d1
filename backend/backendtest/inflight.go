package backendtest

import (
	"slices"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// inFlightTests check the operators' capabilities: backend.InFlightReader
// shows an instance's step lease, inbox and activity tasks as stored;
// backend.InstanceClaimer claims one given instance's step under the rules
// of every claim; backend.WorkerRegistry keeps, lists and prunes worker
// heartbeats. A backend without a capability skips its tests.
func inFlightTests() []test {
	return []test{
		{"StepLeaseAndTasks", testInFlightStepAndTasks},
		{"ParkedTask", testInFlightParked},
		{"UnknownInstance", func(t *testing.T, e *env) {
			_, err := e.inFlightReader().InFlight(e.ctx, "ghost")
			e.wantErr("InFlight(ghost)", err, backend.ErrInstanceNotFound)
		}},
		{"ClaimInstanceStep", testClaimInstanceStep},
		{"ClaimInstanceStepSuspended", testClaimInstanceStepSuspended},
		{"WorkerHeartbeats", testWorkerHeartbeats},
		{"WorkerGoneAndPrune", testWorkerGoneAndPrune},
		{"WorkerBadParams", func(t *testing.T, e *env) {
			r := e.workerRegistry()
			for _, p := range []*backend.UpsertWorkerParams{
				nil, {}, {Info: &backend.WorkerInfo{Name: "no id"}, TTL: time.Second},
				{Info: &backend.WorkerInfo{ID: "w"}}, // no TTL
			} {
				if err := r.UpsertWorker(e.ctx, p); err == nil {
					t.Errorf("UpsertWorker(%+v) = nil, want an error", p)
				}
			}
			if _, err := r.PruneWorkers(e.ctx, &backend.PruneWorkersParams{}); err == nil {
				t.Error("PruneWorkers without Before = nil, want an error")
			}
			l := e.listWorkers(e.t0)
			if len(l.Workers) != 0 {
				t.Fatalf("workers after bad upserts: %+v", l.Workers)
			}
		}},
	}
}

func (e *env) inFlightReader() backend.InFlightReader {
	e.t.Helper()
	r, ok := e.b.(backend.InFlightReader)
	if !ok {
		e.t.Skip("backend does not implement backend.InFlightReader")
	}
	return r
}

func (e *env) instanceClaimer() backend.InstanceClaimer {
	e.t.Helper()
	r, ok := e.b.(backend.InstanceClaimer)
	if !ok {
		e.t.Skip("backend does not implement backend.InstanceClaimer")
	}
	return r
}

func (e *env) workerRegistry() backend.WorkerRegistry {
	e.t.Helper()
	r, ok := e.b.(backend.WorkerRegistry)
	if !ok {
		e.t.Skip("backend does not implement backend.WorkerRegistry")
	}
	return r
}

// inFlight reads the in-flight work of id and fails on error.
func (e *env) inFlight(id string) *backend.InFlight {
	e.t.Helper()
	f, err := e.inFlightReader().InFlight(e.ctx, id)
	if err != nil {
		e.t.Fatalf("InFlight(%q): %v", id, err)
	}
	if f == nil || f.InstanceID != id || f.Now.IsZero() {
		e.t.Fatalf("InFlight(%q) = %+v: want the instance's view with the store's clock", id, f)
	}
	return f
}

func testInFlightStepAndTasks(t *testing.T, e *env) {
	e.inFlightReader()
	c := e.create("f", nil)
	f := e.inFlight("f")
	if f.Step.Owner != "" || f.Step.Attempt != 0 || f.Messages != 1 || len(f.Tasks) != 0 {
		t.Fatalf("new instance: %+v", f)
	}
	// A claimed step shows its owner, attempt and lease.
	owner := &backend.ClaimParams{Owner: "worker-a", LeaseDuration: lease, Now: e.t0}
	wi, err := e.b.ClaimOrchestrationStep(e.ctx, owner)
	if err != nil || wi == nil {
		t.Fatalf("ClaimOrchestrationStep = %v, %v", wi, err)
	}
	f = e.inFlight("f")
	if f.Step.Owner != "worker-a" || f.Step.Attempt != 1 || f.Step.Deliveries != 1 {
		t.Fatalf("claimed step: %+v", f.Step)
	}
	e.wantTime("step lease expiry", f.Step.ExpiresAt, e.t0.Add(lease))
	// The step schedules two tasks; one is claimed.
	one, two := task(c, 1), task(c, 2)
	two.Name, two.Options = "other", backend.ActivityOptions{AtMostOnce: true}
	e.commit(wi, e.t0, func(p *backend.CompleteOrchestrationStepParams) { p.ActivityTasks = []*backend.ActivityTask{one, two} })
	claim := &backend.ClaimParams{Owner: "worker-b", LeaseDuration: lease, Now: e.at(time.Second), ActivityNames: []string{"act"}}
	awi, err := e.b.ClaimActivity(e.ctx, claim)
	if err != nil || awi == nil || awi.Task.ID != one.ID {
		t.Fatalf("ClaimActivity = %+v, %v; want task 1", awi, err)
	}
	e.noErr("StartActivity", e.b.StartActivity(e.ctx, &backend.StartParams{ID: one.ID, Attempt: int64(awi.Attempt)}))
	f = e.inFlight("f")
	if f.Step.Owner != "" || f.Step.Deliveries != 0 || f.Step.Attempt != 1 || f.Messages != 0 {
		t.Fatalf("after the step: %+v, %d messages", f.Step, f.Messages)
	}
	if len(f.Tasks) != 2 {
		t.Fatalf("tasks: %+v, want 2", f.Tasks)
	}
	byID := map[int]*backend.TaskState{}
	for _, ts := range f.Tasks {
		byID[ts.TaskID] = ts
	}
	got1, got2 := byID[1], byID[2]
	if got1 == nil || got1.ID != one.ID || got1.Name != "act" || got1.ExecutionID != c.ExecutionID ||
		got1.Attempt != 1 || got1.StartedAttempt != 1 || got1.Owner != "worker-b" || got1.Parked {
		t.Fatalf("claimed task: %+v", got1)
	}
	e.wantTime("task 1 lease expiry", got1.ExpiresAt, e.at(time.Second+lease))
	e.wantTime("task 1 claimed at", got1.ClaimedAt, e.at(time.Second))
	e.wantTime("task 1 scheduled at", got1.ScheduledAt, e.t0)
	if got2 == nil || got2.Name != "other" || got2.Attempt != 0 || got2.StartedAttempt != 0 || got2.Owner != "" || !got2.ClaimedAt.IsZero() ||
		!got2.Options.AtMostOnce || !got2.VisibleAt.IsZero() {
		t.Fatalf("waiting task: %+v", got2)
	}
	// Handed back with a delay, the task shows when it is visible again.
	retry := e.at(time.Hour)
	e.noErr("AbandonActivity", e.b.AbandonActivity(e.ctx, &backend.AbandonParams{ID: one.ID, Attempt: int64(awi.Attempt), RetryAt: retry}))
	f = e.inFlight("f")
	for _, ts := range f.Tasks {
		if ts.TaskID == 1 {
			if ts.Owner != "" || ts.Attempt != 1 {
				t.Fatalf("handed-back task: %+v", ts)
			}
			e.wantTime("handed-back task visible at", ts.VisibleAt, retry)
		}
	}
	// A message waiting for a timer shows in the inbox count and time.
	fire := e.at(2 * time.Hour)
	e.enqueue(&backend.Message{ID: "f/timer", InstanceID: "f", VisibleAt: fire,
		Event: &backend.Event{Type: backend.EventTimerFired, TaskID: 3, FireAt: fire}})
	f = e.inFlight("f")
	if f.Messages != 1 {
		t.Fatalf("inbox: %d messages, want 1", f.Messages)
	}
	e.wantTime("next message at", f.NextMessageAt, fire)
	// A step handed back shows when it may be claimed again.
	swi := e.claimStep("f", fire)
	again := e.at(3 * time.Hour)
	e.noErr("AbandonOrchestrationStep", e.b.AbandonOrchestrationStep(e.ctx,
		&backend.AbandonParams{ID: "f", ExecutionID: c.ExecutionID, Attempt: swi.Attempt, RetryAt: again}))
	f = e.inFlight("f")
	if f.Step.Owner != "" || f.Step.Attempt != 2 || f.Step.Deliveries != 1 {
		t.Fatalf("handed-back step: %+v", f.Step)
	}
	e.wantTime("handed-back step claimable at", f.Step.ExpiresAt, again)
}

func testInFlightParked(t *testing.T, e *env) {
	e.inFlightReader()
	_, tasks := e.startWithTasks("p", 1)
	awi := e.claimActivity(tasks[0].ID, e.t0)
	e.end("p", backend.StatusCompleted, e.at(time.Second))
	f := e.inFlight("p")
	if len(f.Tasks) != 1 || !f.Tasks[0].Parked || f.Tasks[0].Attempt != awi.Attempt || f.Tasks[0].Owner != "backendtest" {
		t.Fatalf("tasks of a finished instance: %+v; want the held task, parked", f.Tasks)
	}
	e.wantErr("CompleteActivity(late)", e.b.CompleteActivity(e.ctx, completed(awi, e.at(2*time.Second))), backend.ErrInstanceFinished)
	if f := e.inFlight("p"); len(f.Tasks) != 0 {
		t.Fatalf("tasks after the late completion: %+v", f.Tasks)
	}
}

func testClaimInstanceStep(t *testing.T, e *env) {
	ic := e.instanceClaimer()
	e.create("a", nil)
	e.create("b", func(p *backend.CreateInstanceParams) { p.Now = e.at(time.Second) })
	e.create("later", func(p *backend.CreateInstanceParams) { p.StartAt = e.at(time.Hour) })
	claim := func(id string, now time.Time) *backend.OrchestrationWorkItem {
		t.Helper()
		wi, err := ic.ClaimInstanceStep(e.ctx, id, e.claimParams(now))
		if err != nil {
			t.Fatalf("ClaimInstanceStep(%q, Now=%s): %v", id, e.rel(now), err)
		}
		return wi
	}
	// b is claimed although a is older: the claim is of the instance named.
	wi := claim("b", e.at(time.Minute))
	if wi == nil || wi.Instance.ID != "b" || wi.Attempt != 1 || wi.Deliveries != 1 || len(wi.Messages) != 1 ||
		wi.Messages[0].Event.Type != backend.EventExecutionStarted {
		t.Fatalf("ClaimInstanceStep(b) = %+v", wi)
	}
	e.wantTime("lease expiry", wi.LeaseExpiresAt, e.at(time.Minute+lease))
	for _, tc := range []struct {
		id  string
		now time.Time
		why string
	}{
		{"b", e.at(time.Minute), "its lease is live"},
		{"ghost", e.t0, "it does not exist"},
		{"later", e.at(time.Minute), "its only message is not visible yet"},
	} {
		if got := claim(tc.id, tc.now); got != nil {
			t.Fatalf("ClaimInstanceStep(%q) claimed attempt %d; want nothing: %s", tc.id, got.Attempt, tc.why)
		}
	}
	// The other claims do not take b either, and still take a.
	e.claimEach(e.at(time.Minute), "a")
	// The lease lapses: b is claimed again with the next attempt number,
	// and the first delivery is fenced.
	again := claim("b", e.at(time.Minute+2*lease))
	if again == nil || again.Attempt != 2 || again.Deliveries != 2 {
		t.Fatalf("ClaimInstanceStep(b) after the lease lapsed = %+v; want attempt 2", again)
	}
	e.wantErr("CompleteOrchestrationStep(first delivery)",
		e.b.CompleteOrchestrationStep(e.ctx, stepParams(wi, e.at(time.Minute))), backend.ErrLeaseLost)
	e.commit(again, e.at(time.Minute+2*lease), nil)
	// With its inbox empty, nothing is claimed.
	if got := claim("b", e.at(time.Hour)); got != nil {
		t.Fatalf("ClaimInstanceStep(b) with an empty inbox = attempt %d", got.Attempt)
	}
	if _, err := ic.ClaimInstanceStep(e.ctx, "b", &backend.ClaimParams{Owner: "x"}); err == nil {
		t.Fatal("ClaimInstanceStep without a lease duration = nil error")
	}
	// The later instance is claimable once its start is due.
	if got := claim("later", e.at(time.Hour)); got == nil || got.Attempt != 1 {
		t.Fatalf("ClaimInstanceStep(later) when due = %+v", got)
	}
}

func testClaimInstanceStepSuspended(t *testing.T, e *env) {
	ic := e.instanceClaimer()
	e.start("s", func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusSuspended
		p.Suspension = &backend.Suspension{Reason: "test", Since: e.t0}
	})
	e.enqueue(raised("s", "s/ev", "ev"))
	if wi, err := ic.ClaimInstanceStep(e.ctx, "s", e.claimParams(e.at(time.Minute))); err != nil || wi != nil {
		t.Fatalf("ClaimInstanceStep(suspended, only an event) = %+v, %v; want nothing", wi, err)
	}
	e.enqueue(&backend.Message{ID: "s/term", InstanceID: "s", Event: &backend.Event{Type: backend.EventExecutionTerminated, Reason: "stop"}})
	wi, err := ic.ClaimInstanceStep(e.ctx, "s", e.claimParams(e.at(time.Minute)))
	if err != nil || wi == nil {
		t.Fatalf("ClaimInstanceStep(suspended, with a terminate) = %v, %v", wi, err)
	}
	e.wantMessages(wi, "s/term")
}

// listWorkers lists the workers judged at now and fails on error.
func (e *env) listWorkers(now time.Time) *backend.WorkerList {
	e.t.Helper()
	l, err := e.workerRegistry().ListWorkers(e.ctx, &backend.ListWorkersParams{Now: now})
	if err != nil {
		e.t.Fatalf("ListWorkers: %v", err)
	}
	if l == nil || l.Now.IsZero() {
		e.t.Fatalf("ListWorkers = %+v: want a list with the clock", l)
	}
	return l
}

func (e *env) upsertWorker(w *backend.WorkerInfo, ttl time.Duration, gone bool, now time.Time) {
	e.t.Helper()
	info := *w
	if err := e.workerRegistry().UpsertWorker(e.ctx, &backend.UpsertWorkerParams{Info: &info, TTL: ttl, Gone: gone, Now: now}); err != nil {
		e.t.Fatalf("UpsertWorker(%q): %v", w.ID, err)
	}
}

func testWorkerHeartbeats(t *testing.T, e *env) {
	e.workerRegistry()
	if l := e.listWorkers(time.Time{}); len(l.Workers) != 0 || l.Now.Before(time.Now().Add(-time.Minute)) {
		t.Fatalf("fresh store: %+v; want no worker and the store's clock", l)
	}
	a := &backend.WorkerInfo{ID: "a-1", Name: "host:1", Host: "host", PID: 1, Version: "shop v1.2",
		Orchestrations: []string{"Order", "Refund"}, Activities: []string{"Charge"}, Entities: []string{"Counter"},
		OrchestrationSlots: 8, OrchestrationBusy: 2, ActivitySlots: 16, ActivityBusy: 5}
	b := &backend.WorkerInfo{ID: "b-1", Name: "host:2", Activities: []string{"Ship"}}
	e.upsertWorker(a, 30*time.Second, false, e.t0)
	e.upsertWorker(b, 30*time.Second, false, e.at(time.Second))
	l := e.listWorkers(e.at(2 * time.Second))
	e.wantTime("list time", l.Now, e.at(2*time.Second))
	if len(l.Workers) != 2 || l.Workers[0].ID != "b-1" || l.Workers[1].ID != "a-1" {
		t.Fatalf("workers: %+v; want b-1 then a-1 (newest heartbeat first)", l.Workers)
	}
	got := l.Workers[1]
	if got.Name != a.Name || got.Host != a.Host || got.PID != a.PID || got.Version != a.Version ||
		!slices.Equal(got.Orchestrations, a.Orchestrations) || !slices.Equal(got.Activities, a.Activities) ||
		!slices.Equal(got.Entities, a.Entities) || got.OrchestrationSlots != 8 || got.OrchestrationBusy != 2 ||
		got.ActivitySlots != 16 || got.ActivityBusy != 5 || got.Stopping || !got.GoneAt.IsZero() {
		t.Fatalf("worker a: %+v, want %+v", got, a)
	}
	e.wantTime("a started", got.StartedAt, e.t0)
	e.wantTime("a heartbeat", got.HeartbeatAt, e.t0)
	e.wantTime("a expires", got.ExpiresAt, e.at(30*time.Second))
	if !got.Live(l.Now) || len(l.Workers[0].Orchestrations) != 0 || l.Workers[0].Orchestrations == nil {
		t.Fatalf("a live = %v; b's orchestrations %#v (want empty, not nil)", got.Live(l.Now), l.Workers[0].Orchestrations)
	}
	// A later heartbeat replaces what it says and keeps the start.
	a2 := *a
	a2.ActivityBusy, a2.Stopping, a2.Activities = 0, true, []string{"Charge", "Refund"}
	e.upsertWorker(&a2, 30*time.Second, false, e.at(20*time.Second))
	l = e.listWorkers(e.at(35 * time.Second))
	if len(l.Workers) != 2 || l.Workers[0].ID != "a-1" {
		t.Fatalf("workers: %+v; want a-1 first", l.Workers)
	}
	got = l.Workers[0]
	if got.ActivityBusy != 0 || !got.Stopping || !slices.Equal(got.Activities, a2.Activities) {
		t.Fatalf("worker a after its second heartbeat: %+v", got)
	}
	e.wantTime("a started", got.StartedAt, e.t0)
	e.wantTime("a heartbeat", got.HeartbeatAt, e.at(20*time.Second))
	if !got.Live(l.Now) || l.Workers[1].Live(l.Now) {
		t.Fatalf("at t0+35s: a live %v (want true), b live %v (want false: its heartbeat expired)",
			got.Live(l.Now), l.Workers[1].Live(l.Now))
	}
}

func testWorkerGoneAndPrune(t *testing.T, e *env) {
	r := e.workerRegistry()
	for i, id := range []string{"old", "gone", "live"} {
		e.upsertWorker(&backend.WorkerInfo{ID: id, Name: id}, time.Minute, false, e.at(time.Duration(i)*time.Hour))
	}
	e.upsertWorker(&backend.WorkerInfo{ID: "gone", Name: "gone"}, 0, true, e.at(90*time.Minute))
	l := e.listWorkers(e.at(2 * time.Hour))
	live := map[string]bool{}
	for _, w := range l.Workers {
		live[w.ID] = w.Live(l.Now)
		if w.ID == "gone" {
			e.wantTime("gone at", w.GoneAt, e.at(90*time.Minute))
		}
	}
	if len(l.Workers) != 3 || live["old"] || live["gone"] || !live["live"] {
		t.Fatalf("workers: %+v; live %v: want only live live", l.Workers, live)
	}
	n, err := r.PruneWorkers(e.ctx, &backend.PruneWorkersParams{Before: e.at(30 * time.Minute)})
	if err != nil || n != 1 {
		t.Fatalf("PruneWorkers(before t0+30m) = %d, %v; want 1 (old)", n, err)
	}
	l = e.listWorkers(e.at(2 * time.Hour))
	var ids []string
	for _, w := range l.Workers {
		ids = append(ids, w.ID)
	}
	if !slices.Equal(ids, []string{"live", "gone"}) {
		t.Fatalf("after the prune: %q; want live, gone", ids)
	}
}
