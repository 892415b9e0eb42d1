package backendtest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

func suspendTests() []test {
	return []test{
		{"SuspensionRoundTrips", testSuspensionRoundTrips},
		{"NonControlMessagesKeptUntilResume", testSuspendedKeepsMessages},
		{"EveryControlTypeWakes", testEveryControlTypeWakes},
		{"ClaimOrderCountsOnlyControlMessages", testSuspendedClaimOrder},
		{"RunningInstanceGetsControlMessagesInOrder", testRunningGetsControlInOrder},
		{"RetriedTaskContinuesAttempts", testPriorAttempts},
		{"SuspensionSurvivesReopen", testSuspensionSurvivesReopen},
	}
}

// control is a control message of type typ to instance id, visible at once.
func control(id, msgID string, typ backend.EventType) *backend.Message {
	ev := &backend.Event{Type: typ, Reason: "reason of " + msgID}
	switch typ {
	case backend.EventTaskDuplicate:
		ev = &backend.Event{Type: typ, TaskID: 1, Name: "act", Attempt: 2, FireAt: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)}
	case backend.EventExecutionResumed:
		ev.Decisions = []*backend.Decision{{TaskID: 1, Action: backend.DecisionResult, Result: []byte(`"decided"`)}}
	}
	return &backend.Message{ID: msgID, InstanceID: id, Event: ev}
}

// sampleSuspension is a suspension with every field set, since at (in
// another time zone, to check that a backend keeps the instant).
func sampleSuspension(at time.Time, reason string) *backend.Suspension {
	return &backend.Suspension{
		Reason:   reason,
		Since:    at.Add(123456789 * time.Nanosecond).In(time.FixedZone("UTC+5", 5*3600)),
		Poisoned: true,
		Pending: []*backend.PendingDecision{
			{
				TaskID: 1, Name: "act", Input: []byte(`"input of task 1"`), Attempt: 2,
				PreviousDeliveryAt: at.Add(-time.Minute).In(time.FixedZone("UTC-3", -3*3600)),
				Options: backend.ActivityOptions{
					LeaseDuration: 90 * time.Second, AtMostOnce: true, OnDuplicate: "Suspend", MaxDeliveries: 7,
				},
			},
			{TaskID: 4, Name: "other", Attempt: 3, PreviousDeliveryAt: at.Add(-time.Second)},
		},
	}
}

// suspend sends instance id a suspend request, and commits the step it wakes
// at now with status Suspended and suspension s, changed by edit if not nil.
func (e *env) suspend(id string, now time.Time, s *backend.Suspension, edit func(*backend.CompleteOrchestrationStepParams)) {
	e.t.Helper()
	e.enqueue(control(id, fmt.Sprintf("%s/suspend@%s", id, e.rel(now)), backend.EventExecutionSuspended))
	e.commit(e.claimStep(id, now), now, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusSuspended
		p.Suspension = s
		if edit != nil {
			edit(p)
		}
	})
}

// wantSuspension fails unless got equals want: times compared as instants,
// nil payloads equal to empty ones.
func (e *env) wantSuspension(what string, got, want *backend.Suspension) {
	e.t.Helper()
	if !reflect.DeepEqual(normSuspension(got), normSuspension(want)) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		e.t.Fatalf("%s: Suspension\ngot  %s\nwant %s", what, g, w)
	}
}

func normSuspension(s *backend.Suspension) *backend.Suspension {
	if s == nil {
		return nil
	}
	c := *s
	c.Since = normTime(c.Since)
	c.Pending = nil
	for _, pd := range s.Pending {
		if pd == nil {
			c.Pending = append(c.Pending, nil)
			continue
		}
		d := *pd
		d.Input = normBytes(d.Input)
		d.PreviousDeliveryAt = normTime(d.PreviousDeliveryAt)
		c.Pending = append(c.Pending, &d)
	}
	return &c
}

