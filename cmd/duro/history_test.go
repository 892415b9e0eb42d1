package main

import (
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

func TestRenderTimeline(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	long := `"` + strings.Repeat("x", 100) + `"`
	events := []*duro.HistoryEvent{
		{Type: backend.EventExecutionStarted, Timestamp: at(0), Name: "Order", Input: []byte(`{"id": 1}`)},
		{Type: backend.EventOrchestratorStarted, Timestamp: at(2)},
		{Type: backend.EventTaskScheduled, Timestamp: at(2), TaskID: 0, Name: "Charge", Input: []byte(long)},
		{Type: backend.EventTimerCreated, Timestamp: at(2), TaskID: 1, FireAt: at(1502)},
		{Type: backend.EventTaskFailed, Timestamp: at(27), TaskID: 0, Attempt: 3,
			Failure: &duro.Failure{Type: "CardDeclined", Message: "no funds", Cause: &duro.Failure{Message: "bank said no"}}},
		{Type: backend.EventTimerFired, Timestamp: at(1502), TaskID: 1},
		{Type: backend.EventSubOrchestrationCreated, Timestamp: at(1503), TaskID: 2, Name: "Invoice", InstanceID: "child-1"},
		{Type: backend.EventSubOrchestrationCompleted, Timestamp: at(1603), TaskID: 2, Result: []byte(`"INV-1"`)},
		{Type: backend.EventEventRaised, Timestamp: at(1700), Name: "approved", Input: []byte(`true`)},
		{Type: backend.EventEventSent, Timestamp: at(1701), TaskID: 3, Name: "ping", InstanceID: "other"},
		{Type: backend.EventExecutionTerminated, Timestamp: at(1800), Reason: "cancelled"},
		{Type: backend.EventExecutionCompleted, Timestamp: at(61000), Status: duro.StatusFailed,
			Failure: &duro.Failure{Type: "Boom", Message: "gave up"}},
	}
	var b strings.Builder
	if err := renderTimeline(&b, events, false); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`  +0.000s  ExecutionStarted                Order       input={"id":1}`,
		`  +0.002s  OrchestratorStarted`,
		`  +0.002s  TaskScheduled               #0  Charge      input="` + strings.Repeat("x", 58) + "…",
		`  +0.002s  TimerCreated                #1  timer       fires in 1.5s`,
		`  +0.027s  TaskFailed                  #0  Charge      attempt 3  after 25ms  failed: CardDeclined: no funds; caused by bank said no`,
		`  +1.502s  TimerFired                  #1  timer       after 1.5s`,
		`  +1.503s  SubOrchestrationCreated     #2  Invoice     instance=child-1`,
		`  +1.603s  SubOrchestrationCompleted   #2  Invoice     after 100ms  result="INV-1"`,
		`  +1.700s  EventRaised                     "approved"  data=true`,
		`  +1.701s  EventSent                   #3  "ping"      to=other`,
		`  +1.800s  ExecutionTerminated                         reason: cancelled`,
		`    +1m1s  ExecutionCompleted              Failed      after 1m1s  failed: Boom: gave up`,
	}
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), b.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got %q\nwant %q", i, got[i], want[i])
		}
	}

	b.Reset()
	if err := renderTimeline(&b, events, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), long) {
		t.Errorf("--full cut the payload:\n%s", b.String())
	}
	b.Reset()
	_ = renderTimeline(&b, nil, false)
	if b.String() != "no events\n" {
		t.Errorf("empty history: %q", b.String())
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "WaitForGo", "--store", env.store, "--id", "h").ok(t)
	env.waitRunning(t, "h")
	cli(t, "raise", "h", "go", "--data", `{"v":7}`, "--store", env.store).ok(t)
	env.wait(t, "h")

	r := cli(t, "history", "h", "--store", env.store).ok(t)
	for _, w := range []string{"ExecutionStarted", "WaitForGo", `"go"`, `data={"v":7}`,
		"ExecutionCompleted", `Completed  after`, `output={"v":7}`} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("history lacks %q:\n%s", w, r.stdout)
		}
	}

	r = cli(t, "history", "h", "--store", env.store, "-o", "json").ok(t)
	var events []eventJSON
	decodeJSON(t, r.stdout, &events)
	if len(events) < 4 || events[0].Type != backend.EventExecutionStarted && events[1].Type != backend.EventExecutionStarted {
		t.Fatalf("history -o json: %+v", events)
	}
	last := events[len(events)-1]
	if last.Type != backend.EventExecutionCompleted || last.Status != duro.StatusCompleted || compact(t, last.Result) != `{"v":7}` {
		t.Errorf("last event %+v", last)
	}
	if last.TaskID != nil {
		t.Errorf("ExecutionCompleted has a task ID in JSON")
	}
}

