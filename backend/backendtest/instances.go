package backendtest

import (
	"errors"
	"testing"
	"time"

	"duro/backend"
)

func instanceTests() []test {
	return []test{
		{"CreatePendingWithStartMessage", testCreatePending},
		{"CreateDuplicate", testCreateDuplicate},
		{"ReplaceFinished", testReplaceFinished},
		{"ReplaceFinishedKeepsLive", testReplaceKeepsLive},
		{"StartAtDelaysFirstStep", testStartAt},
		{"GetUnknown", testGetUnknown},
		{"CreateValidates", testCreateValidates},
	}
}

func testCreatePending(t *testing.T, e *env) {
	parent := &backend.ParentRef{InstanceID: "p", ExecutionID: "p-e1", TaskID: 7}
	c := e.create("a", func(p *backend.CreateInstanceParams) { p.Parent = parent })

	inst := e.wantStatus("a", backend.StatusPending)
	if inst.ID != "a" || inst.Name != orchName || inst.ExecutionID != c.ExecutionID {
		t.Fatalf("instance = %q/%q/%q, want a/%s/%s", inst.ID, inst.Name, inst.ExecutionID, orchName, c.ExecutionID)
	}
	e.wantBytes("Input", inst.Input, c.Input)
	e.wantTime("CreatedAt", inst.CreatedAt, e.t0)
	if !inst.CompletedAt.IsZero() || inst.Output != nil || inst.Failure != nil {
		t.Fatalf("new instance has CompletedAt %v, Output %q, Failure %v; want none", inst.CompletedAt, inst.Output, inst.Failure)
	}
	if inst.Parent == nil || *inst.Parent != *parent {
		t.Fatalf("Parent = %+v, want %+v", inst.Parent, parent)
	}
	if h := e.history("a"); len(h) != 0 {
		t.Fatalf("history of a new instance has %d events, want 0", len(h))
	}

	wi := e.claimStep("a", e.t0)
	if wi.Attempt != 1 {
		t.Fatalf("first claim: Attempt = %d, want 1", wi.Attempt)
	}
	e.wantTime("LeaseExpiresAt", wi.LeaseExpiresAt, e.t0.Add(lease))
	if len(wi.History) != 0 {
		t.Fatalf("first step has %d history events, want 0", len(wi.History))
	}
	e.wantMessages(wi, backend.StartMessageID("a", c.ExecutionID))
	ev := wi.Messages[0].Event
	if ev == nil || ev.Type != backend.EventExecutionStarted || ev.Name != orchName || ev.ExecutionID != c.ExecutionID {
		t.Fatalf("start message event = %+v, want ExecutionStarted of %s, execution %s", ev, orchName, c.ExecutionID)
	}
	e.wantBytes("ExecutionStarted.Input", ev.Input, c.Input)
	if ev.Parent == nil || *ev.Parent != *parent {
		t.Fatalf("ExecutionStarted.Parent = %+v, want %+v", ev.Parent, parent)
	}
}

func testCreateDuplicate(t *testing.T, e *env) {
	c := e.create("a", nil)
	for _, policy := range []backend.IfExists{backend.IfExistsFail, backend.IfExistsReplaceFinished} {
		err := e.b.CreateInstance(e.ctx, &backend.CreateInstanceParams{
			ID: "a", Name: "other", ExecutionID: "a-e2", Input: []byte(`"second"`), IfExists: policy, Now: e.at(time.Second),
		})
		e.wantErr("CreateInstance of a live ID", err, backend.ErrInstanceExists)
	}
	inst := e.instance("a")
	if inst.ExecutionID != c.ExecutionID || inst.Name != orchName || string(inst.Input) != string(c.Input) {
		t.Fatalf("failed duplicate create changed the instance: %+v", inst)
	}

	// A finished instance is not replaced under IfExistsFail either.
	e.commit(e.claimStep("a", e.t0), e.t0, nil)
	e.end("a", backend.StatusCompleted, e.at(time.Minute))
	err := e.b.CreateInstance(e.ctx, &backend.CreateInstanceParams{ID: "a", Name: orchName, ExecutionID: "a-e2", Now: e.at(time.Hour)})
	e.wantErr("CreateInstance(IfExistsFail) of a finished ID", err, backend.ErrInstanceExists)
	e.wantStatus("a", backend.StatusCompleted)
}

func testReplaceFinished(t *testing.T, e *env) {
	c, _ := e.startWithTasks("a", 2)
	// An event still in the inbox, and a timer due later.
	wi := e.claimStep("a", e.at(time.Second))
	e.enqueue(raised("a", "late", "late"))
	e.commit(wi, e.at(time.Second), func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusFailed
		p.Failure = &backend.Failure{Message: "boom"}
		p.Output = []byte(`"out"`)
		p.Messages = []*backend.Message{{
			ID: backend.TaskMessageID("a", c.ExecutionID, 9), InstanceID: "a", ExecutionID: c.ExecutionID,
			Event: &backend.Event{Type: backend.EventTimerFired, TaskID: 9}, VisibleAt: e.at(3 * time.Hour),
		}}
	})
	e.enqueue(raised("a", "a/e1/wake", "wake")) // no-op or error is fine; the instance is finished
	// The line above must fail: EnqueueMessage to a finished instance.
}