// listed returns instance id as ListInstances reports it.
func (e *env) listed(id string, statuses ...backend.Status) *backend.Instance {
	e.t.Helper()
	p := &backend.ListInstancesParams{Statuses: statuses}
	for pages := 0; pages < 1000; pages++ {
		page, err := e.b.ListInstances(e.ctx, p)
		e.noErr("ListInstances", err)
		for _, inst := range page.Instances {
			if inst.ID == id {
				return inst
			}
		}
		if page.NextPageToken == "" {
			break
		}
		p.PageToken = page.NextPageToken
	}
	e.t.Fatalf("ListInstances(Statuses %q) does not list %q", statuses, id)
	return nil
}

func testSuspensionRoundTrips(t *testing.T, e *env) {
	e.start("a", nil)
	e.start("other", nil)
	now := e.at(time.Minute)
	s := sampleSuspension(now, "operator: investigate")
	e.suspend("a", now, s, nil)

	e.wantSuspension("GetInstance", e.wantStatus("a", backend.StatusSuspended).Suspension, s)
	e.wantSuspension("ListInstances", e.listed("a", backend.StatusSuspended).Suspension, s)
	e.wantSuspension("ListInstances (no filter)", e.listed("a").Suspension, s)
	if got := e.instance("other").Suspension; got != nil {
		t.Fatalf("Running instance: Suspension = %+v, want nil", got)
	}
	if got := e.listed("other").Suspension; got != nil {
		t.Fatalf("Running instance in ListInstances: Suspension = %+v, want nil", got)
	}

	e.enqueue(control("a", "terminate", backend.EventExecutionTerminated))
	later := e.at(2 * time.Minute)
	wi := e.claimStep("a", later)
	if wi.Instance.Status != backend.StatusSuspended {
		t.Fatalf("claimed step: Instance.Status = %s, want Suspended", wi.Instance.Status)
	}
	e.wantSuspension("claimed step's Instance", wi.Instance.Suspension, s)
	e.wantMessages(wi, "terminate")
	e.commit(wi, later, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusTerminated
		p.Suspension = s // ignored: only stored with StatusSuspended
	})
	if got := e.wantStatus("a", backend.StatusTerminated).Suspension; got != nil {
		t.Fatalf("terminated instance: Suspension = %+v, want nil", got)
	}
}

