package main

import (
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// TestRenderTimelineEnforced: a result that records the options its
// executing worker enforced (its registration made the task at most once)
// says so in the timeline.
func TestRenderTimelineEnforced(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	amo := &backend.ActivityOptions{AtMostOnce: true, OnDuplicate: "Suspend"}
	events := []*duro.HistoryEvent{
		{Type: backend.EventTaskScheduled, Timestamp: at(0), TaskID: 0, Name: "Charge", Activity: &backend.ActivityOptions{}},
		{Type: backend.EventTaskScheduled, Timestamp: at(0), TaskID: 1, Name: "Ship", Activity: &backend.ActivityOptions{}},
		{Type: backend.EventTaskDuplicate, Timestamp: at(10), TaskID: 0, Name: "Charge", Attempt: 2, Activity: amo},
		{Type: backend.EventTaskCompleted, Timestamp: at(20), TaskID: 1, Attempt: 1,
			Activity: &backend.ActivityOptions{AtMostOnce: true}},
	}
	var b strings.Builder
	if err := renderTimeline(&b, events, false); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`  +0.000s  TaskScheduled               #0  Charge`,
		`  +0.000s  TaskScheduled               #1  Ship`,
		`  +0.010s  TaskDuplicate               #0  Charge  attempt 2  possible duplicate: not run again  enforced at-most-once/Suspend (executing worker's registration)`,
		`  +0.020s  TaskCompleted               #1  Ship    attempt 1  after 20ms  enforced at-most-once/Fail (executing worker's registration)`,
	}
	if got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
