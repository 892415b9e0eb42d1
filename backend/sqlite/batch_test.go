package sqlite_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
)

var _ backend.BatchClaimer = (*sqlite.Backend)(nil)

func TestClaimActivitiesBatch(t *testing.T) {
	t.Parallel()
	s := setup(t)
	create(t, s.b, "i1")
	scheduleTasks(t, s.b, "i1", 5)
	p := &backend.ClaimParams{Owner: "w", LeaseDuration: time.Minute, Now: t0}
	if wis, err := s.b.ClaimActivities(s.ctx, p, 0); err != nil || len(wis) != 0 {
		t.Fatalf("max 0: %v, %v", wis, err)
	}
	seen := map[string]bool{}
	for _, want := range []int{3, 2, 0} {
		wis, err := s.b.ClaimActivities(s.ctx, p, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(wis) != want {
			t.Fatalf("claimed %d tasks, want %d", len(wis), want)
		}
		for _, wi := range wis {
			if seen[wi.Task.ID] || wi.Attempt != 1 || wi.Task.Name != "act" || !wi.LeaseExpiresAt.Equal(t0.Add(time.Minute)) {
				t.Fatalf("work item %+v (seen %v)", wi, seen[wi.Task.ID])
			}
			seen[wi.Task.ID] = true
		}
	}
	// Once the leases lapse, each task is claimed again with its next attempt.
	p.Now = t0.Add(2 * time.Minute)
	wis, err := s.b.ClaimActivities(s.ctx, p, 10)
	if err != nil || len(wis) != 5 {
		t.Fatalf("after the leases lapsed: %d items, %v", len(wis), err)
	}
	for i, wi := range wis {
		if wi.Attempt != 2 || !wi.PreviousDeliveryAt.Equal(t0) {
			t.Fatalf("redelivery %+v", wi)
		}
		if i > 0 && wi.ScheduledAt.Before(wis[i-1].ScheduledAt) {
			t.Fatalf("not oldest first: %v", wis)
		}
	}
}

func TestClaimOrchestrationStepsBatch(t *testing.T) {
	t.Parallel()
	s := setup(t)
	for i := range 3 {
		create(t, s.b, fmt.Sprint("i", i))
	}
	p := &backend.ClaimParams{Owner: "w", LeaseDuration: time.Minute, Now: t0}
	seen := map[string]bool{}
	for _, want := range []int{2, 1, 0} {
		wis, err := s.b.ClaimOrchestrationSteps(s.ctx, p, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(wis) != want {
			t.Fatalf("claimed %d steps, want %d", len(wis), want)
		}
		for _, wi := range wis {
			id := wi.Instance.ID
			if seen[id] || wi.Attempt != 1 || wi.Deliveries != 1 || len(wi.Messages) != 1 ||
				wi.Messages[0].Event.Type != backend.EventExecutionStarted || wi.History == nil {
				t.Fatalf("work item %+v (seen %v)", wi, seen[id])
			}
			seen[id] = true
		}
	}
}

// TestConcurrentBatchClaims claims activities in batches from many
// goroutines on two backends sharing one file, with leases that lapse at
// once, and checks that no (task, attempt) is handed out twice.
func TestConcurrentBatchClaims(t *testing.T) {
	t.Parallel()
	s := setup(t)
	other, err := sqlite.Open(s.ctx, s.path, &sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Close() }()
	create(t, s.b, "i1")
	scheduleTasks(t, s.b, "i1", 20)
	var mu sync.Mutex
	seen := map[string]bool{}
	total := 0
	var wg sync.WaitGroup
	for g := range 8 {
		b := s.b
		if g%2 == 1 {
			b = other
		}
		wg.Go(func() {
			for range 20 {
				wis, err := b.ClaimActivities(s.ctx, &backend.ClaimParams{Owner: fmt.Sprint(g), LeaseDuration: time.Nanosecond}, 4)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, wi := range wis {
					key := fmt.Sprintf("%s#%d", wi.Task.ID, wi.Attempt)
					if seen[key] {
						t.Errorf("delivery %s handed out twice", key)
					}
					seen[key] = true
					total++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if total == 0 || len(seen) != total {
		t.Errorf("%d deliveries, %d distinct", total, len(seen))
	}
}

// TestHistoryCacheAcrossConnections checks that a claim never hands out a
// cached history that another connection replaced: instance i1 is stepped
// through backend a (whose cache then holds its history), then purged and
// created again, with the same execution ID, and stepped differently
// through backend b on the same file; a's next claim sees b's history.
func TestHistoryCacheAcrossConnections(t *testing.T) {
	t.Parallel()
	s := setup(t)
	a := s.b
	b, err := sqlite.Open(s.ctx, s.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	ctx := s.ctx
	// step runs one step on be: it records the claimed messages and a
	// TimerCreated named by name, and completes with status.
	step := func(be *sqlite.Backend, name string, status backend.Status) *backend.OrchestrationWorkItem {
		t.Helper()
		wi := claimStep(t, be, t0)
		if wi == nil {
			t.Fatalf("nothing to claim for %s", name)
		}
		p := &backend.CompleteOrchestrationStepParams{InstanceID: "i1", ExecutionID: "e1", Attempt: wi.Attempt,
			Status: status, Now: t0}
		for _, m := range wi.Messages {
			p.ConsumedMessageIDs = append(p.ConsumedMessageIDs, m.ID)
			p.NewEvents = append(p.NewEvents, m.Event)
		}
		p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventEventRaised, Name: name, Timestamp: t0})
		if status == backend.StatusCompleted {
			p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventExecutionCompleted,
				Status: backend.StatusCompleted, Timestamp: t0})
		}
		if err := be.CompleteOrchestrationStep(ctx, p); err != nil {
			t.Fatal(err)
		}
		return wi
	}
	raise := func(be *sqlite.Backend, id string) {
		t.Helper()
		if err := be.EnqueueMessage(ctx, &backend.Message{ID: id, InstanceID: "i1",
			Event: &backend.Event{Type: backend.EventEventRaised, Name: id, Timestamp: t0}}); err != nil {
			t.Fatal(err)
		}
	}
	create(t, a, "i1")
	step(a, "a1", backend.StatusRunning)
	raise(a, "m1")
	if wi := step(a, "a2", backend.StatusRunning); len(wi.History) != 2 {
		t.Fatalf("second step: %d events", len(wi.History))
	}
	// a's cache holds [ExecutionStarted, a1]. b finishes i1, purges it,
	// creates it again with the same execution ID and steps it: its
	// history is [ExecutionStarted, b1], as long as a's.
	raise(b, "m2")
	step(b, "end", backend.StatusCompleted)
	if err := b.PurgeInstance(ctx, "i1"); err != nil {
		t.Fatal(err)
	}
	create(t, b, "i1")
	step(b, "b1", backend.StatusRunning)
	raise(b, "n1")
	wi := claimStep(t, a, t0)
	h, err := b.GetHistory(ctx, "i1")
	if err != nil {
		t.Fatal(err)
	}
	if wi == nil || len(wi.History) != len(h) || len(h) != 2 || wi.History[1].Name != "b1" {
		t.Fatalf("a's claim after b's changes: %+v, history %+v", wi, h)
	}
}
