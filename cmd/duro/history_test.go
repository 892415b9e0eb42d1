package main

import (
	"strings"
	"testing"
	"time"

	"duro"
	"duro/backend"
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
