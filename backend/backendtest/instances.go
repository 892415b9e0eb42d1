package backendtest

import (
	"testing"
	"time"

	"github.com/durohq/duro/backend"
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
		{"ZeroNowMeansBackendClock", testZeroNow},
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
	// The final step leaves an event in the inbox (it arrived during the step)
	// and sends itself a timer due later; the two tasks are never run.
	e.enqueue(raised("a", "wake", "wake"))
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

	r := &backend.CreateInstanceParams{
		ID: "a", Name: "orch2", ExecutionID: "a-e2", Input: []byte(`"new input"`),
		IfExists: backend.IfExistsReplaceFinished, Now: e.at(time.Hour),
	}
	e.noErr("CreateInstance(IfExistsReplaceFinished) of a failed instance", e.b.CreateInstance(e.ctx, r))

	inst := e.wantStatus("a", backend.StatusPending)
	if inst.ExecutionID != "a-e2" || inst.Name != "orch2" {
		t.Fatalf("replaced instance: ExecutionID %q, Name %q; want a-e2, orch2", inst.ExecutionID, inst.Name)
	}
	e.wantBytes("replaced Input", inst.Input, r.Input)
	e.wantTime("replaced CreatedAt", inst.CreatedAt, r.Now)
	if inst.Output != nil || inst.Failure != nil || !inst.CompletedAt.IsZero() {
		t.Fatalf("replaced instance kept Output %q, Failure %v, CompletedAt %v of the old one", inst.Output, inst.Failure, inst.CompletedAt)
	}
	if h := e.history("a"); len(h) != 0 {
		t.Fatalf("replaced instance has %d history events of the old one %v, want 0", len(h), eventTypes(h))
	}
	far := e.at(10 * time.Hour)
	e.wantMessages(e.claimStep("a", far), backend.StartMessageID("a", "a-e2"))
	e.noActivity(far, "the old instance's tasks must be deleted with it")
}

func testReplaceKeepsLive(t *testing.T, e *env) {
	e.populate(
		spec{"pending", orchName, e.t0, backend.StatusPending},
		spec{"running", orchName, e.t0, backend.StatusRunning},
		spec{"suspended", orchName, e.t0, backend.StatusSuspended},
	)
	for _, id := range []string{"pending", "running", "suspended"} {
		before := e.instance(id)
		err := e.b.CreateInstance(e.ctx, &backend.CreateInstanceParams{
			ID: id, Name: orchName, ExecutionID: id + "-e2", IfExists: backend.IfExistsReplaceFinished, Now: e.at(time.Hour),
		})
		e.wantErr("CreateInstance(IfExistsReplaceFinished) of "+id+" instance", err, backend.ErrInstanceExists)
		if after := e.instance(id); after.ExecutionID != before.ExecutionID || after.Status != before.Status {
			t.Fatalf("%s instance changed by a refused replace: %s/%s -> %s/%s", id, before.ExecutionID, before.Status, after.ExecutionID, after.Status)
		}
	}
}

func testStartAt(t *testing.T, e *env) {
	startAt := e.at(10 * time.Minute)
	e.create("a", func(p *backend.CreateInstanceParams) { p.StartAt = startAt })
	e.wantStatus("a", backend.StatusPending)
	e.noStep(e.t0, "StartAt is 10m away")
	e.noStep(startAt.Add(-time.Millisecond), "StartAt is 1ms away")
	wi := e.claimStep("a", startAt)
	e.wantMessages(wi, backend.StartMessageID("a", "a-e1"))
}

func testGetUnknown(t *testing.T, e *env) {
	_, err := e.b.GetInstance(e.ctx, "nope")
	e.wantErr("GetInstance(unknown)", err, backend.ErrInstanceNotFound)
	_, err = e.b.GetHistory(e.ctx, "nope")
	e.wantErr("GetHistory(unknown)", err, backend.ErrInstanceNotFound)
}

