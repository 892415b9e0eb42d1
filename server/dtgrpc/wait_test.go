package dtgrpc_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
	"github.com/durohq/duro/server/dtgrpc"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

// watchCounter is a store seen through a layer that counts its live
// finish watches and reports a read made while one is held.
type watchCounter struct {
	*sqlite.Backend
	live   atomic.Int64
	parked chan struct{}
}

func (w *watchCounter) WatchFinish(id string) (<-chan struct{}, func()) {
	ch, stop := w.Backend.WatchFinish(id)
	w.live.Add(1)
	var done atomic.Bool
	return ch, func() {
		if done.CompareAndSwap(false, true) {
			w.live.Add(-1)
			stop()
		}
	}
}

func (w *watchCounter) GetInstance(ctx context.Context, id string) (*backend.Instance, error) {
	inst, err := w.Backend.GetInstance(ctx, id)
	if err == nil && !inst.Status.IsTerminal() && w.live.Load() > 0 {
		select {
		case w.parked <- struct{}{}:
		default:
		}
	}
	return inst, err
}

// TestWaitForCompletionWatches: WaitForInstanceCompletion waits on the
// store's finish watch (with an hour's fallback poll it still returns
// when the finishing step commits) and releases it.
func TestWaitForCompletionWatches(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	be, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dt.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	wc := &watchCounter{Backend: be, parked: make(chan struct{}, 10)}
	s, err := dtgrpc.New(dtgrpc.Options{Client: duro.NewClient(wc, nil), PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := be.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "i", Name: "o", ExecutionID: "e", Now: now}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		resp *dtpb.GetInstanceResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := s.WaitForInstanceCompletion(ctx, &dtpb.GetInstanceRequest{InstanceId: "i"})
		done <- result{resp, err}
	}()
	select {
	case <-wc.parked:
	case <-time.After(30 * time.Second):
		t.Fatal("WaitForInstanceCompletion never read the instance while watching it")
	}
	wi, err := be.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: "t", LeaseDuration: time.Minute, Now: now})
	if err != nil || wi == nil {
		t.Fatalf("claim: %v, %v", wi, err)
	}
	if err := be.CompleteOrchestrationStep(ctx, &backend.CompleteOrchestrationStepParams{
		InstanceID: "i", Attempt: wi.Attempt, ExecutionID: wi.Instance.ExecutionID,
		Status: backend.StatusCompleted, Now: now,
	}); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("WaitForInstanceCompletion did not return within 30s of the finish (fallback poll 1h)")
	}
	if r.err != nil || !r.resp.GetExists() || r.resp.GetOrchestrationState().GetOrchestrationStatus() != dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_COMPLETED {
		t.Fatalf("WaitForInstanceCompletion = %v, %v; want the completed instance", r.resp, r.err)
	}
	if n := wc.live.Load(); n != 0 {
		t.Fatalf("%d watches live after it returned", n)
	}
	if n := be.WatchingFinish(); n != 0 {
		t.Fatalf("WatchingFinish = %d after it returned", n)
	}
}
