package server

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/durohq/duro"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
)

// TestMeteredBackendKeepsRequestWindow: the workers of `duro server` get
// the metered wrapper, so it must keep the store's window of processed
// entity requests (else every entity batch rewrites its whole window in
// its custom status), and say plainly when the store has none.
func TestMeteredBackendKeepsRequestWindow(t *testing.T) {
	ctx := context.Background()
	be, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "duro.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	m := NewMetrics(duro.NewClient(be, nil))
	rw, ok := m.Backend(be).(backend.RequestWindow)
	if !ok {
		t.Fatal("the metered backend is not a backend.RequestWindow")
	}
	now := time.Now()
	if err := be.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "@c@k", Name: "c", ExecutionID: "e", Now: now}); err != nil {
		t.Fatal(err)
	}
	wi, err := be.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: "t", LeaseDuration: time.Minute, Now: now})
	if err != nil || wi == nil {
		t.Fatalf("claim: %v, %v", wi, err)
	}
	err = be.CompleteOrchestrationStep(ctx, &backend.CompleteOrchestrationStepParams{
		InstanceID: wi.Instance.ID, Attempt: wi.Attempt, ExecutionID: wi.Instance.ExecutionID,
		Status: backend.StatusRunning, Now: now,
		Window: &backend.WindowUpdate{Add: []backend.ProcessedRequest{{ID: "r1", At: now}}, Keep: 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := rw.ProcessedRequests(ctx, "@c@k", []string{"r1", "r2"})
	if err != nil || len(got) != 1 || got[0].ID != "r1" {
		t.Fatalf("ProcessedRequests through the wrapper = %v, %v; want [r1]", got, err)
	}

	plain := m.Backend(struct{ backend.Backend }{be}).(backend.RequestWindow)
	if _, err := plain.ProcessedRequests(ctx, "@c@k", []string{"r1"}); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("ProcessedRequests over a backend without a window: %v; want errors.ErrUnsupported", err)
	}
}

// TestMeteredBackendKeepsFinishNotifier: a client given the metered
// wrapper still returns from Wait on the finish, so the wrapper forwards
// the store's watches, and over a store without them returns none (the
// client then polls).
func TestMeteredBackendKeepsFinishNotifier(t *testing.T) {
	ctx := context.Background()
	be, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "duro.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	m := NewMetrics(duro.NewClient(be, nil))
	mb := m.Backend(be)
	fn, ok := mb.(backend.FinishNotifier)
	if !ok {
		t.Fatal("the metered backend is not a backend.FinishNotifier")
	}
	now := time.Now()
	if err := be.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "i", Name: "o", ExecutionID: "e", Now: now}); err != nil {
		t.Fatal(err)
	}
	fired, stop := fn.WatchFinish("i")
	defer stop()
	if fired == nil {
		t.Fatal("WatchFinish through the wrapper returned no watch")
	}
	wi, err := mb.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: "t", LeaseDuration: time.Minute, Now: now})
	if err != nil || wi == nil {
		t.Fatalf("claim: %v, %v", wi, err)
	}
	if err := mb.CompleteOrchestrationStep(ctx, &backend.CompleteOrchestrationStepParams{
		InstanceID: "i", Attempt: wi.Attempt, ExecutionID: wi.Instance.ExecutionID,
		Status: backend.StatusCompleted, Now: now,
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch through the wrapper did not fire within 10s of the finish")
	}
	stop()
	if n := be.WatchingFinish(); n != 0 {
		t.Fatalf("WatchingFinish = %d after the watch was stopped", n)
	}

	plain, ok := m.Backend(struct{ backend.Backend }{be}).(backend.FinishNotifier)
	if !ok {
		t.Fatal("the metered wrapper of a plain backend is not a backend.FinishNotifier")
	}
	ch, stopPlain := plain.WatchFinish("i")
	stopPlain()
	if ch != nil {
		t.Fatal("WatchFinish over a backend without watches returned a channel; want nil (the waiter polls)")
	}
}

// TestMeteredBackendStartsWithoutTheCapability: over a store that cannot
// commit a first step with its creation (SQLite), the wrapper's
// CreateInstanceStep creates the instance as CreateInstance does, calls
// no run, and leaves the step to be claimed.
func TestMeteredBackendStartsWithoutTheCapability(t *testing.T) {
	ctx := context.Background()
	be, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "duro.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	m := NewMetrics(duro.NewClient(be, nil))
	sc, ok := m.Backend(be).(backend.StartStepCommitter)
	if !ok {
		t.Fatal("the metered backend is not a backend.StartStepCommitter")
	}
	now := time.Now()
	claim := &backend.ClaimParams{Owner: "t", LeaseDuration: time.Minute, Now: now}
	out, err := sc.CreateInstanceStep(ctx, &backend.CreateInstanceParams{ID: "a", Name: "o", ExecutionID: "e", Now: now}, claim,
		func(*backend.OrchestrationWorkItem) *backend.StepCommit {
			t.Error("run called over a store without the capability")
			return nil
		})
	if err != nil || out == nil || out.Step != nil {
		t.Fatalf("CreateInstanceStep = %+v, %v; want the instance created, no step", out, err)
	}
	wi, err := be.ClaimOrchestrationStep(ctx, claim)
	if err != nil || wi == nil || wi.Instance.ID != "a" || wi.Attempt != 1 {
		t.Fatalf("claim after the creation: %+v, %v; want a's first step", wi, err)
	}
	if _, err := sc.CreateInstanceStep(ctx, &backend.CreateInstanceParams{ID: "a", Name: "o", ExecutionID: "e2", Now: now}, claim,
		nil); !errors.Is(err, backend.ErrInstanceExists) {
		t.Fatalf("a second creation: %v, want ErrInstanceExists", err)
	}
}
