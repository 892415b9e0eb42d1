package backendtest

import (
	"errors"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

func activityTests() []test {
	return []test{
		{"ClaimReturnsTask", testClaimReturnsTask},
		{"CompleteEnqueuesResult", testCompleteEnqueuesResult},
		{"FailedResultRoundTrip", testFailedResult},
		{"ClaimsOldestFirst", testActivityOldestFirst},
		{"LiveLeaseNotClaimable", testActivityLiveLease},
		{"DuplicateTaskIDIgnored", testDuplicateTaskIgnored},
		{"ResultForFinishedInstanceNotDelivered", testResultForFinished},
		{"ResultForPurgedInstanceDropped", testResultForPurged},
		{"AbandonRetryAt", testActivityAbandonRetryAt},
		{"HeartbeatDetailsCarryToNextDelivery", testHeartbeatDetails},
	}
}

func testClaimReturnsTask(t *testing.T, e *env) {
	c := e.create("a", nil)
	plain, withOpts := task(c, 1), task(c, 2)
	withOpts.Options = backend.ActivityOptions{LeaseDuration: 5 * time.Minute, AtMostOnce: true, OnDuplicate: "Suspend", MaxDeliveries: 3}
	scheduled := e.at(time.Second)
	e.commit(e.claimStep("a", e.t0), scheduled, func(p *backend.CompleteOrchestrationStepParams) {
		p.ActivityTasks = []*backend.ActivityTask{plain, withOpts}
	})

	now := e.at(time.Minute)
	want := map[string]*backend.ActivityTask{plain.ID: plain, withOpts.ID: withOpts}
	for range 2 {
		wi := e.tryClaimActivity(now)
		if wi == nil {
			t.Fatalf("ClaimActivity = nil, want one of %v", keys(want))
		}
		tk := want[wi.Task.ID]
		if tk == nil {
			t.Fatalf("ClaimActivity claimed %q, want one of %v", wi.Task.ID, keys(want))
		}
		delete(want, tk.ID)
		got := wi.Task
		if got.InstanceID != tk.InstanceID || got.ExecutionID != tk.ExecutionID || got.TaskID != tk.TaskID ||
			got.Name != tk.Name || string(got.Input) != string(tk.Input) || got.Options != tk.Options {
			t.Fatalf("claimed task = %+v, want %+v", got, tk)
		}
		if wi.Attempt != 1 || !wi.PreviousDeliveryAt.IsZero() || wi.HeartbeatDetails != nil {
			t.Fatalf("first claim: Attempt %d, PreviousDeliveryAt %s, HeartbeatDetails %q; want 1, zero, nil",
				wi.Attempt, e.rel(wi.PreviousDeliveryAt), wi.HeartbeatDetails)
		}
		e.wantTime("ScheduledAt", wi.ScheduledAt, scheduled)
		if tk == plain {
			e.wantTime("LeaseExpiresAt", wi.LeaseExpiresAt, now.Add(lease))
		}
	}
	e.noActivity(now, "both tasks are leased")
}

func testCompleteEnqueuesResult(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	wi := e.claimActivity(tasks[0].ID, e.at(time.Minute))
	p := completed(wi, e.at(90*time.Second))
	e.noErr("CompleteActivity", e.b.CompleteActivity(e.ctx, p))

	step := e.claimStep("a", e.at(2*time.Minute))
	e.wantMessages(step, backend.ResultMessageID(tasks[0].ID))
	m := step.Messages[0]
	if m.InstanceID != "a" || (m.ExecutionID != "" && m.ExecutionID != tasks[0].ExecutionID) {
		t.Fatalf("result message addressed to %q/%q, want a/%s", m.InstanceID, m.ExecutionID, tasks[0].ExecutionID)
	}
	e.wantEvents("result event", []*backend.Event{m.Event}, []*backend.Event{p.Result})

	e.noActivity(e.at(time.Hour), "a completed task is deleted")
	e.wantErr("second CompleteActivity", e.b.CompleteActivity(e.ctx, p), backend.ErrLeaseLost)
}

func testFailedResult(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	now := e.at(time.Minute)
	wi := e.claimActivity(tasks[0].ID, now)
	p := &backend.CompleteActivityParams{
		TaskID: wi.Task.ID, Attempt: wi.Attempt, Now: now,
		Result: &backend.Event{
			Type: backend.EventTaskFailed, Timestamp: now, TaskID: wi.Task.TaskID, Attempt: wi.Attempt,
			Failure: &backend.Failure{Message: "nope", Type: "x.Err", TaskName: "act", Details: []byte(`[1]`), Cause: &backend.Failure{Message: "root"}},
		},
	}
	e.noErr("CompleteActivity(TaskFailed)", e.b.CompleteActivity(e.ctx, p))
	step := e.claimStep("a", now)
	e.wantMessages(step, backend.ResultMessageID(tasks[0].ID))
	e.wantEvents("failed result event", []*backend.Event{step.Messages[0].Event}, []*backend.Event{p.Result})
}

func testActivityOldestFirst(t *testing.T, e *env) {
	cNew := e.create("newer", nil)
	cOld := e.create("older", nil)
	steps := e.claimEach(e.t0, "newer", "older")
	e.commit(steps["older"], e.t0, func(p *backend.CompleteOrchestrationStepParams) {
		p.ActivityTasks = []*backend.ActivityTask{task(cOld, 1)}
	})
	e.commit(steps["newer"], e.at(time.Second), func(p *backend.CompleteOrchestrationStepParams) {
		p.ActivityTasks = []*backend.ActivityTask{task(cNew, 1)}
	})
	now := e.at(time.Minute)
	e.claimActivity(task(cOld, 1).ID, now)
	e.claimActivity(task(cNew, 1).ID, now)
}

func testActivityLiveLease(t *testing.T, e *env) {
	e.startWithTasks("a", 2)
	first := e.tryClaimActivity(e.t0)
	second := e.tryClaimActivity(e.at(time.Second))
	if first == nil || second == nil || first.Task.ID == second.Task.ID {
		t.Fatalf("two claims of two tasks got %v and %v, want both tasks", first, second)
	}
	e.noActivity(e.at(30*time.Second), "both tasks are leased")
	// first's lease lapses at t0+1m, second's at t0+1m1s.
	e.claimActivity(first.Task.ID, e.at(time.Minute+500*time.Millisecond))
}

func testDuplicateTaskIgnored(t *testing.T, e *env) {
	c, tasks := e.startWithTasks("a", 1)
	wi := e.claimActivity(tasks[0].ID, e.t0)

	// A second step schedules the same task ID, with another input.
	e.enqueue(raised("a", "wake", "wake"))
	now := e.at(time.Second)
	e.commit(e.claimStep("a", now), now, func(p *backend.CompleteOrchestrationStepParams) {
		again := task(c, 1)
		again.Input = []byte(`"replaced input"`)
		p.ActivityTasks = []*backend.ActivityTask{again}
	})
	e.noActivity(e.at(30*time.Second), "the only task is leased; the second insert must not add one")

	// The original task, with its attempt count, survives.
	wi2 := e.claimActivity(tasks[0].ID, e.at(2*time.Minute))
	if wi2.Attempt != wi.Attempt+1 {
		t.Fatalf("attempt after a duplicate insert = %d, want %d (the insert must not reset the task)", wi2.Attempt, wi.Attempt+1)
	}
	e.wantBytes("task Input", wi2.Task.Input, tasks[0].Input)
	e.noErr("CompleteActivity", e.b.CompleteActivity(e.ctx, completed(wi2, e.at(2*time.Minute))))
	e.noActivity(e.at(time.Hour), "one task, completed")
}

// droppedResult accepts what CompleteActivity may return for a task whose
// instance is gone or finished: nil (the result was dropped) or ErrLeaseLost
// (the task went with the instance).
func (e *env) droppedResult(what string, err error) {
	e.t.Helper()
	if err != nil && !errors.Is(err, backend.ErrLeaseLost) {
		e.t.Fatalf("%s: err = %v, want nil (result dropped) or ErrLeaseLost (task gone)", what, err)
	}
}

// testResultForFinished: a result for a terminated instance reaches no
// inbox (it is kept in the history instead: see LateResultKeptInHistory).
func testResultForFinished(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	wi := e.claimActivity(tasks[0].ID, e.t0)
	e.end("a", backend.StatusTerminated, e.at(time.Second))
	e.wantErr("CompleteActivity for a terminated instance", e.b.CompleteActivity(e.ctx, completed(wi, e.at(2*time.Second))), backend.ErrInstanceFinished)
	e.wantStatus("a", backend.StatusTerminated)
	e.noStep(e.at(time.Hour), "a terminated instance takes no results")
}

func testResultForPurged(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	wi := e.claimActivity(tasks[0].ID, e.t0)
	e.end("a", backend.StatusTerminated, e.at(time.Second))
	e.noErr("PurgeInstance", e.b.PurgeInstance(e.ctx, "a"))
	e.droppedResult("CompleteActivity for a purged instance", e.b.CompleteActivity(e.ctx, completed(wi, e.at(2*time.Second))))
	_, err := e.b.GetInstance(e.ctx, "a")
	e.wantErr("GetInstance of a purged instance after a late result", err, backend.ErrInstanceNotFound)

	// A new instance with the same ID does not inherit the result.
	e.create("a", func(p *backend.CreateInstanceParams) { p.ExecutionID = "a-e2"; p.Now = e.at(time.Minute) })
	e.wantMessages(e.claimStep("a", e.at(time.Minute)), backend.StartMessageID("a", "a-e2"))
}

func testActivityAbandonRetryAt(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	wi := e.claimActivity(tasks[0].ID, e.t0)
	retry := e.at(10 * time.Minute)
	e.noErr("AbandonActivity", e.b.AbandonActivity(e.ctx, &backend.AbandonParams{ID: wi.Task.ID, Attempt: int64(wi.Attempt), RetryAt: retry}))
	e.noActivity(e.at(2*time.Minute), "abandoned with RetryAt in 10m, though the lease has lapsed")
	e.noActivity(retry.Add(-time.Millisecond), "abandoned with RetryAt in 1ms")
	if wi2 := e.claimActivity(tasks[0].ID, retry); wi2.Attempt != 2 {
		t.Fatalf("claim after abandon: Attempt = %d, want 2", wi2.Attempt)
	}
}

func heartbeat(wi *backend.ActivityWorkItem, now time.Time, details []byte) *backend.RenewLeaseParams {
	return &backend.RenewLeaseParams{ID: wi.Task.ID, Attempt: int64(wi.Attempt), LeaseDuration: lease, Details: details, Now: now}
}

// testHeartbeatDetails: RenewActivityLease with Details stores them (nil
// keeps what is stored), a stale delivery's heartbeat stores nothing, and
// every later delivery, after a lapse or an abandonment, gets the last ones.
func testHeartbeatDetails(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	id := tasks[0].ID
	first := e.claimActivity(id, e.t0)
	e.noErr("RenewActivityLease(Details d1)", e.b.RenewActivityLease(e.ctx, heartbeat(first, e.at(30*time.Second), []byte("d1"))))
	e.noErr("RenewActivityLease(Details nil)", e.b.RenewActivityLease(e.ctx, heartbeat(first, e.at(60*time.Second), nil)))

	second := e.claimActivity(id, e.at(3*time.Minute)) // first's lease lapsed at t0+2m
	e.wantBytes("HeartbeatDetails after a lapsed delivery", second.HeartbeatDetails, []byte("d1"))
	e.wantErr("RenewActivityLease(Details) from a superseded delivery",
		e.b.RenewActivityLease(e.ctx, heartbeat(first, e.at(3*time.Minute), []byte("stale"))), backend.ErrLeaseLost)
	e.noErr("RenewActivityLease(Details d2)", e.b.RenewActivityLease(e.ctx, heartbeat(second, e.at(3*time.Minute+10*time.Second), []byte("d2"))))
	e.noErr("AbandonActivity", e.b.AbandonActivity(e.ctx, &backend.AbandonParams{ID: id, Attempt: int64(second.Attempt)}))

	third := e.claimActivity(id, e.at(4*time.Minute))
	e.wantBytes("HeartbeatDetails after an abandoned delivery", third.HeartbeatDetails, []byte("d2"))
}
