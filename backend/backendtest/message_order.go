package backendtest

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// messageOrderTests check the message-order rule: a step's messages reach
// the code in the order they became visible (a message visible at once when
// it was enqueued, a timer or other delayed message when its time came),
// whether or not anybody claimed in between; at the same instant, the
// message written first comes first.
func messageOrderTests() []test {
	return []test{
		{"EventBeforeTimerFiredWhileNobodyClaimed", testEventBeforeLaterTimer},
		{"ResultBeforeTimerFiredWhileNobodyClaimed", testResultBeforeLaterTimer},
		{"EnqueuedEventBeforeTimerFiredWhileNobodyClaimed", testEnqueuedBeforeLaterTimer},
		{"DelayedEventAfterEarlierTimer", testDelayedEventAfterTimer},
		{"TimerBeforeLaterEvent", testTimerBeforeLaterEvent},
		{"SameInstantTimerBeforeEvent", testSameInstantTimerFirst},
		{"SameInstantWrittenFirstComesFirst", testSameInstantWrittenFirst},
		{"SuspendedKeepsVisibilityOrder", testSuspendedVisibilityOrder},
		{"ContinueAsNewKeepsCarriedEventsInOrder", testContinueAsNewOrder},
		{"OldestVisibleMessagePicksInstance", testOldestVisiblePicksInstance},
		{"SDKEventBeforeTimeoutWhileSuspended", testSDKEventBeforeTimeoutSuspended},
		{"SDKEventBeforeTimeoutWhileNoWorker", testSDKEventBeforeTimeoutNoWorker},
	}
}

// timerMsg is the TimerFired message of task n of the instance created with
// c, visible at fire.
func timerMsg(c *backend.CreateInstanceParams, n int, fire time.Time) *backend.Message {
	return &backend.Message{
		ID: backend.ResultMessageID(backend.TaskMessageID(c.ID, c.ExecutionID, n)), InstanceID: c.ID, ExecutionID: c.ExecutionID,
		Event:     &backend.Event{Type: backend.EventTimerFired, Timestamp: fire, TaskID: n, FireAt: fire},
		VisibleAt: fire,
	}
}

// startWithTimer starts instance id with a first step, committed at t0,
// that schedules timer task 1 firing at fire. It returns the timer message.
func (e *env) startWithTimer(id string, fire time.Time) *backend.Message {
	e.t.Helper()
	c := e.create(id, nil)
	m := timerMsg(c, 1, fire)
	e.commit(e.claimStep(id, e.t0), e.t0, func(p *backend.CompleteOrchestrationStepParams) {
		p.Messages = []*backend.Message{m}
	})
	return m
}

// sendFromStep makes a new instance from, claims its first step at t0 and
// commits it at now, sending event message msgID to instance to: an event
// enqueued at now by the writer's clock. Nothing else may be claimable at
// t0 ahead of it.
func (e *env) sendFromStep(from, to, msgID string, now time.Time) {
	e.t.Helper()
	e.create(from, nil)
	e.commit(e.claimStep(from, e.t0), now, func(p *backend.CompleteOrchestrationStepParams) {
		p.Messages = []*backend.Message{raised(to, msgID, "evt")}
	})
}

// testEventBeforeLaterTimer is the reported defect: a wait of 10 s, the
// event raised at 1.5 s, no claim until 11 s. The timer's row is written
// first, when it is scheduled; the event must still come first.
func testEventBeforeLaterTimer(t *testing.T, e *env) {
	timer := e.startWithTimer("a", e.at(10*time.Second))
	e.sendFromStep("s", "a", "evt", e.at(1500*time.Millisecond))
	e.wantMessages(e.claimStep("a", e.at(11*time.Second)), "evt", timer.ID)
}

