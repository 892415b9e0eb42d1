package duro_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/memory"
)

// cannotWatch is a wrapper that has WatchFinish but wraps nothing that
// can watch, as the server's metered backend over such a store is.
type cannotWatch struct {
	backend.Backend
	watches atomic.Int64
}

func (c *cannotWatch) WatchFinish(string) (<-chan struct{}, func()) {
	c.watches.Add(1)
	return backend.NoFinishWatch()
}

// TestWaitPollsWithoutWatch: when WatchFinish returns no channel, Wait
// polls (it does not spin asking for a watch, nor wait forever on a nil
// channel) and returns the finished instance.
func TestWaitPollsWithoutWatch(t *testing.T) {
	be, err := memory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	reg := duro.NewRegistry()
	duro.RegisterOrchestration(reg, "Gate", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
		return "done", ctx.WaitForEvent("go", -1).Await(nil)
	})
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	cw := &cannotWatch{Backend: be}
	c := duro.NewClient(cw, &duro.ClientOptions{WaitPollInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := c.Start(ctx, "Gate", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		inst, err := c.Wait(ctx, id)
		if err == nil && inst.Status != duro.StatusCompleted {
			err = &duro.InstanceError{InstanceID: id, Status: inst.Status}
		}
		done <- err
	}()
	if err := c.RaiseEvent(ctx, id, "go", nil); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if n := cw.watches.Load(); n != 1 {
		t.Fatalf("Wait asked for a watch %d times, want once (then it polls)", n)
	}
}
