package backendtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

func messageTests() []test {
	return []test{
		{"DeliveredInOrder", testDeliveredInOrder},
		{"EnqueueUnknownOrFinished", testEnqueueUnknownOrFinished},
		{"DuplicateIDIgnored", testDuplicateMessageIgnored},
		{"DuplicateOfConsumedIDIgnored", testDuplicateOfConsumedIgnored},
		{"StepDuplicateIDIgnored", testStepDuplicateIgnored},
		{"StepMessagesToUnknownOrFinishedDropped", testStepMessagesDropped},
		{"OtherExecutionHandedToStep", testOtherExecutionHandedToStep},
	}
}

func testDeliveredInOrder(t *testing.T, e *env) {
	e.start("a", nil)
	// IDs whose sort order is not the insertion order.
	const n = 40
	var want []string
	for i := range n {
		id := fmt.Sprintf("m%02d", (i*17)%n)
		want = append(want, id)
		e.enqueue(raised("a", id, id))
	}
	e.wantMessages(e.claimStep("a", e.at(time.Minute)), want...)
}

func testEnqueueUnknownOrFinished(t *testing.T, e *env) {
	e.wantErr("EnqueueMessage to an unknown instance", e.b.EnqueueMessage(e.ctx, raised("nope", "m", "m")), backend.ErrInstanceNotFound)
	for i, s := range []backend.Status{backend.StatusCompleted, backend.StatusFailed, backend.StatusTerminated} {
		id := string(s)
		e.start(id, nil)
		e.end(id, s, e.at(time.Duration(i+1)*time.Minute))
		e.wantErr("EnqueueMessage to a "+id+" instance", e.b.EnqueueMessage(e.ctx, raised(id, "m", "m")), backend.ErrInstanceFinished)
	}
	// Live statuses take messages.
	e.start("can", func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusContinuedAsNew
		p.ContinueAsNew = &backend.ContinueAsNew{NewExecutionID: "can-e2"}
	})
	e.enqueue(raised("can", "m", "m"))
	e.create("pending", nil)
	e.enqueue(raised("pending", "m", "m"))
}

func testDuplicateMessageIgnored(t *testing.T, e *env) {
	e.start("a", nil)
	first := raised("a", "dup", "first")
	e.enqueue(first)
	second := raised("a", "dup", "second")
	second.Event.Input = []byte(`"second"`)
	e.noErr("EnqueueMessage of an existing ID", e.b.EnqueueMessage(e.ctx, second))
	wi := e.claimStep("a", e.at(time.Minute))
	e.wantMessages(wi, "dup")
	if ev := wi.Messages[0].Event; ev.Name != "first" {
		t.Fatalf("duplicate insert replaced the message: got event %q, want the first one", ev.Name)
	}
}

func testDuplicateOfConsumedIgnored(t *testing.T, e *env) {
	c := e.start("a", nil)
	e.enqueue(raised("a", "once", "once"))
	now := e.at(time.Minute)
	e.commit(e.claimStep("a", now), now, nil)
	// A retried send of the consumed message, and of the consumed start message.
	e.noErr("EnqueueMessage of a consumed ID", e.b.EnqueueMessage(e.ctx, raised("a", "once", "once")))
	start := &backend.Message{
		ID: backend.StartMessageID("a", c.ExecutionID), InstanceID: "a", ExecutionID: c.ExecutionID,
		Event: &backend.Event{Type: backend.EventExecutionStarted, Name: orchName, ExecutionID: c.ExecutionID},
	}
	e.noErr("EnqueueMessage of the consumed start message", e.b.EnqueueMessage(e.ctx, start))
	e.noStep(e.at(time.Hour), "messages consumed in this execution must not be delivered again")
}

func testStepDuplicateIgnored(t *testing.T, e *env) {
	e.start("target", nil)
	e.create("s1", nil)
	e.create("s2", nil)
	e.enqueue(raised("target", "shared", "from outside"))
	now := e.at(time.Minute)
	steps := e.claimEach(now, "s1", "s2", "target")
	for _, id := range []string{"s1", "s2"} {
		e.commit(steps[id], now, func(p *backend.CompleteOrchestrationStepParams) {
			p.Messages = []*backend.Message{raised("target", "shared", "from "+id)}
		})
	}
	e.commit(steps["target"], now, func(p *backend.CompleteOrchestrationStepParams) { p.ConsumedMessageIDs = nil })
	wi := e.claimStep("target", now)
	e.wantMessages(wi, "shared")
	if ev := wi.Messages[0].Event; ev.Name != "from outside" {
		t.Fatalf("a step's insert of an existing ID replaced the message: got %q", ev.Name)
	}
}