// testResultBeforeLaterTimer: an activity result that arrived before the
// timer fired comes before it.
func testResultBeforeLaterTimer(t *testing.T, e *env) {
	c := e.create("a", nil)
	tk := task(c, 1)
	timer := timerMsg(c, 2, e.at(10*time.Second))
	e.commit(e.claimStep("a", e.t0), e.t0, func(p *backend.CompleteOrchestrationStepParams) {
		p.ActivityTasks = []*backend.ActivityTask{tk}
		p.Messages = []*backend.Message{timer}
	})
	wi := e.claimActivity(tk.ID, e.at(time.Second))
	e.noErr("CompleteActivity", e.b.CompleteActivity(e.ctx, completed(wi, e.at(1500*time.Millisecond))))
	e.wantMessages(e.claimStep("a", e.at(11*time.Second)), backend.ResultMessageID(tk.ID), timer.ID)
}

// testEnqueuedBeforeLaterTimer: EnqueueMessage (the backend's clock, which
// reads earlier than the suite's synthetic times) after the timer was
// scheduled but before it fired.
func testEnqueuedBeforeLaterTimer(t *testing.T, e *env) {
	timer := e.startWithTimer("a", e.at(10*time.Second))
	e.enqueue(raised("a", "evt", "evt"))
	e.wantMessages(e.claimStep("a", e.at(11*time.Second)), "evt", timer.ID)
}

// testDelayedEventAfterTimer: a message enqueued with a VisibleAt later
// than a timer's fire time comes after the timer, even though its row was
// written first.
func testDelayedEventAfterTimer(t *testing.T, e *env) {
	c := e.create("a", nil)
	later := raised("a", "later", "later")
	later.VisibleAt = e.at(20 * time.Second)
	e.enqueue(later)
	wi := e.claimStep("a", e.t0)
	e.wantMessages(wi, backend.StartMessageID("a", c.ExecutionID))
	timer := timerMsg(c, 1, e.at(10*time.Second))
	e.commit(wi, e.t0, func(p *backend.CompleteOrchestrationStepParams) { p.Messages = []*backend.Message{timer} })
	e.wantMessages(e.claimStep("a", e.at(30*time.Second)), timer.ID, "later")
}

// testTimerBeforeLaterEvent: an event that arrived after the timer fired
// comes after it (the rule is not "events first").
func testTimerBeforeLaterEvent(t *testing.T, e *env) {
	timer := e.startWithTimer("a", e.at(time.Second))
	e.create("s", func(p *backend.CreateInstanceParams) { p.Now = e.at(2 * time.Second) })
	// "a" is due too: claim both, then send from "s" at 2 s without
	// committing "a" (its step crashes and its lease lapses).
	steps := e.claimEach(e.at(2*time.Second), "a", "s")
	e.commit(steps["s"], e.at(2*time.Second), func(p *backend.CompleteOrchestrationStepParams) {
		p.Messages = []*backend.Message{raised("a", "evt", "evt")}
	})
	e.wantMessages(e.claimStep("a", e.at(2*time.Second+lease)), timer.ID, "evt")
}

// testSameInstantTimerFirst pins the tie rule: a timer firing at the
// instant an event arrives was written first (when it was scheduled), and
// comes first.
func testSameInstantTimerFirst(t *testing.T, e *env) {
	fire := e.at(10 * time.Second)
	timer := e.startWithTimer("a", fire)
	e.sendFromStep("s", "a", "evt", fire)
	e.wantMessages(e.claimStep("a", e.at(11*time.Second)), timer.ID, "evt")
}

// testSameInstantWrittenFirst: of two messages visible at the same
// instant, the one written first comes first, whatever its type.
func testSameInstantWrittenFirst(t *testing.T, e *env) {
	fire := e.at(10 * time.Second)
	c := e.create("a", nil)
	first := raised("a", "first", "first")
	first.VisibleAt = fire
	e.enqueue(first)
	wi := e.claimStep("a", e.t0)
	e.wantMessages(wi, backend.StartMessageID("a", c.ExecutionID))
	timer := timerMsg(c, 1, fire)
	e.commit(wi, e.t0, func(p *backend.CompleteOrchestrationStepParams) { p.Messages = []*backend.Message{timer} })
	e.wantMessages(e.claimStep("a", e.at(11*time.Second)), "first", timer.ID)
}

