package backendtest

import (
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

func rewindTests() []test {
	return []test{
		{"UnknownOrPurged", testRewindUnknown},
		{"OnlyFailedInstances", testRewindOnlyFailed},
		{"FailedInstanceRunsAgain", testRewindFailed},
		{"Validates", testRewindValidates},
		{"WakesWorkers", testRewindWakes},
		{"StepRewindsFailedChild", testStepRewindsFailedChild},
		{"StepCannotRewindMissingOrUnfailedChild", testStepRewindRefused},
		{"RejectedStepRewindsNothing", testRejectedStepRewindsNothing},
	}
}

// fail drives running instance id to Failed with a step at now, woken by an
// external event, that records the failure in history. It returns the
// failure.
func (e *env) fail(id string, now time.Time) *backend.Failure {
	e.t.Helper()
	f := &backend.Failure{Message: "boom in " + id, Type: "Boom", TaskName: orchName}
	exec := e.instance(id).ExecutionID
	e.enqueue(raised(id, id+"/"+exec+"/fail", "fail"))
	e.commit(e.claimStep(id, now), now, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusFailed
		p.Failure = f
		p.Output = []byte(`"partial"`)
		p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventExecutionCompleted, Timestamp: now, Status: backend.StatusFailed, Failure: f})
	})
	return f
}

func (e *env) rewind(id, msgID string, now time.Time) error {
	return e.b.RewindInstance(e.ctx, &backend.RewindParams{InstanceID: id, MessageID: msgID, Reason: "operator rewind of " + id, Now: now})
}

func testRewindUnknown(t *testing.T, e *env) {
	e.wantErr("RewindInstance of an unknown instance", e.rewind("nope", "m", e.t0), backend.ErrInstanceNotFound)
	e.start("a", nil)
	e.fail("a", e.at(time.Second))
	e.noErr("PurgeInstance", e.b.PurgeInstance(e.ctx, "a"))
	e.wantErr("RewindInstance of a purged instance", e.rewind("a", "m", e.at(time.Minute)), backend.ErrInstanceNotFound)
	_, err := e.b.GetInstance(e.ctx, "a")
	e.wantErr("GetInstance after a refused rewind of a purged instance", err, backend.ErrInstanceNotFound)
}

func testRewindOnlyFailed(t *testing.T, e *env) {
	e.start("running", nil)
	e.start("suspended", nil)
	e.suspend("suspended", e.at(time.Second), sampleSuspension(e.at(time.Second), "s"), nil)
	e.start("completed", nil)
	e.end("completed", backend.StatusCompleted, e.at(2*time.Second))
	e.start("terminated", nil)
	e.end("terminated", backend.StatusTerminated, e.at(3*time.Second))
	e.create("pending", nil)
	e.claimStep("pending", e.at(4*time.Second)) // leave it leased, so the check below sees no step
	now := e.at(time.Minute)
	for _, s := range []backend.Status{backend.StatusPending, backend.StatusRunning, backend.StatusSuspended, backend.StatusCompleted, backend.StatusTerminated} {
		id := strings.ToLower(string(s))
		before := e.instance(id)
		err := e.rewind(id, id+"/rewind", now)
		e.wantErr("RewindInstance of a "+string(s)+" instance", err, backend.ErrInstanceNotFailed)
		if !strings.Contains(err.Error(), string(s)) {
			t.Fatalf("RewindInstance of a %s instance: error %q does not name the status", s, err)
		}
		after := e.wantStatus(id, s)
		if !after.UpdatedAt.Equal(before.UpdatedAt) || !after.CompletedAt.Equal(before.CompletedAt) {
			t.Fatalf("refused rewind of a %s instance changed it: %+v, was %+v", s, after, before)
		}
	}
	e.noStep(e.at(time.Minute+time.Second), "a refused rewind enqueues nothing")
}

