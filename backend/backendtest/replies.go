package backendtest

import (
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// replyTests check that a step's commit called again by the delivery that
// made it — a retry whose first reply was lost after the commit succeeded —
// is recognised as committed: nothing is applied twice, the caller is told
// it succeeded (not ErrLeaseLost), and a claiming commit hands back the
// activity claims it made. A genuinely stale completion is still fenced.
func replyTests() []test {
	return []test{
		{"RepeatedStepCommitIsRecognised", testRepeatedCommit},
		{"RepeatedCommitAfterNewerSteps", testRepeatedCommitNewerSteps},
		{"RepeatedContinueAsNewCommit", testRepeatedCommitContinueAsNew},
		{"StaleStepStillRejected", testStaleStepStillRejected},
		{"RepeatedClaimingCommitReturnsItsClaims", testRepeatedClaimingCommit},
		{"RepeatedClaimingCommitAfterTheLeaseLapsed", testRepeatedClaimingCommitLapsed},
	}
}

// stepWithTask is a step of wi that schedules task 1 of instance c and sends
// a timer to the instance itself.
func stepWithTask(wi *backend.OrchestrationWorkItem, c *backend.CreateInstanceParams, now time.Time) *backend.CompleteOrchestrationStepParams {
	p := stepParams(wi, now)
	tk := task(c, 1)
	p.ActivityTasks = []*backend.ActivityTask{tk}
	p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventTaskScheduled, Timestamp: now, TaskID: 1, Name: tk.Name, Input: tk.Input})
	p.Messages = []*backend.Message{{
		ID: c.ID + "/timer", InstanceID: c.ID, ExecutionID: c.ExecutionID, VisibleAt: now.Add(time.Hour),
		Event: &backend.Event{Type: backend.EventTimerFired, TaskID: 2, FireAt: now.Add(time.Hour), Timestamp: now},
	}}
	return p
}

func testRepeatedCommit(t *testing.T, e *env) {
	c := e.create("a", nil)
	wi := e.claimStep("a", e.t0)
	p := stepWithTask(wi, c, e.t0)
	e.noErr("CompleteOrchestrationStep", e.b.CompleteOrchestrationStep(e.ctx, p))
	for i := range 2 {
		err := e.b.CompleteOrchestrationStep(e.ctx, p)
		if err != nil {
			t.Fatalf("CompleteOrchestrationStep repeated (%d) by the delivery that committed it: %v; want nil: the step is committed", i+1, err)
		}
	}
	e.wantEvents("history after repeated commits", e.history("a"), p.NewEvents)
	e.wantStatus("a", backend.StatusRunning)
	e.wantActivityAttempt(e.claimActivity(p.ActivityTasks[0].ID, e.t0), 1, time.Time{})
	e.noActivity(e.t0, "the task was enqueued once")
	e.noStep(e.at(30*time.Minute), "the repeated commits enqueued nothing claimable")
	e.wantMessages(e.claimStep("a", e.at(2*time.Hour)), c.ID+"/timer")
	// The lease was released by the commit: it cannot be renewed.
	e.wantErr("RenewOrchestrationLease after the commit",
		e.b.RenewOrchestrationLease(e.ctx, &backend.RenewLeaseParams{ID: "a", Attempt: wi.Attempt, LeaseDuration: lease, Now: e.t0}), backend.ErrLeaseLost)
}