// testSuspendedVisibilityOrder: the event arrives while the instance is
// suspended, the timer fires while it is still suspended; after the resume
// the event comes first.
func testSuspendedVisibilityOrder(t *testing.T, e *env) {
	timer := e.startWithTimer("a", e.at(10*time.Second))
	e.suspend("a", e.at(time.Second), sampleSuspension(e.at(time.Second), "hold"), nil)
	e.sendFromStep("s", "a", "evt", e.at(1500*time.Millisecond))
	e.noStep(e.at(11*time.Second), "a suspended instance waits for a control message")
	e.enqueue(control("a", "resume", backend.EventExecutionResumed))
	wi := e.claimStep("a", e.at(11*time.Second))
	e.wantMessages(wi, "resume")
	e.commit(wi, e.at(11*time.Second), nil)
	e.wantMessages(e.claimStep("a", e.at(11*time.Second)), "evt", timer.ID)
}

// testContinueAsNewOrder: events carried over a continue-as-new keep their
// place: before the new execution's start message if they arrived before
// it, after it otherwise.
func testContinueAsNewOrder(t *testing.T, e *env) {
	e.create("a", nil)
	e.create("s1", func(p *backend.CreateInstanceParams) { p.Now = e.at(time.Second) })
	steps := e.claimEach(e.at(time.Second), "a", "s1")
	e.commit(steps["s1"], e.at(time.Second), func(p *backend.CompleteOrchestrationStepParams) {
		p.Messages = []*backend.Message{raised("a", "before", "evt")}
	})
	e.commit(steps["a"], e.at(2*time.Second), func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusContinuedAsNew
		p.ContinueAsNew = &backend.ContinueAsNew{NewExecutionID: "a-e2"}
	})
	e.sendFromStep("s2", "a", "after", e.at(3*time.Second))
	e.wantMessages(e.claimStep("a", e.at(4*time.Second)), "before", backend.StartMessageID("a", "a-e2"), "after")
}

// testOldestVisiblePicksInstance: across instances, the claim takes the
// one whose oldest message became visible first, whatever the order the
// rows were written in.
func testOldestVisiblePicksInstance(t *testing.T, e *env) {
	e.startWithTimer("timer", e.at(10*time.Second))
	e.startWithTimer("evt", e.at(time.Hour))
	e.sendFromStep("s", "evt", "evt", e.at(1500*time.Millisecond))
	now := e.at(11 * time.Second)
	e.wantMessages(e.claimStep("evt", now), "evt")
	e.claimStep("timer", now)
}

// orderWait is the orchestration of the SDK scenarios: it waits for event
// "go" with a timeout and returns the event's payload, or "timeout".
func orderWait(ctx *duro.OrchestrationContext, timeout time.Duration) (string, error) {
	var s string
	err := ctx.WaitForEvent("go", timeout).Await(&s)
	if errors.Is(err, duro.ErrTimeout) {
		return "timeout", nil
	}
	return s, err
}

// orderTimeout is the wait of the SDK scenarios: long enough for the test to
// suspend the instance (or stop the worker) and raise the event before it.
const orderTimeout = 2 * time.Second

// startOrderWorker starts a worker for orderWait; the test stops it at the
// end if it has not.
func startOrderWorker(t *testing.T, be backend.Backend) *duro.Worker {
	t.Helper()
	reg := duro.NewRegistry()
	duro.RegisterOrchestration(reg, "OrderWait", orderWait)
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopOrderWorker(t, w) })
	return w
}

func stopOrderWorker(t *testing.T, w *duro.Worker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Errorf("worker stop: %v", err)
	}
}

// timeoutFireAt waits until instance id has recorded the timer of its wait
// and returns the timer's fire time.
func timeoutFireAt(t *testing.T, c *duro.Client, id string) time.Time {
	t.Helper()
	var fire time.Time
	waitUntil(t, func() bool {
		h, err := c.History(context.Background(), id)
		if err != nil {
			return false
		}
		for _, ev := range h {
			if ev.Type == backend.EventTimerCreated {
				fire = ev.FireAt
				return true
			}
		}
		return false
	})
	return fire
}

