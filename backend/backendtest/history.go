package backendtest

import (
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

func historyTests() []test {
	return []test{
		{"RoundTripsEveryField", testHistoryRoundTrip},
		{"AppendsAcrossSteps", testHistoryAppends},
		{"MessageRoundTripsEveryField", testMessageRoundTrip},
	}
}

// everyEvent is one event of each type with every field its type uses set:
// timestamps with nanoseconds in a zone other than UTC, binary payloads,
// nested failures.
func everyEvent(now time.Time) []*backend.Event {
	ts := now.Add(123456789 * time.Nanosecond).In(time.FixedZone("UTC+5:30", 5*3600+1800))
	fail := &backend.Failure{
		Message: "declined", Type: "pay.Declined", TaskName: "Charge", NonRetryable: true,
		Details: []byte{0, 1, 0xfe, 0xff, '"', '\\'}, Stack: "goroutine 7 [running]:\nmain.f()\n",
		Cause: &backend.Failure{Message: "expired", Cause: &backend.Failure{Message: "root", Details: []byte("{}")}},
	}
	bin := []byte{0xff, 0x00, 'x', 0xc3, 0x28}
	parent := &backend.ParentRef{InstanceID: "parent", ExecutionID: "parent-e3", TaskID: 12}
	return []*backend.Event{
		{Type: backend.EventOrchestratorStarted, Timestamp: ts},
		{Type: backend.EventExecutionStarted, Timestamp: ts, Name: orchName, ExecutionID: "exec-9", Input: []byte(`{"a":[1,2]}`), Parent: parent},
		{Type: backend.EventTaskScheduled, Timestamp: ts, TaskID: 1, Name: "Charge", Input: bin, Activity: &backend.ActivityOptions{
			LeaseDuration: 90 * time.Second, AtMostOnce: true, OnDuplicate: "Reconcile", MaxDeliveries: 5,
		}},
		{Type: backend.EventTaskCompleted, Timestamp: ts, TaskID: 1, Result: []byte(`"ok"`), Attempt: 3},
		{Type: backend.EventTaskFailed, Timestamp: ts, TaskID: 2, Failure: fail, Attempt: 2},
		{Type: backend.EventTimerCreated, Timestamp: ts, TaskID: 3, FireAt: ts.Add(36 * time.Hour)},
		{Type: backend.EventTimerFired, Timestamp: ts, TaskID: 3, FireAt: ts.Add(36 * time.Hour)},
		{Type: backend.EventSubOrchestrationCreated, Timestamp: ts, TaskID: 4, Name: "child", InstanceID: "kid", Input: bin},
		{Type: backend.EventSubOrchestrationCompleted, Timestamp: ts, TaskID: 4, Result: bin},
		{Type: backend.EventSubOrchestrationFailed, Timestamp: ts, TaskID: 5, Failure: fail},
		{Type: backend.EventEventRaised, Timestamp: ts, Name: "approve", Input: []byte(`true`)},
		{Type: backend.EventEventSent, Timestamp: ts, TaskID: 6, InstanceID: "other", Name: "ping", Input: []byte(`1`)},
		{Type: backend.EventExecutionTerminated, Timestamp: ts, Reason: "by hand ✋"},
		{Type: backend.EventExecutionCompleted, Timestamp: ts, Status: backend.StatusFailed, Result: []byte(`null`), Failure: fail},
	}
}

func testHistoryRoundTrip(t *testing.T, e *env) {
	e.create("a", nil)
	events := everyEvent(e.t0)
	e.commit(e.claimStep("a", e.t0), e.t0, func(p *backend.CompleteOrchestrationStepParams) { p.NewEvents = events })
	e.wantEvents("GetHistory", e.history("a"), events)
	e.enqueue(raised("a", "next", "next"))
	e.wantEvents("work item History", e.claimStep("a", e.at(time.Minute)).History, events)
}

func testHistoryAppends(t *testing.T, e *env) {
	e.create("a", nil)
	var want []*backend.Event
	for i := range 4 {
		now := e.at(time.Duration(i) * time.Minute)
		if i > 0 {
			e.enqueue(raised("a", "e"+string(rune('0'+i)), "e"))
		}
		wi := e.claimStep("a", now)
		e.wantEvents("work item History before step", wi.History, want)
		p := e.commit(wi, now, nil)
		want = append(want, p.NewEvents...)
		e.wantEvents("GetHistory after step", e.history("a"), want)
	}
}

func testMessageRoundTrip(t *testing.T, e *env) {
	e.start("a", nil)
	for i, ev := range everyEvent(e.t0) {
		e.enqueue(&backend.Message{ID: "m" + string(rune('a'+i)), InstanceID: "a", ExecutionID: "a-e1", Event: ev})
	}
	wi := e.claimStep("a", e.at(time.Minute))
	var got []*backend.Event
	for _, m := range wi.Messages {
		if m.InstanceID != "a" || m.ExecutionID != "a-e1" {
			t.Fatalf("message %q addressed to %q/%q, want a/a-e1", m.ID, m.InstanceID, m.ExecutionID)
		}
		got = append(got, m.Event)
	}
	e.wantEvents("message events", got, everyEvent(e.t0))
}

func persistenceTests() []test {
	return []test{
		{"StateSurvivesReopen", testStateSurvivesReopen},
		{"LeasesSurviveReopen", testLeasesSurviveReopen},
		{"ConsumedIDsSurviveReopen", testConsumedIDsSurviveReopen},
		{"HeartbeatDetailsSurviveReopen", testHeartbeatSurvivesReopen},
	}
}

func testStateSurvivesReopen(t *testing.T, e *env) {
	e.needReopen()
	e.populate(spec{"done", "o", e.t0, backend.StatusFailed})
	c := e.create("a", nil)
	fire := e.at(time.Hour)
	p := e.commit(e.claimStep("a", e.t0), e.t0, func(p *backend.CompleteOrchestrationStepParams) {
		p.NewEvents = everyEvent(e.t0)
		p.CustomStatus = []byte(`"half way"`)
		p.ActivityTasks = []*backend.ActivityTask{task(c, 1)}
		p.Messages = []*backend.Message{{ID: "timer", InstanceID: "a", Event: &backend.Event{Type: backend.EventTimerFired, TaskID: 2}, VisibleAt: fire}}
	})
	e.enqueue(raised("a", "event", "event"))
	before := e.instance("a")

	e.reopen()

	after := e.instance("a")
	if after.Status != before.Status || after.ExecutionID != before.ExecutionID || after.Name != before.Name ||
		string(after.Input) != string(before.Input) || string(after.CustomStatus) != string(before.CustomStatus) ||
		!after.CreatedAt.Equal(before.CreatedAt) {
		t.Fatalf("instance after reopen = %+v, want %+v", after, before)
	}
	if f := e.wantStatus("done", backend.StatusFailed).Failure; f == nil || f.Message != "boom" {
		t.Fatalf("failure after reopen = %+v", f)
	}
	e.wantEvents("history after reopen", e.history("a"), p.NewEvents)

	now := e.at(time.Minute)
	wi := e.claimStep("a", now)
	e.wantMessages(wi, "event")
	e.commit(wi, now, nil)
	e.noStep(fire.Add(-time.Second), "the timer is not due")
	e.wantMessages(e.claimStep("a", fire), "timer")
	if a := e.claimActivity(task(c, 1).ID, now); a.Attempt != 1 {
		t.Fatalf("first claim of a task after reopen: Attempt %d, want 1", a.Attempt)
	}
}

func testLeasesSurviveReopen(t *testing.T, e *env) {
	e.needReopen()
	_, tasks := e.startWithTasks("a", 1)
	e.enqueue(raised("a", "event", "event"))
	step := e.claimStep("a", e.t0)
	act := e.claimActivity(tasks[0].ID, e.t0)
	e.reopen()
	now := e.at(30 * time.Second)
	e.noStep(now, "the step's lease outlives the reopen")
	e.noActivity(now, "the activity's lease outlives the reopen")
	e.noErr("CompleteActivity after reopen", e.b.CompleteActivity(e.ctx, completed(act, now)))
	e.commit(step, now, nil)
	e.wantMessages(e.claimStep("a", now), backend.ResultMessageID(tasks[0].ID))
}

func testConsumedIDsSurviveReopen(t *testing.T, e *env) {
	e.needReopen()
	e.start("a", nil)
	e.enqueue(raised("a", "once", "once"))
	now := e.at(time.Minute)
	e.commit(e.claimStep("a", now), now, nil)
	e.reopen()
	e.noErr("EnqueueMessage of a consumed ID after reopen", e.b.EnqueueMessage(e.ctx, raised("a", "once", "once")))
	e.noStep(e.at(time.Hour), "a message consumed in this execution must not be delivered again")
}

func testHeartbeatSurvivesReopen(t *testing.T, e *env) {
	e.needReopen()
	_, tasks := e.startWithTasks("a", 1)
	wi := e.claimActivity(tasks[0].ID, e.t0)
	e.noErr("RenewActivityLease(Details)", e.b.RenewActivityLease(e.ctx, heartbeat(wi, e.at(time.Second), []byte("progress"))))
	e.reopen()
	next := e.claimActivity(tasks[0].ID, e.at(5*time.Minute))
	e.wantActivityAttempt(next, 2, e.t0)
	e.wantBytes("HeartbeatDetails after reopen", next.HeartbeatDetails, []byte("progress"))
}