func testRewindFailed(t *testing.T, e *env) {
	c := e.start("a", nil)
	e.fail("a", e.at(time.Second))
	failed := e.wantStatus("a", backend.StatusFailed)
	history := e.history("a")

	now := e.at(time.Minute)
	e.noErr("RewindInstance of a Failed instance", e.rewind("a", "a/rewind-1", now))
	inst := e.wantStatus("a", backend.StatusRunning)
	if inst.Failure != nil || !inst.CompletedAt.IsZero() {
		t.Fatalf("rewound instance kept Failure %+v / CompletedAt %s", inst.Failure, e.rel(inst.CompletedAt))
	}
	e.wantTime("rewound instance's UpdatedAt", inst.UpdatedAt, now)
	if inst.ExecutionID != c.ExecutionID || !inst.CreatedAt.Equal(failed.CreatedAt) || string(inst.Input) != string(failed.Input) {
		t.Fatalf("rewind changed the instance's identity: %+v, was %+v", inst, failed)
	}
	e.wantEvents("history after rewind (the failure is kept)", e.history("a"), history)

	wi := e.claimStep("a", now)
	e.wantMessages(wi, "a/rewind-1")
	m := wi.Messages[0]
	if m.ExecutionID != c.ExecutionID {
		t.Fatalf("rewind message: ExecutionID %q, want the current execution %q", m.ExecutionID, c.ExecutionID)
	}
	e.wantEvents("rewind message", []*backend.Event{m.Event},
		[]*backend.Event{{Type: backend.EventExecutionRewound, Timestamp: now, Reason: "operator rewind of a"}})
	e.wantEvents("history handed to the rewound step", wi.History, history)
	e.wantErr("RewindInstance of the rewound (Running) instance", e.rewind("a", "a/rewind-2", now), backend.ErrInstanceNotFailed)

	// It is live again: it takes messages, and can fail and be rewound again.
	e.commit(wi, now, nil)
	e.enqueue(raised("a", "after", "after"))
	e.wantMessages(e.claimStep("a", e.at(2*time.Minute)), "after")
}

func testRewindValidates(t *testing.T, e *env) {
	e.start("a", nil)
	e.fail("a", e.at(time.Second))
	for what, p := range map[string]*backend.RewindParams{
		"nil params":       nil,
		"empty InstanceID": {MessageID: "m"},
		"empty MessageID":  {InstanceID: "a"},
	} {
		if err := e.b.RewindInstance(e.ctx, p); err == nil {
			t.Fatalf("RewindInstance with %s succeeded", what)
		}
	}
	e.wantStatus("a", backend.StatusFailed)
	e.noStep(e.at(time.Hour), "refused rewinds enqueue nothing")
}

func testRewindWakes(t *testing.T, e *env) {
	n := e.notifier()
	e.start("a", nil)
	e.fail("a", e.at(time.Second))
	ch := n.WorkAvailable()
	e.noErr("RewindInstance", e.rewind("a", "a/rewind", e.at(time.Minute)))
	e.wantWake(ch, "RewindInstance")
}

// failedChild starts child kid of parent c as task 5 (at now) and fails it.
func (e *env) failedChild(c *backend.CreateInstanceParams, kid string, now time.Time) *backend.CreateInstanceParams {
	e.t.Helper()
	cp := e.startChild(c, kid, now)
	e.commit(e.claimStep(kid, now), now, nil)
	e.fail(kid, now)
	return cp
}

func rewindChild(c *backend.CreateInstanceParams, kid string, taskID int) *backend.RewindChild {
	return &backend.RewindChild{
		InstanceID:    kid,
		Parent:        &backend.ParentRef{InstanceID: c.ID, ExecutionID: c.ExecutionID, TaskID: taskID},
		MessageID:     kid + "/rewind",
		FailMessageID: kid + "/rewind-failed",
		Reason:        "parent rewound",
	}
}

// rewindStep commits a step of running instance c.ID at now, woken by an
// external event, with RewindInstances children.
func (e *env) rewindStep(c *backend.CreateInstanceParams, now time.Time, children ...*backend.RewindChild) {
	e.t.Helper()
	e.enqueue(raised(c.ID, c.ID+"/rewind-step", "rewind"))
	e.commit(e.claimStep(c.ID, now), now, func(p *backend.CompleteOrchestrationStepParams) {
		p.RewindInstances = children
	})
}