// testSuspendedKeepsMessages suspends an instance and sends it every kind of
// message that is not a control message: none wakes it, steps woken by
// control messages get only those, and once a step commits Running every
// kept message is handed out in the order it became visible (the events
// by the backend's clock, which reads earlier than the suite's synthetic
// times; the result at 2m; the timer when it fired at 30m).
func testSuspendedKeepsMessages(t *testing.T, e *env) {
	c, tasks := e.startWithTasks("a", 1)
	act := e.claimActivity(tasks[0].ID, e.t0)

	now := e.at(time.Minute)
	fire := e.at(30 * time.Minute)
	timerID := backend.TaskMessageID("a", c.ExecutionID, 7)
	s1 := sampleSuspension(now, "first")
	e.suspend("a", now, s1, func(p *backend.CompleteOrchestrationStepParams) {
		p.Messages = []*backend.Message{{
			ID: timerID, InstanceID: "a", ExecutionID: c.ExecutionID, VisibleAt: fire,
			Event: &backend.Event{Type: backend.EventTimerFired, Timestamp: now, TaskID: 7, FireAt: fire},
		}}
	})
	e.enqueue(raised("a", "ev1", "ev1"))
	e.noErr("CompleteActivity for a Suspended instance", e.b.CompleteActivity(e.ctx, completed(act, e.at(2*time.Minute))))
	e.enqueue(raised("a", "ev2", "ev2"))
	far := e.at(time.Hour) // the timer is due, too
	e.noStep(far, "a Suspended instance is claimable only for control messages")

	// Two control messages, with an event between them: the step gets the
	// control messages only, in order.
	e.enqueue(control("a", "dup", backend.EventTaskDuplicate))
	e.enqueue(raised("a", "ev3", "ev3"))
	e.enqueue(control("a", "suspend-again", backend.EventExecutionSuspended))
	wi := e.claimStep("a", far)
	e.wantMessages(wi, "dup", "suspend-again")
	e.wantEvents("control messages", []*backend.Event{wi.Messages[0].Event, wi.Messages[1].Event},
		[]*backend.Event{control("a", "dup", backend.EventTaskDuplicate).Event, control("a", "suspend-again", backend.EventExecutionSuspended).Event})
	s2 := sampleSuspension(far, "second")
	e.commit(wi, far, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusSuspended
		p.Suspension = s2
	})
	e.wantSuspension("after a step that stays Suspended", e.wantStatus("a", backend.StatusSuspended).Suspension, s2)
	e.noStep(e.at(2*time.Hour), "the instance is still Suspended after a step that committed Suspended")

	e.enqueue(control("a", "resume", backend.EventExecutionResumed))
	later := e.at(2 * time.Hour)
	wi = e.claimStep("a", later)
	e.wantMessages(wi, "resume")
	e.wantEvents("resume message", []*backend.Event{wi.Messages[0].Event}, []*backend.Event{control("a", "resume", backend.EventExecutionResumed).Event})
	e.commit(wi, later, nil) // status Running
	if got := e.wantStatus("a", backend.StatusRunning).Suspension; got != nil {
		t.Fatalf("resumed instance: Suspension = %+v, want nil", got)
	}

	wi = e.claimStep("a", later)
	e.wantMessages(wi, "ev1", "ev2", "ev3", backend.ResultMessageID(tasks[0].ID), timerID)
	if wi.Instance.Suspension != nil {
		t.Fatalf("claimed step of the resumed instance: Suspension = %+v, want nil", wi.Instance.Suspension)
	}
	e.commit(wi, later, nil)
	e.noStep(e.at(3*time.Hour), "every message was consumed")
}

func testEveryControlTypeWakes(t *testing.T, e *env) {
	types := []backend.EventType{
		backend.EventExecutionTerminated, backend.EventExecutionSuspended, backend.EventExecutionResumed,
		backend.EventTaskDuplicate, backend.EventExecutionRewound,
	}
	var ids []string
	now := e.at(time.Minute)
	for _, typ := range types {
		id := string(typ)
		ids = append(ids, id)
		e.start(id, nil)
		e.suspend(id, now, sampleSuspension(now, "suspended"), nil)
		e.enqueue(raised(id, id+"/before", "before"))
	}
	e.noStep(e.at(time.Hour), "no control message yet")
	for _, typ := range types {
		id := string(typ)
		e.enqueue(control(id, id+"/control", typ))
		e.enqueue(raised(id, id+"/after", "after"))
	}
	later := e.at(time.Hour)
	steps := e.claimEach(later, ids...)
	for _, typ := range types {
		id := string(typ)
		wi := steps[id]
		e.wantMessages(wi, id+"/control")
		e.wantEvents("control message of type "+id, []*backend.Event{wi.Messages[0].Event}, []*backend.Event{control(id, id+"/control", typ).Event})
	}
	// A terminating step: the kept messages go with the instance.
	e.commit(steps[string(backend.EventExecutionTerminated)], later, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusTerminated
	})
	e.wantStatus(string(backend.EventExecutionTerminated), backend.StatusTerminated)
}