func testRepeatedCommitNewerSteps(t *testing.T, e *env) {
	e.create("a", nil)
	first := e.claimStep("a", e.t0)
	p := e.commit(first, e.t0, nil)
	e.enqueue(raised("a", "ev-1", "ev"))
	next := e.claimStep("a", e.at(time.Second))
	// The retry arrives after the next step was claimed: the step it
	// repeats did commit, and the newer delivery keeps its lease.
	e.noErr("CompleteOrchestrationStep repeated after a newer claim", e.b.CompleteOrchestrationStep(e.ctx, p))
	e.wantEvents("history after the repeated commit", e.history("a"), p.NewEvents)
	e.noStep(e.at(2*time.Second), "the newer delivery's lease is live")
	e.commit(next, e.at(2*time.Second), nil)
	// Even after the next step committed, the repeat is recognised.
	e.noErr("CompleteOrchestrationStep repeated after a newer step committed", e.b.CompleteOrchestrationStep(e.ctx, p))
	if h := e.history("a"); len(h) != len(p.NewEvents)+2 {
		t.Fatalf("history has %d events after the newer step, want %d", len(h), len(p.NewEvents)+2)
	}
	// A delivery that did not commit is fenced, however the ones around it
	// fared.
	e.enqueue(raised("a", "ev-2", "ev"))
	lapsed := e.claimStep("a", e.at(3*time.Second))
	e.commit(e.claimStep("a", e.at(2*time.Minute)), e.at(2*time.Minute), nil)
	e.wantErr("CompleteOrchestrationStep of a lapsed delivery between committed ones",
		e.b.CompleteOrchestrationStep(e.ctx, stepParams(lapsed, e.at(2*time.Minute))), backend.ErrLeaseLost)
	e.noErr("CompleteOrchestrationStep repeated after two newer steps committed", e.b.CompleteOrchestrationStep(e.ctx, p))
}

func testRepeatedCommitContinueAsNew(t *testing.T, e *env) {
	e.create("a", nil)
	wi := e.claimStep("a", e.t0)
	p := e.commit(wi, e.t0, func(p *backend.CompleteOrchestrationStepParams) {
		p.ContinueAsNew = &backend.ContinueAsNew{NewExecutionID: "a-e2", Input: []byte(`"again"`)}
	})
	e.noErr("CompleteOrchestrationStep with ContinueAsNew repeated", e.b.CompleteOrchestrationStep(e.ctx, p))
	if h := e.history("a"); len(h) != 0 {
		t.Fatalf("the new execution has %d events after the repeated commit, want 0", len(h))
	}
	next := e.claimStep("a", e.at(time.Second))
	e.wantMessages(next, backend.StartMessageID("a", "a-e2"))
	if next.Instance.ExecutionID != "a-e2" {
		t.Fatalf("execution %q, want a-e2", next.Instance.ExecutionID)
	}
}

func testStaleStepStillRejected(t *testing.T, e *env) {
	c := e.create("a", nil)
	old := e.claimStep("a", e.t0)
	cur := e.claimStep("a", e.at(2*time.Minute)) // the first lease lapsed
	e.wantErr("CompleteOrchestrationStep of a superseded delivery that never committed",
		e.b.CompleteOrchestrationStep(e.ctx, stepWithTask(old, c, e.at(2*time.Minute))), backend.ErrLeaseLost)
	if ec, ok := e.b.(backend.StepActivityClaimer); ok {
		wis, err := ec.CompleteOrchestrationStepClaim(e.ctx, stepWithTask(old, c, e.at(2*time.Minute)), e.claimParams(e.at(2*time.Minute)), 1)
		e.wantErr("CompleteOrchestrationStepClaim of a superseded delivery", err, backend.ErrLeaseLost)
		if len(wis) != 0 {
			t.Fatalf("a rejected step claimed %d tasks", len(wis))
		}
	}
	if h := e.history("a"); len(h) != 0 {
		t.Fatalf("rejected steps appended %d events", len(h))
	}
	e.noActivity(e.at(2*time.Minute), "a rejected step enqueued its task")
	p := e.commit(cur, e.at(2*time.Minute), nil)
	e.wantErr("CompleteOrchestrationStep of the superseded delivery after the current one committed",
		e.b.CompleteOrchestrationStep(e.ctx, stepParams(old, e.at(3*time.Minute))), backend.ErrLeaseLost)
	e.wantEvents("history", e.history("a"), p.NewEvents)
}