func testStepMessagesDropped(t *testing.T, e *env) {
	e.start("done", nil)
	e.end("done", backend.StatusCompleted, e.at(time.Second))
	e.create("a", nil)
	now := e.at(time.Minute)
	e.commit(e.claimStep("a", now), now, func(p *backend.CompleteOrchestrationStepParams) {
		p.Messages = []*backend.Message{raised("ghost", "to-ghost", "x"), raised("done", "to-done", "x")}
	})
	_, err := e.b.GetInstance(e.ctx, "ghost")
	e.wantErr("GetInstance of a step message's unknown target", err, backend.ErrInstanceNotFound)
	e.wantStatus("done", backend.StatusCompleted)
	e.noStep(e.at(time.Hour), "messages to unknown and finished instances are dropped")
}

func testOtherExecutionHandedToStep(t *testing.T, e *env) {
	e.start("a", nil)
	m := raised("a", "stale", "stale")
	m.ExecutionID = "some-old-execution"
	e.enqueue(m)
	wi := e.claimStep("a", e.at(time.Minute))
	e.wantMessages(wi, "stale")
	if got := wi.Messages[0].ExecutionID; got != m.ExecutionID {
		t.Fatalf("Message.ExecutionID = %q, want %q (the engine discards it, not the backend)", got, m.ExecutionID)
	}
}

func timerTests() []test {
	return []test{
		{"StepTimerFiresAtItsTime", testStepTimer},
		{"EnqueuedVisibleAt", testEnqueuedVisibleAt},
		{"OnlyVisibleMessagesHandedOut", testOnlyVisibleMessages},
	}
}

func testStepTimer(t *testing.T, e *env) {
	fire := e.at(time.Hour)
	c := e.start("a", func(p *backend.CompleteOrchestrationStepParams) {
		p.Messages = []*backend.Message{{
			ID: backend.TaskMessageID("a", "a-e1", 1), InstanceID: "a", ExecutionID: "a-e1",
			Event:     &backend.Event{Type: backend.EventTimerFired, Timestamp: fire, TaskID: 1, FireAt: fire},
			VisibleAt: fire,
		}}
	})
	e.noStep(e.at(time.Minute), "the timer fires in an hour")
	// The same instants in other zones: a backend compares instants.
	e.noStep(fire.Add(-time.Millisecond).In(time.FixedZone("UTC-12", -12*3600)), "the timer fires in 1ms")
	wi := e.claimStep("a", fire.In(time.FixedZone("UTC+14", 14*3600)))
	e.wantMessages(wi, backend.TaskMessageID("a", c.ExecutionID, 1))
	e.wantTime("TimerFired.FireAt", wi.Messages[0].Event.FireAt, fire)
}

func testEnqueuedVisibleAt(t *testing.T, e *env) {
	e.start("a", nil)
	at := e.at(30 * time.Minute)
	m := raised("a", "later", "later")
	m.VisibleAt = at
	e.enqueue(m)
	e.noStep(at.Add(-time.Millisecond), "the message is visible in 1ms")
	e.wantMessages(e.claimStep("a", at.Add(time.Second)), "later")
}

func testOnlyVisibleMessages(t *testing.T, e *env) {
	e.start("a", nil)
	fire := e.at(time.Hour)
	timer := &backend.Message{ID: "timer", InstanceID: "a", Event: &backend.Event{Type: backend.EventTimerFired, TaskID: 1, FireAt: fire}, VisibleAt: fire}
	e.enqueue(timer)
	e.enqueue(raised("a", "now", "now"))
	now := e.at(time.Minute)
	wi := e.claimStep("a", now)
	e.wantMessages(wi, "now")
	e.commit(wi, now, nil)
	e.noStep(fire.Add(-time.Second), "only the timer is left")
	e.wantMessages(e.claimStep("a", fire), "timer")
}
