package backendtest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

func stepTests() []test {
	return []test{
		{"AllEffectsVisibleAfterCommit", testAllEffectsVisible},
		{"RejectedStepLandsNothing", testRejectedStepLandsNothing},
		{"ConsumedMessagesGone", testConsumedMessagesGone},
		{"MessagesArrivingDuringStepRemain", testMessagesDuringStepRemain},
		{"ClaimsOldestMessageFirst", testClaimOldestFirst},
		{"ConcurrentWorkersConsumeEachMessageOnce", testConcurrentWorkers},
	}
}

// fullStep is the effects of a step of instance p (execution exec) at now
// that touches every kind of state: history, status, custom status, two
// activity tasks, a timer to itself, an event to instance "other", and a
// sub-orchestration "child".
func fullStep(p *backend.CompleteOrchestrationStepParams, c *backend.CreateInstanceParams, now time.Time) {
	id, exec := c.ID, c.ExecutionID
	p.CustomStatus = []byte(`"busy"`)
	p.ActivityTasks = []*backend.ActivityTask{task(c, 1), task(c, 2)}
	p.Messages = []*backend.Message{
		{
			ID: backend.TaskMessageID(id, exec, 3), InstanceID: id, ExecutionID: exec,
			Event:     &backend.Event{Type: backend.EventTimerFired, Timestamp: now, TaskID: 3, FireAt: now.Add(time.Hour)},
			VisibleAt: now.Add(time.Hour),
		},
		{
			ID: backend.TaskMessageID(id, exec, 4), InstanceID: "other",
			Event: &backend.Event{Type: backend.EventEventRaised, Timestamp: now, Name: "ping", Input: []byte(`"from ` + id + `"`)},
		},
	}
	p.StartInstances = []*backend.CreateInstanceParams{{
		ID: id + "-child", Name: "childOrch", ExecutionID: id + "-child-e1", Input: []byte(`"child input"`),
		Parent: &backend.ParentRef{InstanceID: id, ExecutionID: exec, TaskID: 5}, Now: now,
	}}
	p.NewEvents = append(p.NewEvents,
		&backend.Event{Type: backend.EventTaskScheduled, Timestamp: now, TaskID: 1, Name: "act"},
		&backend.Event{Type: backend.EventTaskScheduled, Timestamp: now, TaskID: 2, Name: "act"},
		&backend.Event{Type: backend.EventTimerCreated, Timestamp: now, TaskID: 3, FireAt: now.Add(time.Hour)},
		&backend.Event{Type: backend.EventEventSent, Timestamp: now, TaskID: 4, InstanceID: "other", Name: "ping"},
		&backend.Event{Type: backend.EventSubOrchestrationCreated, Timestamp: now, TaskID: 5, InstanceID: id + "-child", Name: "childOrch"},
	)
}

func testAllEffectsVisible(t *testing.T, e *env) {
	e.start("other", nil)
	c := e.create("p", nil)
	p1 := e.commit(e.claimStep("p", e.t0), e.t0, nil)

	now := e.at(time.Minute)
	e.enqueue(raised("p", "wake", "wake"))
	p2 := e.commit(e.claimStep("p", now), now, func(p *backend.CompleteOrchestrationStepParams) { fullStep(p, c, now) })

	inst := e.wantStatus("p", backend.StatusRunning)
	e.wantBytes("CustomStatus", inst.CustomStatus, p2.CustomStatus)
	e.wantEvents("history after two steps", e.history("p"), append(p1.NewEvents, p2.NewEvents...))

	child := e.wantStatus("p-child", backend.StatusPending)
	if child.Name != "childOrch" || child.ExecutionID != "p-child-e1" || child.Parent == nil || *child.Parent != *p2.StartInstances[0].Parent {
		t.Fatalf("child = %q/%q parent %+v, want childOrch/p-child-e1 parent %+v", child.Name, child.ExecutionID, child.Parent, p2.StartInstances[0].Parent)
	}

	later := e.at(2 * time.Minute)
	steps := e.claimEach(later, "other", "p-child") // p's timer is not due
	e.wantMessages(steps["other"], backend.TaskMessageID("p", c.ExecutionID, 4))
	e.wantMessages(steps["p-child"], backend.StartMessageID("p-child", "p-child-e1"))
	e.commit(steps["other"], later, nil)
	e.commit(steps["p-child"], later, nil)

	var got []string
	for wi := e.tryClaimActivity(later); wi != nil; wi = e.tryClaimActivity(later) {
		got = append(got, wi.Task.ID)
	}
	slices.Sort(got)
	if want := []string{p2.ActivityTasks[0].ID, p2.ActivityTasks[1].ID}; !slices.Equal(got, want) {
		t.Fatalf("claimed activity tasks %q, want %q", got, want)
	}

	e.wantMessages(e.claimStep("p", e.at(time.Hour+time.Minute)), backend.TaskMessageID("p", c.ExecutionID, 3))
}