func testStepRewindsFailedChild(t *testing.T, e *env) {
	c := e.start("p", nil)
	cp := e.failedChild(c, "kid", e.at(time.Second))
	history := e.history("kid")

	now := e.at(time.Minute)
	e.rewindStep(c, now, rewindChild(c, "kid", 5))
	kid := e.wantStatus("kid", backend.StatusRunning)
	if kid.Failure != nil || !kid.CompletedAt.IsZero() {
		t.Fatalf("rewound child kept Failure %+v / CompletedAt %s", kid.Failure, e.rel(kid.CompletedAt))
	}
	e.wantTime("rewound child's UpdatedAt", kid.UpdatedAt, now)
	e.wantEvents("child history after rewind", e.history("kid"), history)

	steps := e.claimEach(now, "kid") // the parent gets no failure
	wi := steps["kid"]
	e.wantMessages(wi, "kid/rewind")
	if wi.Messages[0].ExecutionID != cp.ExecutionID {
		t.Fatalf("child's rewind message: ExecutionID %q, want %q", wi.Messages[0].ExecutionID, cp.ExecutionID)
	}
	e.wantEvents("child's rewind message", []*backend.Event{wi.Messages[0].Event},
		[]*backend.Event{{Type: backend.EventExecutionRewound, Timestamp: now, Reason: "parent rewound"}})
}

func testStepRewindRefused(t *testing.T, e *env) {
	c := e.start("p", nil)
	e.start("done", nil)
	e.end("done", backend.StatusCompleted, e.at(time.Second))
	e.start("live", nil)
	e.start("held", nil)
	e.suspend("held", e.at(time.Second), sampleSuspension(e.at(time.Second), "held"), nil)

	now := e.at(time.Minute)
	children := []*backend.RewindChild{
		rewindChild(c, "ghost", 5), rewindChild(c, "done", 6), rewindChild(c, "live", 7), rewindChild(c, "held", 8),
	}
	e.rewindStep(c, now, children...)
	e.wantStatus("done", backend.StatusCompleted)
	e.wantStatus("live", backend.StatusRunning)
	e.wantStatus("held", backend.StatusSuspended)
	_, err := e.b.GetInstance(e.ctx, "ghost")
	e.wantErr("GetInstance of a missing child after a rewind step", err, backend.ErrInstanceNotFound)

	// The parent, committed Running by the same step, gets one failure per
	// child; the children get nothing.
	steps := e.claimEach(now, "p")
	wi := steps["p"]
	e.wantMessages(wi, "ghost/rewind-failed", "done/rewind-failed", "live/rewind-failed", "held/rewind-failed")
	for i, m := range wi.Messages {
		ch := children[i]
		ev := m.Event
		switch {
		case m.ExecutionID != c.ExecutionID:
			t.Fatalf("%s: ExecutionID %q, want the parent's %q", m.ID, m.ExecutionID, c.ExecutionID)
		case ev.Type != backend.EventSubOrchestrationFailed || ev.TaskID != ch.Parent.TaskID:
			t.Fatalf("%s: %s for task %d, want SubOrchestrationFailed for task %d", m.ID, ev.Type, ev.TaskID, ch.Parent.TaskID)
		case ev.Failure == nil || ev.Failure.Type != "RewindFailed" || !ev.Failure.NonRetryable ||
			!strings.Contains(ev.Failure.Message, ch.InstanceID):
			t.Fatalf("%s: failure %+v, want a non-retryable RewindFailed naming %q", m.ID, ev.Failure, ch.InstanceID)
		}
	}
}

func testRejectedStepRewindsNothing(t *testing.T, e *env) {
	c := e.start("p", nil)
	e.failedChild(c, "kid", e.at(time.Second))
	e.enqueue(raised("p", "wake", "wake"))
	old := e.claimStep("p", e.at(time.Minute))
	cur := e.claimStep("p", e.at(3*time.Minute)) // old's lease lapsed
	p := stepParams(old, e.at(4*time.Minute))
	p.RewindInstances = []*backend.RewindChild{rewindChild(c, "kid", 5), rewindChild(c, "ghost", 6)}
	e.wantErr("CompleteOrchestrationStep with RewindInstances from a superseded delivery",
		e.b.CompleteOrchestrationStep(e.ctx, p), backend.ErrLeaseLost)
	e.wantStatus("kid", backend.StatusFailed)
	e.noErr("AbandonOrchestrationStep", e.b.AbandonOrchestrationStep(e.ctx, &backend.AbandonParams{ID: "p", Attempt: cur.Attempt}))
	far := e.at(time.Hour)
	e.wantMessages(e.claimStep("p", far), "wake")
	e.noStep(far, "the rejected step rewound nothing and sent nothing")
}