func testCreateValidates(t *testing.T, e *env) {
	for _, tc := range []struct {
		what string
		edit func(*backend.CreateInstanceParams)
	}{
		{"empty ID", func(p *backend.CreateInstanceParams) { p.ID = "" }},
		{"empty Name", func(p *backend.CreateInstanceParams) { p.Name = "" }},
		{"empty ExecutionID", func(p *backend.CreateInstanceParams) { p.ExecutionID = "" }},
	} {
		p := &backend.CreateInstanceParams{ID: "a", Name: orchName, ExecutionID: "a-e1", Now: e.t0}
		tc.edit(p)
		if err := e.b.CreateInstance(e.ctx, p); err == nil {
			t.Errorf("CreateInstance with %s: err = nil, want an error", tc.what)
		}
	}
	page, err := e.b.ListInstances(e.ctx, &backend.ListInstancesParams{})
	e.noErr("ListInstances", err)
	if len(page.Instances) != 0 {
		t.Fatalf("invalid creates left %d instances", len(page.Instances))
	}
	e.noStep(e.at(time.Hour), "no valid instance was created")
}

// testZeroNow: a zero Now in CreateInstanceParams and ClaimParams means the
// backend's clock, not the zero time.
func testZeroNow(t *testing.T, e *env) {
	// Slack for a store that keeps times at coarser precision.
	const slack = time.Second
	within := func(what string, got, lo, hi time.Time) {
		t.Helper()
		if got.Before(lo.Add(-slack)) || got.After(hi.Add(slack)) {
			t.Fatalf("%s = %s, want between %s and %s (the wall clock)", what, got, lo, hi)
		}
	}
	before := time.Now()
	e.noErr("CreateInstance(Now zero)", e.b.CreateInstance(e.ctx, &backend.CreateInstanceParams{ID: "a", Name: orchName, ExecutionID: "a-e1"}))
	wi, err := e.b.ClaimOrchestrationStep(e.ctx, &backend.ClaimParams{Owner: "backendtest", LeaseDuration: time.Hour})
	after := time.Now()
	e.noErr("ClaimOrchestrationStep(Now zero)", err)
	if wi == nil {
		t.Fatal("ClaimOrchestrationStep(Now zero) = nil, want the instance created with Now zero")
	}
	within("CreatedAt", e.instance("a").CreatedAt, before, after)
	within("LeaseExpiresAt", wi.LeaseExpiresAt, before.Add(time.Hour), after.Add(time.Hour))
	e.noStep(time.Now().Add(30*time.Minute), "the lease taken with Now zero lasts an hour of wall-clock time")
}

func lifecycleTests() []test {
	return []test{
		{"Completed", testLifecycleCompleted},
		{"Failed", testLifecycleFailed},
		{"Terminated", testLifecycleTerminated},
		{"Suspended", testLifecycleSuspended},
		{"ContinuedAsNew", testContinueAsNew},
		{"TerminalDeletesInboxAndTasks", testTerminalDeletes},
		{"StepReplacesCustomStatus", testCustomStatusReplaced},
	}
}

func testLifecycleCompleted(t *testing.T, e *env) {
	e.create("a", nil)
	p1 := e.commit(e.claimStep("a", e.t0), e.t0, nil)
	inst := e.wantStatus("a", backend.StatusRunning)
	if !inst.CompletedAt.IsZero() {
		t.Fatalf("running instance has CompletedAt %s", e.rel(inst.CompletedAt))
	}

	end := e.at(time.Minute)
	e.enqueue(raised("a", "go", "go"))
	p2 := e.commit(e.claimStep("a", end), end, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusCompleted
		p.Output = []byte(`"the output"`)
		p.NewEvents = append(p.NewEvents, &backend.Event{
			Type: backend.EventExecutionCompleted, Timestamp: end, Status: backend.StatusCompleted, Result: p.Output,
		})
	})
	inst = e.wantStatus("a", backend.StatusCompleted)
	e.wantBytes("Output", inst.Output, p2.Output)
	e.wantTime("CompletedAt", inst.CompletedAt, end)
	if inst.Failure != nil {
		t.Fatalf("completed instance has Failure %v", inst.Failure)
	}
	e.wantEvents("history", e.history("a"), append(p1.NewEvents, p2.NewEvents...))
}