func TestHistoryErrors(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	cli(t, "history", "ghost", "--store", store).fails(t, exitFailure, `no instance with ID "ghost"`)
	cli(t, "history", "--store", store).fails(t, exitUsage, "(ID)")
	cli(t, "start", "Nobody", "--id", "p", "--store", store).ok(t)
	if r := cli(t, "history", "p", "--store", store).ok(t); r.stdout != "no events yet: p is Pending until a worker with \"Nobody\" registered runs it\n" {
		t.Errorf("history of a pending instance: %q", r.stdout)
	}
	cli(t, "history", "x", "--store", store, "-o", "csv").fails(t, exitUsage, "want text or json")
}

func TestRenderTimelineControl(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	pending := []*duro.PendingDecision{
		{TaskID: 0, Name: "Charge", Attempt: 2, PreviousDeliveryAt: at(5)},
		{TaskID: 1, Name: "Refund", Attempt: 3, PreviousDeliveryAt: at(6)},
	}
	events := []*duro.HistoryEvent{
		{Type: backend.EventExecutionStarted, Timestamp: at(0), Name: "Pay"},
		{Type: backend.EventTaskScheduled, Timestamp: at(1), TaskID: 0, Name: "Charge",
			Activity: &backend.ActivityOptions{AtMostOnce: true, OnDuplicate: "Suspend"}},
		{Type: backend.EventTaskScheduled, Timestamp: at(1), TaskID: 1, Name: "Refund",
			Activity: &backend.ActivityOptions{AtMostOnce: true, MaxDeliveries: 5}},
		{Type: backend.EventTaskScheduled, Timestamp: at(1), TaskID: 2, Name: "Mail", Activity: &backend.ActivityOptions{ApprovedAttempt: 3}},
		{Type: backend.EventTaskDuplicate, Timestamp: at(20), TaskID: 0, Name: "Charge", Attempt: 2, FireAt: at(5)},
		{Type: backend.EventExecutionSuspended, Timestamp: at(20), Reason: "possible duplicate",
			Suspension: &backend.Suspension{Reason: "possible duplicate", Since: at(20), Pending: pending}},
		{Type: backend.EventExecutionResumed, Timestamp: at(900), Reason: "checked", Decisions: []*backend.Decision{
			{TaskID: 0, Action: backend.DecisionResult, Result: []byte(`{"id": "ch_1"}`)},
			{TaskID: 1, Action: backend.DecisionFail, Message: "refunded"},
			{TaskID: 2, Action: backend.DecisionRetry},
		}},
		{Type: backend.EventTaskCompleted, Timestamp: at(900), TaskID: 0, Result: []byte(`{"id":"ch_1"}`)},
		{Type: backend.EventTaskFailed, Timestamp: at(900), TaskID: 1,
			Failure: &duro.Failure{Type: "OperatorFailed", Message: "refunded", TaskName: "Refund", NonRetryable: true}},
		{Type: backend.EventTaskCompleted, Timestamp: at(950), TaskID: 2, Attempt: 3},
		{Type: backend.EventExecutionSuspended, Timestamp: at(960), Reason: "step delivered 3 times",
			Suspension: &backend.Suspension{Reason: "step delivered 3 times", Since: at(960), Poisoned: true}},
		{Type: backend.EventExecutionResumed, Timestamp: at(970)},
		{Type: backend.EventExecutionCompleted, Timestamp: at(980), Status: duro.StatusFailed, Failure: &duro.Failure{Message: "refunded"}},
		{Type: backend.EventExecutionRewound, Timestamp: at(990), Reason: "retry the refund", Rewind: &backend.Rewind{Tasks: []int{1, 2}, From: 8, NextTaskID: 3}},
		{Type: backend.EventExecutionRewound, Timestamp: at(995), Rewind: &backend.Rewind{}},
	}
	var b strings.Builder
	if err := renderTimeline(&b, events, false); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`  +0.000s  ExecutionStarted                Pay`,
		`  +0.001s  TaskScheduled               #0  Charge  at-most-once/Suspend`,
		`  +0.001s  TaskScheduled               #1  Refund  at-most-once/Fail  max 5 deliveries`,
		`  +0.001s  TaskScheduled               #2  Mail    approved attempt 3`,
		`  +0.020s  TaskDuplicate               #0  Charge  attempt 2  previous delivery at +0.005s  possible duplicate: not run again`,
		`  +0.020s  ExecutionSuspended                      reason: possible duplicate  awaits a decision on tasks #0 (Charge, attempt 2) and #1 (Refund, attempt 3)`,
		`  +0.900s  ExecutionResumed                        reason: checked  decisions: #0 result={"id":"ch_1"}, #1 fail: "refunded", #2 retry`,
		`  +0.900s  TaskCompleted               #0  Charge  decided by an operator  after 899ms  result={"id":"ch_1"}`,
		`  +0.900s  TaskFailed                  #1  Refund  decided by an operator  after 899ms  failed: OperatorFailed: refunded (in Refund)`,
		`  +0.950s  TaskCompleted               #2  Mail    attempt 3  after 949ms`,
		`  +0.960s  ExecutionSuspended                      reason: step delivered 3 times  poisoned`,
		`  +0.970s  ExecutionResumed`,
		`  +0.980s  ExecutionCompleted              Failed  after 980ms  failed: refunded`,
		`  +0.990s  ExecutionRewound                        reason: retry the refund  re-runs #1 Refund, #2 Mail`,
		`  +0.995s  ExecutionRewound                        re-runs no task`,
	}
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), b.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got %q\nwant %q", i, got[i], want[i])
		}
	}

	// JSON keeps the new fields, payloads as JSON.
	dup, susp, resumed, rewound := toEventJSON(events[4]), toEventJSON(events[5]), toEventJSON(events[6]), toEventJSON(events[13])
	if dup.TaskID == nil || *dup.TaskID != 0 || dup.Attempt != 2 || !dup.FireAt.Equal(at(5)) {
		t.Errorf("TaskDuplicate %+v", dup)
	}
	if sched := toEventJSON(events[1]); sched.Activity == nil || !sched.Activity.AtMostOnce || sched.Activity.OnDuplicate != "Suspend" {
		t.Errorf("TaskScheduled %+v", sched)
	}
	if susp.Suspension == nil || len(susp.Suspension.Pending) != 2 || susp.Suspension.Pending[1].Activity != "Refund" || susp.TaskID != nil {
		t.Errorf("ExecutionSuspended %+v", susp)
	}
	if len(resumed.Decisions) != 3 || compact(t, resumed.Decisions[0].Result) != `{"id":"ch_1"}` ||
		resumed.Decisions[1].Action != duro.DecisionFail || resumed.Decisions[1].Message != "refunded" || resumed.Decisions[2].Action != duro.DecisionRetry {
		t.Errorf("ExecutionResumed %+v", resumed)
	}
	if rewound.Rewind == nil || len(rewound.Rewind.Tasks) != 2 || rewound.Rewind.NextTaskID != 3 || rewound.Reason != "retry the refund" {
		t.Errorf("ExecutionRewound %+v", rewound)
	}
}

// TestRenderLateResult: a result that came after the instance ended shows
// what the activity did and that nothing processed it.
func TestRenderLateResult(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	events := []*duro.HistoryEvent{
		{Type: backend.EventExecutionTerminated, Timestamp: t0, Reason: "customer left"},
		{Type: backend.EventLateResult, Timestamp: t0.Add(time.Second), TaskID: 0, Name: "Charge", Attempt: 1,
			Result: []byte(`"ch_1"`), Status: duro.StatusTerminated},
		{Type: backend.EventLateResult, Timestamp: t0.Add(2 * time.Second), TaskID: 1, Name: "Ship", Attempt: 2,
			Failure: &duro.Failure{Message: "no stock"}, Status: duro.StatusTerminated},
	}
	var b strings.Builder
	if err := renderTimeline(&b, events, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`LateResult                  #0  Charge  Charge completed after termination: "ch_1"  attempt 1  not processed`,
		`LateResult                  #1  Ship    Ship failed after termination  attempt 2  not processed  failed: no stock`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("timeline lacks %q:\n%s", want, b.String())
		}
	}
}
