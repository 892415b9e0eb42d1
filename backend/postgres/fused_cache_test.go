package postgres_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
)

// TestFusedClaimsUseHistoryCache runs a chain of activities whose steps are
// claimed by the activities' completions (backend.ActivityStepClaimer) and
// checks that those claims read the history through the history cache: the
// cache then holds the history up to the last claimed step. A fused claim
// that read the whole history itself (as it once did, so that a long
// chain's steps cost more and more) leaves the cache with what the first,
// ordinary claim read.
func TestFusedClaimsUseHistoryCache(t *testing.T) {
	url := testURL(t)
	be := open(t, url, freshSchema(t, url), nil)
	const steps = 20
	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "Next", func(_ duro.ActivityContext, i int) (int, error) { return i + 1, nil })
	duro.RegisterOrchestration(reg, "Chain", func(ctx *duro.OrchestrationContext, _ int) (int, error) {
		i := 0
		for range steps {
			if err := ctx.CallActivity("Next", i).Await(&i); err != nil {
				return 0, err
			}
		}
		if err := ctx.WaitForEvent("done", time.Hour).Await(nil); err != nil {
			return 0, err
		}
		return i, nil
	})
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(t.Context()) }()
	c := duro.NewClient(be, nil)
	id, err := c.Start(ctx, "Chain", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the step that waits for the event: the history has all the
	// activities' results.
	var h []*backend.Event
	for deadline := time.Now().Add(60 * time.Second); ; {
		if h, err = be.GetHistory(ctx, id); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range h {
			if e.Type == backend.EventTaskCompleted {
				n++
			}
		}
		if n == steps && h[len(h)-1].Type != backend.EventTaskCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d activities completed", n, steps)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := w.Stats(); st.FusedSteps < steps/2 {
		t.Fatalf("%d fused steps of %d; the test needs fused claims", st.FusedSteps, steps)
	}
	inst, err := c.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// The last step was claimed with the history before its own events.
	if got := postgres.CachedHistory(be, id, inst.ExecutionID); got < len(h)/2 {
		t.Fatalf("the history cache holds %d of the history's %d events after %d fused claims",
			got, len(h), w.Stats().FusedSteps)
	}
	if err := c.RaiseEvent(ctx, id, "done", nil); err != nil {
		t.Fatal(err)
	}
	if inst, err = c.Wait(ctx, id); err != nil || inst.Status != duro.StatusCompleted {
		t.Fatalf("instance %+v, %v", inst, err)
	}
}