// raiseBefore raises "go" on id and fails the test as invalid if the event
// could not be raised before fire.
func raiseBefore(t *testing.T, c *duro.Client, id string, fire time.Time) {
	t.Helper()
	if err := c.RaiseEvent(bg(t), id, "go", "event"); err != nil {
		t.Fatal(err)
	}
	if !time.Now().Before(fire) {
		t.Fatalf("the event was raised at %s, after the timeout's fire time %s: the scenario needs a longer timeout", time.Now(), fire)
	}
}

// awaitFire waits until the wall clock (the backends' clock in these tests)
// has passed fire, so that the timeout's message is visible too. It waits
// for a timer to come due in real time; it proves nothing by itself.
func awaitFire(fire time.Time) {
	if d := time.Until(fire); d > 0 {
		time.Sleep(d + 20*time.Millisecond)
	}
}

// wantEventFirst checks the outcome and the history of an orderWait
// instance whose event was raised before its timeout fired at fire: the
// step that took the event ran after fire (so the timeout's message was
// visible to it too), and the event won.
func wantEventFirst(t *testing.T, c *duro.Client, id string, fire time.Time) {
	t.Helper()
	inst, err := c.Wait(bg(t), id)
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.History(bg(t), id)
	if err != nil {
		t.Fatal(err)
	}
	var order []backend.EventType
	var stepAt, eventStepAt time.Time
	for _, ev := range h {
		switch ev.Type {
		case backend.EventOrchestratorStarted:
			stepAt = ev.Timestamp
		case backend.EventEventRaised:
			eventStepAt = stepAt
			order = append(order, ev.Type)
		case backend.EventTimerFired:
			order = append(order, ev.Type)
		}
	}
	if !eventStepAt.IsZero() && eventStepAt.Before(fire) {
		t.Fatalf("the event was processed at %s, before the timeout's fire time %s: the scenario did not happen", eventStepAt, fire)
	}
	if got := mustOutput[string](t, inst); got != "event" {
		t.Fatalf("result %q (history order %v), want the event raised before the timeout", got, order)
	}
	if len(order) == 0 || order[0] != backend.EventEventRaised {
		t.Fatalf("history order %v, want EventRaised first", order)
	}
}

// testSDKEventBeforeTimeoutSuspended: the event is raised while the
// instance is suspended, before its timeout fires; it is resumed after the
// timeout fired. The event wins.
func testSDKEventBeforeTimeoutSuspended(t *testing.T, e *env) {
	startOrderWorker(t, e.b)
	c := duro.NewClient(e.b, &duro.ClientOptions{WaitPollInterval: 10 * time.Millisecond})
	ctx := bg(t)
	id, err := c.Start(ctx, "OrderWait", orderTimeout)
	if err != nil {
		t.Fatal(err)
	}
	fire := timeoutFireAt(t, c, id)
	if err := c.Suspend(ctx, id, "hold"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, id, duro.StatusSuspended)
	raiseBefore(t, c, id, fire)
	awaitFire(fire)
	if err := c.Resume(ctx, id, "go on"); err != nil {
		t.Fatal(err)
	}
	wantEventFirst(t, c, id, fire)
}

// testSDKEventBeforeTimeoutNoWorker: the worker stops after the wait
// began, the event is raised before the timeout fires, and a worker comes
// back after it fired. The event wins.
func testSDKEventBeforeTimeoutNoWorker(t *testing.T, e *env) {
	w := startOrderWorker(t, e.b)
	c := duro.NewClient(e.b, &duro.ClientOptions{WaitPollInterval: 10 * time.Millisecond})
	id, err := c.Start(bg(t), "OrderWait", orderTimeout)
	if err != nil {
		t.Fatal(err)
	}
	fire := timeoutFireAt(t, c, id)
	stopOrderWorker(t, w)
	raiseBefore(t, c, id, fire)
	awaitFire(fire)
	startOrderWorker(t, e.b)
	wantEventFirst(t, c, id, fire)
}