func testLifecycleFailed(t *testing.T, e *env) {
	e.start("a", nil)
	failure := &backend.Failure{
		Message: "charge declined", Type: "payments.Declined", TaskName: "Charge", NonRetryable: true,
		Details: []byte(`{"code":51}`), Stack: "goroutine 1 [running]:\nmain.charge()",
		Cause: &backend.Failure{Message: "card expired", Type: "cards.Expired", Details: []byte{0, 1, 2, 255}},
	}
	end := e.at(time.Minute)
	e.enqueue(raised("a", "go", "go"))
	e.commit(e.claimStep("a", end), end, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusFailed
		p.Failure = failure
	})
	inst := e.wantStatus("a", backend.StatusFailed)
	if !sameFailure(inst.Failure, failure) {
		t.Fatalf("Failure = %#v (cause %#v), want %#v (cause %#v)", inst.Failure, causeOf(inst.Failure), failure, failure.Cause)
	}
	e.wantTime("CompletedAt", inst.CompletedAt, end)
}

func causeOf(f *backend.Failure) *backend.Failure {
	if f == nil {
		return nil
	}
	return f.Cause
}

// testLifecycleTerminated is the terminate flow: a terminate request arrives
// as a message, and the step it wakes records the termination.
func testLifecycleTerminated(t *testing.T, e *env) {
	e.start("a", nil)
	e.enqueue(&backend.Message{
		ID: "a/terminate", InstanceID: "a",
		Event: &backend.Event{Type: backend.EventExecutionTerminated, Timestamp: e.at(time.Second), Reason: "operator said so"},
	})
	end := e.at(time.Minute)
	wi := e.claimStep("a", end)
	e.wantMessages(wi, "a/terminate")
	if ev := wi.Messages[0].Event; ev.Type != backend.EventExecutionTerminated || ev.Reason != "operator said so" {
		t.Fatalf("terminate message event = %+v", ev)
	}
	e.commit(wi, end, func(p *backend.CompleteOrchestrationStepParams) { p.Status = backend.StatusTerminated })
	inst := e.wantStatus("a", backend.StatusTerminated)
	e.wantTime("CompletedAt", inst.CompletedAt, end)
	e.wantErr("EnqueueMessage to a terminated instance", e.b.EnqueueMessage(e.ctx, raised("a", "after", "x")), backend.ErrInstanceFinished)
}

func testLifecycleSuspended(t *testing.T, e *env) {
	e.start("a", func(p *backend.CompleteOrchestrationStepParams) { p.Status = backend.StatusSuspended })
	inst := e.wantStatus("a", backend.StatusSuspended)
	if !inst.CompletedAt.IsZero() {
		t.Fatalf("suspended instance has CompletedAt %s", e.rel(inst.CompletedAt))
	}
	// A suspended instance is live: it takes messages, and a control message
	// (here a resume request) is handed to the engine. Suspend/ covers the
	// rest of the rules of suspended instances.
	e.enqueue(&backend.Message{ID: "resume", InstanceID: "a", Event: &backend.Event{Type: backend.EventExecutionResumed}})
	now := e.at(time.Minute)
	e.wantMessages(e.claimStep("a", now), "resume")
}

