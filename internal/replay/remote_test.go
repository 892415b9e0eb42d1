package replay

import (
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

func remoteItem(status backend.Status, history []*backend.Event, msgs ...*backend.Event) *backend.OrchestrationWorkItem {
	wi := &backend.OrchestrationWorkItem{
		Instance: &backend.Instance{ID: "i", ExecutionID: "e", Name: "Remote", Status: status},
		History:  history, Attempt: 1,
	}
	for n, ev := range msgs {
		wi.Messages = append(wi.Messages, &backend.Message{ID: "m" + string(rune('a'+n)), InstanceID: "i", Event: ev})
	}
	return wi
}

func ids(events []*backend.Event) []string {
	var out []string
	for _, ev := range events {
		out = append(out, string(ev.Type)+"/"+itoa(ev.TaskID))
	}
	return out
}

func itoa(n int) string { return string(rune('0' + n)) }

func TestRemoteFirstStep(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	wi := remoteItem(backend.StatusPending, nil, &backend.Event{Type: backend.EventExecutionStarted, Name: "Remote", Input: []byte(`1`)})
	s := PrepareRemote(wi, now, nil)
	if s.Done != nil || len(s.Past) != 0 || len(s.New) != 2 || s.New[1].Type != backend.EventExecutionStarted {
		t.Fatalf("prepared %+v", s)
	}
	out, err := s.Finish([]RemoteAction{
		{ID: 1, Kind: RemoteActivity, Name: "A", Input: []byte(`"x"`), Activity: backend.ActivityOptions{AtMostOnce: true}},
		{ID: 2, Kind: RemoteTimer, FireAt: now.Add(time.Minute)},
	}, []byte(`"busy"`), true)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != backend.StatusRunning || string(out.CustomStatus) != `"busy"` || len(out.ActivityTasks) != 1 ||
		out.ActivityTasks[0].ID != backend.TaskMessageID("i", "e", 1) || !out.ActivityTasks[0].Options.AtMostOnce ||
		len(out.Messages) != 1 || out.Messages[0].ID != backend.ResultMessageID(backend.TaskMessageID("i", "e", 2)) {
		t.Fatalf("effects %+v", out)
	}
	if _, err := PrepareRemote(wi, now, nil).Finish([]RemoteAction{{ID: 1, Kind: RemoteActivity}}, nil, false); err == nil {
		t.Fatal("an activity without a name was accepted")
	}
}

func TestRemoteSuspendedHoldsEvents(t *testing.T) {
	t.Parallel()
	history := []*backend.Event{
		{Type: backend.EventOrchestratorStarted},
		{Type: backend.EventExecutionStarted, Name: "Remote"},
	}
	wi := remoteItem(backend.StatusRunning, history,
		&backend.Event{Type: backend.EventExecutionSuspended, Reason: "wait"},
		&backend.Event{Type: backend.EventEventRaised, Name: "go"})
	s := PrepareRemote(wi, time.Now(), nil)
	if s.Done == nil || s.Done.Status != backend.StatusSuspended || len(s.Done.ConsumedMessageIDs) != 1 {
		t.Fatalf("a suspending step: %+v", s.Done)
	}
}

// A rewind whose abandoned branch used task IDs: the code never sees the
// branch, so it numbers its next task after the last one it knows, and
// duro gives that task the first ID past the branch.
func TestRemoteRewindRenumbers(t *testing.T) {
	t.Parallel()
	h := []*backend.Event{
		{Type: backend.EventOrchestratorStarted},
		{Type: backend.EventExecutionStarted, Name: "Remote"},
		{Type: backend.EventTaskScheduled, TaskID: 1, Name: "A"},
		{Type: backend.EventOrchestratorStarted},
		{Type: backend.EventTaskFailed, TaskID: 1, Failure: &backend.Failure{Message: "boom"}},
		{Type: backend.EventTaskScheduled, TaskID: 2, Name: "Cleanup"}, // the branch rewind abandons
		{Type: backend.EventOrchestratorStarted},
		{Type: backend.EventTaskCompleted, TaskID: 2},
		{Type: backend.EventExecutionCompleted, Status: backend.StatusFailed, Failure: &backend.Failure{Message: "boom"}},
	}
	rw := PrepareRemote(remoteItem(backend.StatusRunning, h, &backend.Event{Type: backend.EventExecutionRewound, Reason: "again"}), time.Now(), nil)
	if rw.Done == nil || rw.Done.Status != backend.StatusRunning || len(rw.Done.ActivityTasks) != 1 || rw.Done.ActivityTasks[0].TaskID != 1 {
		t.Fatalf("the rewind step: %+v", rw.Done)
	}
	h = append(h, rw.Done.NewEvents...)
	s := PrepareRemote(remoteItem(backend.StatusRunning, h, &backend.Event{Type: backend.EventTaskCompleted, TaskID: 1, Result: []byte(`"ok"`)}),
		time.Now(), nil)
	if got := ids(s.Past); len(got) != 6 || got[2] != "TaskScheduled/1" || got[5] != "OrchestratorStarted/0" {
		t.Fatalf("past %v: want the branch and the failure left out", got)
	}
	if got := ids(s.New); len(got) != 2 || got[1] != "TaskCompleted/1" {
		t.Fatalf("new %v", got)
	}
	out, err := s.Finish([]RemoteAction{{ID: 2, Kind: RemoteActivity, Name: "Next"}}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.ActivityTasks) != 1 || out.ActivityTasks[0].TaskID != 3 {
		t.Fatalf("the code's task 2 became %+v, want duro's task 3", out.ActivityTasks)
	}
	// Replayed later, duro's task 3 is the code's task 2 again.
	h = append(h, out.NewEvents...)
	s = PrepareRemote(remoteItem(backend.StatusRunning, h, &backend.Event{Type: backend.EventTaskCompleted, TaskID: 3}), time.Now(), nil)
	if got := ids(s.Past); got[len(got)-1] != "TaskScheduled/2" {
		t.Fatalf("past %v", got)
	}
	if got := ids(s.New); got[1] != "TaskCompleted/2" {
		t.Fatalf("new %v", got)
	}
}

// TestRemoteCarryover: a continue-as-new's carried-over events become
// messages to the next execution, and that execution's first step hands
// them to the code first, in order, even when another event is ahead of
// them in the inbox (its clock was behind).
func TestRemoteCarryover(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	history := []*backend.Event{
		{Type: backend.EventOrchestratorStarted},
		{Type: backend.EventExecutionStarted, Name: "Remote", Input: []byte(`0`)},
	}
	s := PrepareRemote(remoteItem(backend.StatusRunning, history, &backend.Event{Type: backend.EventEventRaised, Name: "go"}), now, nil)
	out, err := s.Finish([]RemoteAction{{ID: 1, Kind: RemoteComplete, Status: backend.StatusContinuedAsNew, Result: []byte(`1`),
		Carryover: []*backend.Event{
			{Type: backend.EventEventRaised, Name: "item", Input: []byte(`1`)},
			{Type: backend.EventEventRaised, Name: "item", Input: []byte(`2`)},
		}}}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if out.ContinueAsNew == nil || len(out.Messages) != 2 {
		t.Fatalf("effects %+v", out)
	}
	next := &backend.OrchestrationWorkItem{Attempt: 1,
		Instance: &backend.Instance{ID: "i", ExecutionID: out.ContinueAsNew.NewExecutionID, Name: "Remote", Status: backend.StatusRunning}}
	late := &backend.Message{ID: "late", InstanceID: "i", Event: &backend.Event{Type: backend.EventEventRaised, Name: "item", Input: []byte(`3`)}}
	start := &backend.Message{ID: backend.StartMessageID("i", next.Instance.ExecutionID), InstanceID: "i",
		ExecutionID: next.Instance.ExecutionID, Event: &backend.Event{Type: backend.EventExecutionStarted, Name: "Remote", Input: []byte(`1`)}}
	for _, m := range out.Messages {
		if m.InstanceID != "i" || m.ExecutionID != next.Instance.ExecutionID {
			t.Fatalf("carried-over message %+v is not for the next execution", m)
		}
	}
	// The inbox order with the late event first, and the carried-over
	// messages in reverse.
	next.Messages = []*backend.Message{late, out.Messages[1], out.Messages[0], start}
	var got []string
	for _, ev := range PrepareRemote(next, now.Add(time.Second), nil).New {
		if ev.Type == backend.EventEventRaised {
			got = append(got, string(ev.Input))
		}
	}
	if len(got) != 3 || got[0] != "1" || got[1] != "2" || got[2] != "3" {
		t.Fatalf("the next execution's events: %v, want [1 2 3]", got)
	}
	bad := PrepareRemote(remoteItem(backend.StatusRunning, history, &backend.Event{Type: backend.EventEventRaised, Name: "go"}), now, nil)
	if _, err := bad.Finish([]RemoteAction{{ID: 1, Kind: RemoteComplete, Status: backend.StatusContinuedAsNew,
		Carryover: []*backend.Event{{Type: backend.EventTimerFired, TaskID: 3}}}}, nil, false); err == nil {
		t.Fatal("a carried-over timer was accepted")
	}
}