// testSuspendedClaimOrder checks that a Suspended instance competes for
// claims with the time of its oldest control message, not of its oldest
// message.
func testSuspendedClaimOrder(t *testing.T, e *env) {
	e.start("s", nil)
	e.start("r", nil)
	e.suspend("s", e.t0, sampleSuspension(e.t0, "suspended"), nil)
	at := func(m *backend.Message, d time.Duration) *backend.Message {
		m.VisibleAt = e.at(d)
		return m
	}
	e.enqueue(at(raised("s", "s-event", "event"), time.Second))
	e.enqueue(at(raised("r", "r-event", "event"), 2*time.Second))
	e.enqueue(at(control("s", "s-resume", backend.EventExecutionResumed), 3*time.Second))
	now := e.at(time.Minute)
	first := e.tryClaimStep(now)
	if first == nil || first.Instance.ID != "r" {
		got := "nothing"
		if first != nil {
			got = fmt.Sprintf("%q with %q", first.Instance.ID, msgIDs(first.Messages))
		}
		t.Fatalf("first claim got %s, want \"r\": its message (t0+2s) is older than the control message of \"s\" (t0+3s), "+
			"and the older event of Suspended \"s\" does not count", got)
	}
	e.wantMessages(e.claimStep("s", now), "s-resume")
}

func testRunningGetsControlInOrder(t *testing.T, e *env) {
	e.start("a", nil)
	e.enqueue(raised("a", "ev1", "ev1"))
	e.enqueue(control("a", "suspend", backend.EventExecutionSuspended))
	e.enqueue(raised("a", "ev2", "ev2"))
	e.enqueue(control("a", "terminate", backend.EventExecutionTerminated))
	e.wantMessages(e.claimStep("a", e.at(time.Minute)), "ev1", "suspend", "ev2", "terminate")
}

// testPriorAttempts enqueues a task that had three deliveries under an
// earlier task ID: its deliveries are numbered from 4.
func testPriorAttempts(t *testing.T, e *env) {
	c := e.start("a", nil)
	tk := task(c, 9)
	tk.PriorAttempts = 3
	e.enqueue(raised("a", "retry", "retry"))
	now := e.at(time.Minute)
	e.commit(e.claimStep("a", now), now, func(p *backend.CompleteOrchestrationStepParams) {
		p.ActivityTasks = []*backend.ActivityTask{tk}
	})
	err := e.b.CompleteActivity(e.ctx, &backend.CompleteActivityParams{TaskID: tk.ID, Attempt: 3, Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: 9}, Now: now})
	e.wantErr("CompleteActivity(Attempt 3) of a task with PriorAttempts 3 that was never claimed", err, backend.ErrLeaseLost)

	first := e.claimActivity(tk.ID, now)
	e.wantActivityAttempt(first, 4, time.Time{})
	e.noActivity(e.at(90*time.Second), "attempt 4 holds a live lease")
	second := e.claimActivity(tk.ID, e.at(3*time.Minute))
	e.wantActivityAttempt(second, 5, now)
	e.wantErr("CompleteActivity from superseded attempt 4", e.b.CompleteActivity(e.ctx, completed(first, e.at(3*time.Minute))), backend.ErrLeaseLost)
	e.noErr("CompleteActivity(attempt 5)", e.b.CompleteActivity(e.ctx, completed(second, e.at(3*time.Minute))))
	wi := e.claimStep("a", e.at(4*time.Minute))
	e.wantMessages(wi, backend.ResultMessageID(tk.ID))
	if got := wi.Messages[0].Event.Attempt; got != 5 {
		t.Fatalf("result of attempt %d, want 5", got)
	}
}

func testSuspensionSurvivesReopen(t *testing.T, e *env) {
	e.needReopen()
	e.start("a", nil)
	now := e.at(time.Minute)
	s := sampleSuspension(now, "survives")
	e.suspend("a", now, s, nil)
	e.enqueue(raised("a", "kept", "kept"))

	e.reopen()

	e.wantSuspension("GetInstance after reopen", e.wantStatus("a", backend.StatusSuspended).Suspension, s)
	e.noStep(e.at(time.Hour), "still Suspended after reopen, with no control message")
	e.enqueue(control("a", "resume", backend.EventExecutionResumed))
	later := e.at(time.Hour)
	wi := e.claimStep("a", later)
	e.wantMessages(wi, "resume")
	e.wantSuspension("claimed step after reopen", wi.Instance.Suspension, s)
	e.commit(wi, later, nil)
	e.wantMessages(e.claimStep("a", later), "kept")
}