func testRepeatedClaimingCommit(t *testing.T, e *env) {
	ec := e.eager()
	c := e.create("a", nil)
	wi := e.claimStep("a", e.t0)
	tasks := []*backend.ActivityTask{task(c, 1), task(c, 2)}
	tasks[0].Options.AtMostOnce = true
	p := stepParams(wi, e.t0)
	p.ActivityTasks = tasks
	claim := e.claimParams(e.t0)
	wis, err := ec.CompleteOrchestrationStepClaim(e.ctx, p, claim, 1)
	e.noErr("CompleteOrchestrationStepClaim", err)
	if len(wis) != 1 || wis[0].Task.ID != tasks[0].ID {
		t.Fatalf("claimed %d tasks, want task 1", len(wis))
	}
	// Task 2 was left to the claims; this owner claims it a second later.
	other := e.claimActivity(tasks[1].ID, e.at(time.Second))
	e.wantActivityAttempt(other, 1, time.Time{})

	// The reply was lost; the worker repeats the call (with room for both
	// tasks). It gets the claim the commit made, and only that one: task 2
	// is already running under a claim of its own.
	again, err := ec.CompleteOrchestrationStepClaim(e.ctx, p, e.claimParams(e.at(2*time.Second)), 2)
	if err != nil {
		t.Fatalf("CompleteOrchestrationStepClaim repeated by the delivery that committed it: %v; want its claims", err)
	}
	if len(again) != 1 || again[0].Task.ID != tasks[0].ID {
		t.Fatalf("repeated commit returned %d claims %v, want the commit's claim of task 1", len(again), activityIDs(again))
	}
	got := again[0]
	e.wantActivityAttempt(got, 1, time.Time{})
	e.wantTime("LeaseExpiresAt of the returned claim", got.LeaseExpiresAt, wis[0].LeaseExpiresAt)
	if !got.Task.Options.AtMostOnce || string(got.Task.Input) != string(tasks[0].Input) || got.Task.Name != tasks[0].Name {
		t.Fatalf("returned claim's task %+v, want %+v", got.Task, tasks[0])
	}
	e.wantEvents("history after the repeated commit", e.history("a"), p.NewEvents)
	e.noActivity(e.at(30*time.Second), "both tasks are claimed; nothing was enqueued again")
	// The returned claim is the commit's claim: it completes the task.
	e.noErr("CompleteActivity with the returned claim", e.b.CompleteActivity(e.ctx, completed(got, e.at(3*time.Second))))
	e.noErr("CompleteActivity of task 2", e.b.CompleteActivity(e.ctx, completed(other, e.at(3*time.Second))))
	e.wantMessages(e.claimStep("a", e.at(4*time.Second)), backend.ResultMessageID(tasks[0].ID), backend.ResultMessageID(tasks[1].ID))
}

func testRepeatedClaimingCommitLapsed(t *testing.T, e *env) {
	ec := e.eager()
	c := e.create("a", nil)
	wi := e.claimStep("a", e.t0)
	p := stepParams(wi, e.t0)
	p.ActivityTasks = []*backend.ActivityTask{task(c, 1)}
	_, err := ec.CompleteOrchestrationStepClaim(e.ctx, p, e.claimParams(e.t0), 1)
	e.noErr("CompleteOrchestrationStepClaim", err)
	// Repeated after the claim's lease lapsed: anyone may claim the task
	// now, so the repeated call must not hand out the old claim.
	late := *p
	late.Now = e.at(2 * time.Minute)
	again, err := ec.CompleteOrchestrationStepClaim(e.ctx, &late, e.claimParams(e.at(2*time.Minute)), 1)
	e.noErr("CompleteOrchestrationStepClaim repeated after the lease lapsed", err)
	if len(again) != 0 {
		t.Fatalf("repeated commit returned %d lapsed claims %v, want none", len(again), activityIDs(again))
	}
	e.wantActivityAttempt(e.claimActivity(p.ActivityTasks[0].ID, e.at(2*time.Minute)), 2, e.t0)
}

func activityIDs(wis []*backend.ActivityWorkItem) []string {
	ids := []string{}
	for _, wi := range wis {
		ids = append(ids, wi.Task.ID)
	}
	return ids
}