func testContinueAsNew(t *testing.T, e *env) {
	c, _ := e.startWithTasks("a", 2)
	now := e.at(time.Minute)
	e.enqueue(raised("a", "wake", "wake"))
	wi := e.claimStep("a", now)
	// Arriving during the step: an external event for whichever execution is
	// current (kept), and two messages addressed to the old execution (dropped).
	e.enqueue(raised("a", "external", "external"))
	old := raised("a", "for-old", "for-old")
	old.ExecutionID = c.ExecutionID
	e.enqueue(old)
	newInput := []byte(`"next input"`)
	e.commit(wi, now, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusContinuedAsNew
		p.NewEvents = append(p.NewEvents, &backend.Event{
			Type: backend.EventExecutionCompleted, Timestamp: now, Status: backend.StatusContinuedAsNew, Result: newInput,
		})
		p.ContinueAsNew = &backend.ContinueAsNew{NewExecutionID: "a-e2", Input: newInput}
		p.Messages = []*backend.Message{{ // an old-execution timer, also dropped
			ID: backend.TaskMessageID("a", c.ExecutionID, 9), InstanceID: "a", ExecutionID: c.ExecutionID,
			Event: &backend.Event{Type: backend.EventTimerFired, TaskID: 9}, VisibleAt: e.at(time.Hour),
		}}
	})

	inst := e.wantStatus("a", backend.StatusContinuedAsNew)
	if inst.ExecutionID != "a-e2" {
		t.Fatalf("ExecutionID after continue-as-new = %q, want a-e2", inst.ExecutionID)
	}
	e.wantBytes("Input after continue-as-new", inst.Input, newInput)
	if !inst.CompletedAt.IsZero() {
		t.Fatalf("continued-as-new instance has CompletedAt %s", e.rel(inst.CompletedAt))
	}
	if h := e.history("a"); len(h) != 0 {
		t.Fatalf("history after continue-as-new has %d events %v, want 0 (cleared)", len(h), eventTypes(h))
	}
	far := e.at(2 * time.Hour)
	e.noActivity(far, "the old execution's activity tasks must be dropped")

	wi = e.claimStep("a", far)
	start := backend.StartMessageID("a", "a-e2")
	got := map[string]*backend.Message{}
	for _, m := range wi.Messages {
		got[m.ID] = m
	}
	if len(wi.Messages) != 2 || got[start] == nil || got["external"] == nil {
		t.Fatalf("first step of the new execution has messages %q, want %q and \"external\" only", msgIDs(wi.Messages), start)
	}
	ev := got[start].Event
	if ev.Type != backend.EventExecutionStarted || ev.ExecutionID != "a-e2" || ev.Name != orchName {
		t.Fatalf("new execution's start event = %+v, want ExecutionStarted of %s, execution a-e2", ev, orchName)
	}
	e.wantBytes("new ExecutionStarted.Input", ev.Input, newInput)
	if len(wi.History) != 0 {
		t.Fatalf("first step of the new execution has %d history events, want 0", len(wi.History))
	}
}

func testTerminalDeletes(t *testing.T, e *env) {
	e.startWithTasks("a", 3)
	e.enqueue(raised("a", "e1", "e1"))
	now := e.at(time.Minute)
	wi := e.claimStep("a", now)
	e.enqueue(raised("a", "e2", "e2")) // arrives during the final step
	timer := &backend.Message{ID: "timer", InstanceID: "a", Event: &backend.Event{Type: backend.EventTimerFired, TaskID: 9}, VisibleAt: e.at(time.Hour)}
	e.enqueue(timer)
	e.commit(wi, now, func(p *backend.CompleteOrchestrationStepParams) { p.Status = backend.StatusCompleted })

	far := e.at(10 * time.Hour)
	e.noStep(far, "a finished instance's inbox must be deleted")
	e.noActivity(far, "a finished instance's activity tasks must be deleted")
	e.wantErr("EnqueueMessage to a completed instance", e.b.EnqueueMessage(e.ctx, raised("a", "e3", "e3")), backend.ErrInstanceFinished)
}

func testCustomStatusReplaced(t *testing.T, e *env) {
	e.start("a", func(p *backend.CompleteOrchestrationStepParams) { p.CustomStatus = []byte(`"step 1"`) })
	e.wantBytes("CustomStatus", e.instance("a").CustomStatus, []byte(`"step 1"`))
	e.enqueue(raised("a", "go", "go"))
	now := e.at(time.Minute)
	e.commit(e.claimStep("a", now), now, nil)
	if cs := e.instance("a").CustomStatus; len(cs) != 0 {
		t.Fatalf("CustomStatus after a step that set none = %q, want empty (the step's value replaces the stored one)", cs)
	}
}
