package replay

import (
	"slices"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// TestRemoteEntityActions: remote code's entity actions send the messages
// a Go orchestration's would, with the same IDs; unlocks release one
// entity each, and an execution that ends releases only the entities
// still locked.
func TestRemoteEntityActions(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	start := &backend.Event{Type: backend.EventExecutionStarted, Name: "Remote"}
	s := PrepareRemote(remoteItem(backend.StatusPending, nil, start), now, nil)
	out, err := s.Finish([]RemoteAction{
		{ID: 1, Kind: RemoteEntitySignal, InstanceID: "@c@x", Name: "add", Input: []byte(`1`), RequestID: "sig-1"},
		{ID: 2, Kind: RemoteEntityCall, InstanceID: "@c@x", Name: "get", RequestID: "call-2"},
		{ID: 3, Kind: RemoteEntityLock, Lock: []string{"@c@b", "@c@a", "@c@b"}, RequestID: "cs-3"},
	}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	msgs := map[string]*backend.Message{}
	for _, m := range out.Messages {
		msgs[m.ID] = m
	}
	sig, call, lock := msgs[backend.TaskMessageID("i", "e", 1)], msgs[backend.TaskMessageID("i", "e", 2)], msgs[backend.TaskMessageID("i", "e", 3)]
	switch {
	case len(out.Messages) != 3 || sig == nil || call == nil || lock == nil:
		t.Fatalf("messages %+v", out.Messages)
	case sig.InstanceID != "@c@x" || sig.Event.Name != "add" || sig.Event.Entity.Owner != "i" || sig.Event.Entity.Caller != nil:
		t.Fatalf("signal %+v", sig.Event)
	case call.Event.Entity.Caller == nil || call.Event.Entity.Caller.TaskID != 2 || call.Event.Entity.Owner != "i":
		t.Fatalf("call %+v", call.Event)
	case lock.InstanceID != "@c@a" || !slices.Equal(lock.Event.Entity.Lock, []string{"@c@a", "@c@b"}) || lock.Event.Entity.Caller.TaskID != 3:
		t.Fatalf("lock %+v", lock.Event)
	}
	var requests []string
	for _, ev := range out.NewEvents {
		if ev.Entity != nil {
			requests = append(requests, string(ev.Type)+":"+ev.Entity.RequestID)
		}
	}
	if !slices.Equal(requests, []string{"EntitySignaled:sig-1", "EntityCalled:call-2", "EntityLockRequested:cs-3"}) {
		t.Fatalf("events %v", requests)
	}

	history := append([]*backend.Event{{Type: backend.EventOrchestratorStarted}, start}, out.NewEvents[1:]...)
	wi := remoteItem(backend.StatusRunning, history,
		&backend.Event{Type: backend.EventEntityLockGranted, TaskID: 3},
		&backend.Event{Type: backend.EventEntityResponse, TaskID: 2, Result: []byte(`1`)})
	if _, err := PrepareRemote(wi, now, nil).Finish([]RemoteAction{
		{ID: 4, Kind: RemoteEntityUnlock, InstanceID: "@c@a", RequestID: "no-such-section"}}, nil, false); err == nil {
		t.Fatal("an unlock of an unknown critical section was accepted")
	}
	if _, err := PrepareRemote(wi, now, nil).Finish([]RemoteAction{
		{ID: 4, Kind: RemoteEntityUnlock, InstanceID: "@c@x", RequestID: "cs-3"}}, nil, false); err == nil {
		t.Fatal("an unlock of an entity the section does not lock was accepted")
	}
	out, err = PrepareRemote(wi, now, nil).Finish([]RemoteAction{
		{ID: 4, Kind: RemoteEntityUnlock, InstanceID: "@c@a", RequestID: "cs-3"},
		{Kind: RemoteComplete, Status: backend.StatusCompleted},
	}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range out.Messages {
		if m.Event.Entity != nil && m.Event.Entity.Release {
			got = append(got, m.ID+" -> "+m.InstanceID)
		}
	}
	want := []string{
		backend.TaskMessageID("i", "e", 4) + "/@c@a -> @c@a",
		backend.TaskMessageID("i", "e", 3) + "/release/@c@b -> @c@b",
	}
	if out.Status != backend.StatusCompleted || !slices.Equal(got, want) {
		t.Fatalf("status %s, releases %v, want %v", out.Status, got, want)
	}
}
