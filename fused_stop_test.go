package duro_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/memory"
)

// TestFusedStepsStopping checks that a worker that is stopping claims no
// step with an activity's completion: the activity's result is committed,
// and the step it wakes is left in the store, claimable by the next
// worker.
func TestFusedStepsStopping(t *testing.T) {
	be, err := memory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	started := make(chan struct{})
	reg := duro.NewRegistry()
	// The activity returns once Stop has begun: Stop's deadline has passed
	// when it is called, so it cancels the running code's context at once.
	duro.RegisterActivity(reg, "Block", func(ctx duro.ActivityContext, n int) (int, error) {
		close(started)
		<-ctx.Done()
		return n + 1, nil
	})
	duro.RegisterOrchestration(reg, "One", func(ctx *duro.OrchestrationContext, n int) (int, error) {
		err := ctx.CallActivity("Block", n).Await(&n)
		return n, err
	})
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler), PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c := duro.NewClient(be, nil)
	id, err := c.Start(ctx, "One", 1)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	expired, stop := context.WithCancel(ctx)
	stop()
	if err := w.Stop(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop = %v, want context.Canceled", err)
	}
	if st := w.Stats(); st.ActivitiesCompleted != 1 {
		t.Fatalf("stats %+v; want the activity's result committed", st)
	}
	if st := w.Stats(); st.FusedSteps != 0 || st.StepsCompleted != 1 {
		t.Fatalf("stats %+v; want no fused step and only the first step run", st)
	}
	// The result waits for the next worker's claim: nothing holds the step.
	wi, err := be.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: "next", LeaseDuration: time.Minute})
	if err != nil || wi == nil || wi.Instance.ID != id {
		t.Fatalf("claim after Stop = %+v, %v; want the step of %s", wi, err, id)
	}
	if len(wi.Messages) != 1 || wi.Messages[0].Event.Type != backend.EventTaskCompleted {
		t.Fatalf("messages %+v; want the activity's result", wi.Messages)
	}
}
