package memory_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func setup(t *testing.T) *memory.Backend {
	t.Helper()
	b, err := memory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func create(t *testing.T, b *memory.Backend, id string) {
	t.Helper()
	err := b.CreateInstance(t.Context(), &backend.CreateInstanceParams{ID: id, Name: "orch", ExecutionID: "e1", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
}

func claimParams(now time.Time) *backend.ClaimParams {
	return &backend.ClaimParams{Owner: "w", LeaseDuration: time.Minute, Now: now}
}

func TestOpenValidates(t *testing.T) {
	t.Parallel()
	_, err := memory.Open(&memory.Options{MaxStepMessages: -1})
	if err == nil || !strings.Contains(err.Error(), "MaxStepMessages") {
		t.Fatalf("Open: %v, want an error naming MaxStepMessages", err)
	}
}

func TestStoresAreIndependent(t *testing.T) {
	t.Parallel()
	a, b := setup(t), setup(t)
	create(t, a, "i1")
	if _, err := b.GetInstance(t.Context(), "i1"); !errors.Is(err, backend.ErrInstanceNotFound) {
		t.Fatalf("second store sees the first one's instance: %v", err)
	}
	create(t, b, "i1") // no ErrInstanceExists
	if v, err := a.MigrationVersion(t.Context()); err != nil || v < 1 {
		t.Fatalf("MigrationVersion = %d, %v", v, err)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	wake := b.WorkAvailable()
	create(t, b, "i1")
	select {
	case <-wake:
	default:
		t.Fatal("CreateInstance did not signal WorkAvailable")
	}

	wi, err := b.ClaimOrchestrationStep(ctx, claimParams(t0))
	if err != nil || wi == nil || wi.Attempt != 1 || len(wi.Messages) != 1 {
		t.Fatalf("claim step: %+v, %v", wi, err)
	}
	taskID := backend.TaskMessageID("i1", "e1", 1)
	err = b.CompleteOrchestrationStep(ctx, &backend.CompleteOrchestrationStepParams{
		InstanceID: "i1", ExecutionID: wi.Instance.ExecutionID, Attempt: wi.Attempt, Status: backend.StatusRunning, Now: t0,
		ConsumedMessageIDs: []string{wi.Messages[0].ID},
		NewEvents: []*backend.Event{wi.Messages[0].Event,
			{Type: backend.EventTaskScheduled, TaskID: 1, Name: "act"}},
		ActivityTasks: []*backend.ActivityTask{{ID: taskID, InstanceID: "i1", ExecutionID: "e1", TaskID: 1, Name: "act"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := b.ClaimActivity(ctx, claimParams(t0))
	if err != nil || a == nil || a.Task.ID != taskID || a.Attempt != 1 {
		t.Fatalf("claim activity: %+v, %v", a, err)
	}
	err = b.CompleteActivity(ctx, &backend.CompleteActivityParams{TaskID: taskID, Attempt: 1, Now: t0,
		Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: 1, Result: []byte("1")}})
	if err != nil {
		t.Fatal(err)
	}
	wi, err = b.ClaimOrchestrationStep(ctx, claimParams(t0))
	if err != nil || wi == nil || wi.Attempt != 2 || len(wi.History) != 2 ||
		len(wi.Messages) != 1 || wi.Messages[0].ID != backend.ResultMessageID(taskID) {
		t.Fatalf("second step: %+v, %v", wi, err)
	}
}

func TestConcurrentClaims(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const instances = 30
	for i := range instances {
		create(t, b, fmt.Sprint("i", i))
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 30 {
				wi, err := b.ClaimOrchestrationStep(t.Context(), &backend.ClaimParams{LeaseDuration: time.Nanosecond})
				if err != nil {
					t.Error(err)
					return
				}
				if wi == nil {
					continue
				}
				key := fmt.Sprintf("%s#%d", wi.Instance.ID, wi.Attempt)
				mu.Lock()
				if seen[key] {
					t.Errorf("step %s handed out twice", key)
				}
				seen[key] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 8*30 {
		t.Errorf("%d deliveries, want %d", len(seen), 8*30)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetInstance(t.Context(), "i1"); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("GetInstance after Close: %v", err)
	}
	if _, err := b.ClaimActivity(t.Context(), claimParams(t0)); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("ClaimActivity after Close: %v", err)
	}
	if err := b.Close(); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// A store with a Clock takes every time it does not get from a call's
// Now from it: creation, leases (eager claims too), the visibility of
// timers, the in-flight view.
func TestClock(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b, err := memory.Open(&memory.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	if err := b.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "i", Name: "orch", ExecutionID: "e1"}); err != nil {
		t.Fatal(err)
	}
	inst, err := b.GetInstance(ctx, "i")
	if err != nil || !inst.CreatedAt.Equal(t0) {
		t.Fatalf("created at %v (%v); want the clock's %v", inst.CreatedAt, err, t0)
	}
	claim := &backend.ClaimParams{Owner: "w", LeaseDuration: time.Minute}
	wi, err := b.ClaimOrchestrationStep(ctx, claim)
	if err != nil || wi == nil || !wi.LeaseExpiresAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("claim: %+v, %v; want a lease until the clock + 1m", wi, err)
	}
	fire := t0.Add(time.Hour)
	tasks, err := b.CompleteOrchestrationStepClaim(ctx, &backend.CompleteOrchestrationStepParams{
		InstanceID: "i", ExecutionID: "e1", Attempt: wi.Attempt, Status: backend.StatusRunning, Now: t0,
		ConsumedMessageIDs: []string{wi.Messages[0].ID},
		NewEvents:          []*backend.Event{{Type: backend.EventTimerCreated, TaskID: 0, FireAt: fire, Timestamp: t0}},
		Messages: []*backend.Message{{ID: "timer", InstanceID: "i", VisibleAt: fire,
			Event: &backend.Event{Type: backend.EventTimerFired, TaskID: 0, FireAt: fire, Timestamp: fire}}},
		ActivityTasks: []*backend.ActivityTask{{ID: backend.TaskMessageID("i", "e1", 1), InstanceID: "i", ExecutionID: "e1", TaskID: 1, Name: "a"}},
	}, claim, 1)
	if err != nil || len(tasks) != 1 || !tasks[0].LeaseExpiresAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("eager claim: %v, %v; want a lease until the clock + 1m", tasks, err)
	}
	if wi, err := b.ClaimOrchestrationStep(ctx, claim); err != nil || wi != nil {
		t.Fatalf("the timer is claimable before the clock reaches it: %+v, %v", wi, err)
	}
	f, err := b.InFlight(ctx, "i")
	if err != nil || !f.Now.Equal(t0) || !f.NextMessageAt.Equal(fire) {
		t.Fatalf("in flight: %+v, %v; want Now %v and the timer at %v", f, err, t0, fire)
	}
	mu.Lock()
	now = fire
	mu.Unlock()
	wi, err = b.ClaimOrchestrationStep(ctx, claim)
	if err != nil || wi == nil || len(wi.Messages) != 1 || wi.Messages[0].ID != "timer" {
		t.Fatalf("claim at the timer's time: %+v, %v", wi, err)
	}
}
