package sqlite_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/sqlite"
)

// With synchronous=NORMAL a commit is not on disk when it returns; the
// claim path syncs the WAL for a task recorded at most once. These tests
// check that the sync also happens, before the code runs, where only the
// executing worker knows the code is at most once.

func openNormal(t *testing.T) *sqlite.Backend {
	t.Helper()
	b, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "n.db"), &sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func startWorker(t *testing.T, b *sqlite.Backend, reg *duro.Registry) {
	t.Helper()
	w, err := duro.NewWorker(b, reg, &duro.WorkerOptions{PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
}

// TestSplitFleetAtMostOnceClaimSynced: the orchestration worker does not
// register Charge, so the task is recorded at least once and its claim is
// not synced by the claim path; the activity worker registers it
// AtMostOnce and must sync the WAL before the code runs.
func TestSplitFleetAtMostOnceClaimSynced(t *testing.T) {
	t.Parallel()
	b := openNormal(t)
	orch := duro.NewRegistry()
	duro.RegisterOrchestration(orch, "Pay", func(ctx *duro.OrchestrationContext, _ any) (int64, error) {
		var syncs int64
		err := ctx.CallActivity("Charge", nil).Await(&syncs)
		return syncs, err
	})
	act := duro.NewRegistry()
	duro.RegisterActivity(act, "Charge", func(ctx duro.ActivityContext, _ any) (int64, error) {
		if ctx.Attempt() != 1 {
			return 0, duro.NewNonRetryableError("Attempt", "the first delivery is not attempt 1")
		}
		return sqlite.WALSyncs(b), nil
	}, duro.ActivityOptions{Guarantee: duro.AtMostOnce})
	startWorker(t, b, orch)
	startWorker(t, b, act)
	c := duro.NewClient(b, &duro.ClientOptions{WaitPollInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	id, err := c.Start(ctx, "Pay", nil)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := c.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var syncs int64
	if err := inst.Output(&syncs); err != nil || inst.Status != duro.StatusCompleted {
		t.Fatalf("instance %s %v: %v", inst.Status, inst.Failure, err)
	}
	if syncs < 1 {
		t.Fatalf("the at-most-once code ran after %d WAL syncs: its claim was not durable", syncs)
	}
}

// TestEntityAtMostOnceClaimSynced: an entity batch is claimed as a step,
// which the claim path does not sync; an at-most-once operation must not
// run before the batch's claim is on disk.
func TestEntityAtMostOnceClaimSynced(t *testing.T) {
	t.Parallel()
	b := openNormal(t)
	seen := make(chan int64, 1)
	reg := duro.NewRegistry()
	duro.RegisterEntityOperation(reg, "account", "debit", func(ctx duro.EntityContext, balance *int, n int) (int, error) {
		seen <- sqlite.WALSyncs(b)
		*balance -= n
		return *balance, nil
	}, duro.OperationOptions{Guarantee: duro.AtMostOnce})
	startWorker(t, b, reg)
	c := duro.NewClient(b, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.SignalEntity(ctx, duro.EntityID{Name: "account", Key: "a"}, "debit", 5); err != nil {
		t.Fatal(err)
	}
	select {
	case syncs := <-seen:
		if syncs < 1 {
			t.Fatalf("the at-most-once operation ran after %d WAL syncs: its batch's claim was not durable", syncs)
		}
	case <-ctx.Done():
		t.Fatal("the operation never ran")
	}
}
