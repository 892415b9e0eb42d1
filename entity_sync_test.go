package duro_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/sqlite"
)

// TestEntityAtMostOnceBatchClaimSynced runs entity batches on a SQLite store
// with synchronous=NORMAL, whose commits are not on disk when they return:
// before an at-most-once operation runs, the claim of its batch has been
// synced (a WAL sync has been made after it), as for an at-most-once
// activity, so that a power loss cannot hand the batch out again as attempt
// 1. A batch of at-least-once operations only does not pay for a sync.
func TestEntityAtMostOnceBatchClaimSynced(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	be, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "normal.db"), &sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	type seen struct {
		attempt int
		syncs   uint64
	}
	ran := make(chan seen, 2)
	reg := duro.NewRegistry()
	duro.RegisterEntityOperation(reg, "account", "note", func(ctx duro.EntityContext, n *int, _ any) (any, error) {
		*n++
		ran <- seen{ctx.Attempt(), be.WriteStats().WALSyncs}
		return nil, nil
	})
	duro.RegisterEntityOperation(reg, "account", "charge", func(ctx duro.EntityContext, n *int, _ any) (any, error) {
		*n += 100
		ran <- seen{ctx.Attempt(), be.WriteStats().WALSyncs}
		return nil, nil
	}, duro.OperationOptions{Guarantee: duro.AtMostOnce})
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	c := duro.NewClient(be, nil)
	id := duro.EntityID{Name: "account", Key: "a"}
	wait := func(op string) seen {
		t.Helper()
		if err := c.SignalEntity(ctx, id, op, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-ran:
			return s
		case <-time.After(30 * time.Second):
			t.Fatalf("operation %s never ran", op)
			return seen{}
		}
	}
	if s := wait("note"); s.attempt != 1 || s.syncs != 0 {
		t.Fatalf("at-least-once operation: attempt %d after %d WAL syncs; want attempt 1 and no sync", s.attempt, s.syncs)
	}
	if s := wait("charge"); s.attempt != 1 || s.syncs < 1 {
		t.Fatalf("at-most-once operation ran (attempt %d) after %d WAL syncs: its batch's claim was not synced", s.attempt, s.syncs)
	}
}