func keys[V any](m map[string]V) []string {
	ks := []string{}
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// testRejectedStepLandsNothing commits a step from a delivery that lost its
// lease to a newer claim, with every kind of effect, and checks that none of
// them landed.
func testRejectedStepLandsNothing(t *testing.T, e *env) {
	e.start("other", nil)
	c := e.create("p", nil)
	e.commit(e.claimStep("p", e.t0), e.t0, func(p *backend.CompleteOrchestrationStepParams) { p.CustomStatus = []byte(`"before"`) })
	e.enqueue(raised("p", "e1", "e1"))
	e.enqueue(raised("p", "e2", "e2"))
	historyBefore := e.history("p")

	old := e.claimStep("p", e.at(time.Minute))
	cur := e.claimStep("p", e.at(3*time.Minute)) // old's lease lapsed at t0+2m
	if cur.Attempt <= old.Attempt {
		t.Fatalf("re-claim after lease expiry: Attempt %d after %d, want it to grow", cur.Attempt, old.Attempt)
	}

	now := e.at(4 * time.Minute)
	p := stepParams(old, now)
	fullStep(p, c, now)
	p.Status = backend.StatusCompleted
	p.Output = []byte(`"stale output"`)
	err := e.b.CompleteOrchestrationStep(e.ctx, p)
	e.wantErr("CompleteOrchestrationStep from a superseded delivery", err, backend.ErrLeaseLost)

	inst := e.wantStatus("p", backend.StatusRunning)
	e.wantBytes("CustomStatus after a rejected step", inst.CustomStatus, []byte(`"before"`))
	if inst.Output != nil || !inst.CompletedAt.IsZero() {
		t.Fatalf("rejected step set Output %q / CompletedAt %v", inst.Output, inst.CompletedAt)
	}
	e.wantEvents("history after a rejected step", e.history("p"), historyBefore)
	_, err = e.b.GetInstance(e.ctx, "p-child")
	e.wantErr("GetInstance of a child started by a rejected step", err, backend.ErrInstanceNotFound)
	far := e.at(3 * time.Hour)
	e.noActivity(far, "tasks of a rejected step")

	// The current delivery gives up; the next one still sees e1 and e2, which
	// the rejected step tried to consume, and nothing the rejected step sent.
	e.noErr("AbandonOrchestrationStep", e.b.AbandonOrchestrationStep(e.ctx, &backend.AbandonParams{ID: "p", Attempt: cur.Attempt}))
	e.wantMessages(e.claimStep("p", far), "e1", "e2")
	e.noStep(far, `"other" must not get the rejected step's event`)
}

func testConsumedMessagesGone(t *testing.T, e *env) {
	e.start("a", nil)
	for _, id := range []string{"e1", "e2", "e3"} {
		e.enqueue(raised("a", id, id))
	}
	now := e.at(time.Minute)
	wi := e.claimStep("a", now)
	e.wantMessages(wi, "e1", "e2", "e3")
	e.commit(wi, now, func(p *backend.CompleteOrchestrationStepParams) {
		p.ConsumedMessageIDs = []string{"e1", "e3"}
	})
	e.wantMessages(e.claimStep("a", now), "e2")
}

func testMessagesDuringStepRemain(t *testing.T, e *env) {
	e.start("a", nil)
	e.enqueue(raised("a", "e1", "e1"))
	now := e.at(time.Minute)
	wi := e.claimStep("a", now)
	e.enqueue(raised("a", "e2", "e2"))
	e.commit(wi, now, nil) // consumes e1 only
	// The commit released the lease: e2 is claimable at once.
	e.wantMessages(e.claimStep("a", now), "e2")
}

func testClaimOldestFirst(t *testing.T, e *env) {
	e.create("newer", func(p *backend.CreateInstanceParams) { p.Now = e.at(time.Second) })
	e.create("older", nil)
	now := e.at(time.Minute)
	if wi := e.claimStep("older", now); wi.Attempt != 1 {
		t.Fatalf("Attempt = %d, want 1", wi.Attempt)
	}
	e.claimStep("newer", now)
}

// testConcurrentWorkers runs workers that claim and commit steps of many
// instances at once until no work is left: every message must reach the
// history of its instance exactly once.
func testConcurrentWorkers(t *testing.T, e *env) {
	const instances, events, workers = 10, 5, 6
	for i := range instances {
		id := fmt.Sprint("w", i)
		e.create(id, nil)
		for j := range events {
			e.enqueue(raised(id, fmt.Sprintf("%s/e%d", id, j), "e"))
		}
	}
	now := e.at(time.Minute)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w := range workers {
		wg.Go(func() {
			for {
				wi, err := e.b.ClaimOrchestrationStep(e.ctx, &backend.ClaimParams{Owner: fmt.Sprint("worker-", w), LeaseDuration: time.Hour, Now: now})
				if err == nil && wi != nil {
					err = e.b.CompleteOrchestrationStep(e.ctx, stepParams(wi, now))
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
				if err != nil || wi == nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d worker calls failed; first: %v", len(errs), errs[0])
	}
	e.noStep(now, "the workers consumed every message")
	for i := range instances {
		id := fmt.Sprint("w", i)
		got := map[string]int{}
		for _, ev := range e.history(id) {
			switch ev.Type {
			case backend.EventExecutionStarted:
				got["start"]++
			case backend.EventEventRaised:
				got[string(ev.Input)]++
			}
		}
		if len(got) != events+1 {
			t.Fatalf("history of %s holds %d distinct messages (%v), want %d", id, len(got), got, events+1)
		}
		for k, n := range got {
			if n != 1 {
				t.Fatalf("history of %s holds message %s %d times, want once", id, k, n)
			}
		}
	}
}

func subOrchestrationTests() []test {
	return []test{
		{"ChildCreatedAndReportsToParent", testChildReportsToParent},
		{"LiveChildNotReplaced", testLiveChildNotReplaced},
		{"FinishedChildReplaced", testFinishedChildReplaced},
	}
}

// startChild commits a step of running instance parent (created with c)
// that starts child as task 5.
func (e *env) startChild(c *backend.CreateInstanceParams, child string, now time.Time) *backend.CreateInstanceParams {
	e.t.Helper()
	cp := &backend.CreateInstanceParams{
		ID: child, Name: "childOrch", ExecutionID: child + "-e9", Input: []byte(`"child input"`),
		Parent: &backend.ParentRef{InstanceID: c.ID, ExecutionID: c.ExecutionID, TaskID: 5}, Now: now,
	}
	e.enqueue(raised(c.ID, "start-child", "start-child"))
	e.commit(e.claimStep(c.ID, now), now, func(p *backend.CompleteOrchestrationStepParams) {
		p.StartInstances = []*backend.CreateInstanceParams{cp}
		p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventSubOrchestrationCreated, Timestamp: now, TaskID: 5, InstanceID: child, Name: "childOrch"})
	})
	return cp
}

// childResultID is the ID of the message that carries the outcome of the
// sub-orchestration started as task 5 of c's execution.
func childResultID(c *backend.CreateInstanceParams) string {
	return backend.ResultMessageID(backend.TaskMessageID(c.ID, c.ExecutionID, 5))
}

func testChildReportsToParent(t *testing.T, e *env) {
	c := e.start("p", nil)
	now := e.at(time.Minute)
	cp := e.startChild(c, "kid", now)

	kid := e.wantStatus("kid", backend.StatusPending)
	if kid.Parent == nil || *kid.Parent != *cp.Parent {
		t.Fatalf("child Parent = %+v, want %+v", kid.Parent, cp.Parent)
	}
	e.wantBytes("child Input", kid.Input, cp.Input)
	wi := e.claimStep("kid", now)
	e.wantMessages(wi, backend.StartMessageID("kid", "kid-e9"))
	if p := wi.Messages[0].Event.Parent; p == nil || *p != *cp.Parent {
		t.Fatalf("child's ExecutionStarted.Parent = %+v, want %+v", p, cp.Parent)
	}

	// The child's final step reports to the parent in the same commit.
	e.commit(wi, now, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusCompleted
		p.Output = []byte(`"child output"`)
		p.Messages = []*backend.Message{{
			ID: childResultID(c), InstanceID: "p", ExecutionID: c.ExecutionID,
			Event: &backend.Event{Type: backend.EventSubOrchestrationCompleted, Timestamp: now, TaskID: 5, Result: p.Output},
		}}
	})
	e.wantStatus("kid", backend.StatusCompleted)
	wi = e.claimStep("p", now)
	e.wantMessages(wi, childResultID(c))
	if ev := wi.Messages[0].Event; ev.Type != backend.EventSubOrchestrationCompleted || string(ev.Result) != `"child output"` {
		t.Fatalf("parent got %+v, want SubOrchestrationCompleted with the child's output", ev)
	}
}

func testLiveChildNotReplaced(t *testing.T, e *env) {
	c := e.start("p", nil)
	e.start("kid", nil) // a live instance that happens to have the child's ID
	before := e.instance("kid")
	now := e.at(time.Minute)
	e.startChild(c, "kid", now)

	after := e.wantStatus("kid", backend.StatusRunning)
	if after.ExecutionID != before.ExecutionID || after.Parent != nil || string(after.Input) != string(before.Input) {
		t.Fatalf("live instance was replaced by a child start: %+v", after)
	}
	wi := e.claimStep("p", now)
	e.wantMessages(wi, childResultID(c))
	ev := wi.Messages[0].Event
	if ev.Type != backend.EventSubOrchestrationFailed || ev.TaskID != 5 || ev.Failure == nil || ev.Failure.Message == "" {
		t.Fatalf("parent got %+v, want SubOrchestrationFailed for task 5 with a failure", ev)
	}
	e.noStep(now, `the live "kid" got no new message`)
}

func testFinishedChildReplaced(t *testing.T, e *env) {
	c := e.start("p", nil)
	e.start("kid", nil)
	e.end("kid", backend.StatusCompleted, e.at(time.Second))
	now := e.at(time.Minute)
	cp := e.startChild(c, "kid", now)

	kid := e.wantStatus("kid", backend.StatusPending)
	if kid.ExecutionID != cp.ExecutionID || kid.Parent == nil || *kid.Parent != *cp.Parent {
		t.Fatalf("finished child not replaced: ExecutionID %q, Parent %+v", kid.ExecutionID, kid.Parent)
	}
	if h := e.history("kid"); len(h) != 0 {
		t.Fatalf("replaced child kept %d history events", len(h))
	}
	steps := e.claimEach(now, "kid") // the parent gets no failure
	e.wantMessages(steps["kid"], backend.StartMessageID("kid", cp.ExecutionID))
}
