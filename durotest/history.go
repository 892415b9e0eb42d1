package durotest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// History returns the history of instance id's current execution.
func (e *Env) History(id string) []*duro.HistoryEvent {
	e.t.Helper()
	return e.history(e.t, id)
}

func (e *Env) history(t testing.TB, id string) []*duro.HistoryEvent {
	t.Helper()
	h, err := e.client.History(context.Background(), id)
	if err != nil {
		t.Fatalf("durotest: history of %q: %v", id, err)
	}
	return h
}

// HistoryText returns instance id's history, one event a line as
// Describe writes it, after the virtual time since the first event; the
// OrchestratorStarted events that open each step are left out. For the
// test's log:
//
//	t.Log(env.HistoryText(id))
func (e *Env) HistoryText(id string) string {
	e.t.Helper()
	return historyText(e.history(e.t, id))
}

func historyText(h []*duro.HistoryEvent) string {
	var b strings.Builder
	var first time.Time
	for i, ev := range h {
		if i == 0 {
			first = ev.Timestamp
		}
		if ev.Type == backend.EventOrchestratorStarted {
			continue
		}
		fmt.Fprintf(&b, "%-10s %s\n", "+"+ev.Timestamp.Sub(first).String(), Describe(ev))
	}
	return b.String()
}

// taskEvents are the event types whose TaskID pairs them with their action.
var taskEvents = map[backend.EventType]bool{
	backend.EventTaskScheduled: true, backend.EventTaskCompleted: true, backend.EventTaskFailed: true,
	backend.EventTimerCreated: true, backend.EventTimerFired: true, backend.EventSubOrchestrationCreated: true,
	backend.EventSubOrchestrationCompleted: true, backend.EventSubOrchestrationFailed: true,
	backend.EventEventSent: true, backend.EventTaskDuplicate: true, backend.EventLateResult: true,
	backend.EventEntitySignaled: true, backend.EventEntityCalled: true, backend.EventEntityResponse: true,
	backend.EventEntityLockRequested: true, backend.EventEntityLockGranted: true, backend.EventEntityUnlocked: true,
}

// Describe returns one history event as a line: its type, "#task" for
// the events of an action, the activity, orchestration or event name, and
// what else it carries (payloads as encoded, shortened; a timer's delay
// from its step; failures' messages). For example:
//
//	TaskScheduled #0 Charge input={"amount":5}
//	TaskCompleted #0 attempt=2 result="ok"
//	TimerCreated #1 in=720h0m0s
//	ExecutionCompleted status=Completed result="done"
func Describe(ev *duro.HistoryEvent) string {
	parts := []string{string(ev.Type)}
	if taskEvents[ev.Type] {
		parts = append(parts, "#"+strconv.Itoa(ev.TaskID))
	}
	if ev.Name != "" {
		parts = append(parts, ev.Name)
	}
	kv := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	if ev.InstanceID != "" {
		kv("instance", ev.InstanceID)
	}
	if o := ev.Activity; o != nil && o.AtMostOnce {
		kv("guarantee", "at-most-once/"+string(o.OnDuplicate))
	}
	kv("input", payload(ev.Input))
	if !ev.FireAt.IsZero() && ev.Type == backend.EventTimerCreated {
		kv("in", ev.FireAt.Sub(ev.Timestamp).String())
	}
	if ev.Attempt > 0 {
		kv("attempt", strconv.Itoa(ev.Attempt))
	}
	kv("status", string(ev.Status))
	kv("result", payload(ev.Result))
	if f := ev.Failure; f != nil {
		kv("failure", strconv.Quote(f.Message))
	}
	if s := ev.Suspension; s != nil {
		for _, pd := range s.Pending {
			kv("pending", fmt.Sprintf("#%d:%s", pd.TaskID, pd.Name))
		}
	}
	for _, d := range ev.Decisions {
		kv("decision", fmt.Sprintf("#%d:%s", d.TaskID, d.Action))
	}
	if ev.Reason != "" {
		kv("reason", strconv.Quote(ev.Reason))
	}
	return strings.Join(parts, " ")
}

// payload shows an encoded payload, shortened to 80 bytes.
func payload(b []byte) string {
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// AssertActivityCalled fails t unless instance id's history schedules
// activity name exactly n times: each CallActivity, and each try of a
// retry policy, is one. Redeliveries of one call (crashes, lapsed leases)
// are not: count them in the activity's code (OnActivity) if the test
// needs them.
func (e *Env) AssertActivityCalled(t testing.TB, id, name string, n int) {
	t.Helper()
	h := e.history(t, id)
	got := 0
	for _, ev := range h {
		if ev.Type == backend.EventTaskScheduled && ev.Name == name {
			got++
		}
	}
	if got != n {
		t.Fatalf("durotest: instance %q called activity %q %d times; want %d. History:\n%s", id, name, got, n, historyText(h))
	}
}

// AssertHistory fails t unless instance id's history has events matching
// want, in that order, other events in between allowed: each want is a
// part of the line Describe writes for its event ("TaskCompleted #0",
// "TimerFired", "ExecutionCompleted status=Completed").
func (e *Env) AssertHistory(t testing.TB, id string, want ...string) {
	t.Helper()
	h := e.history(t, id)
	i := 0
	for _, ev := range h {
		if i < len(want) && strings.Contains(Describe(ev), want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("durotest: instance %q: no event matches %q after the ones matching %q. History:\n%s",
			id, want[i], want[:i], historyText(h))
	}
}
