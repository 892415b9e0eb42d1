package duro_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/sqlite"
)

// BenchmarkHeartbeat measures ctx.Heartbeat with details on a SQLite file:
// per op, one heartbeat (encode, one fenced write that renews the lease and
// stores the details), from one activity that calls it b.N times, so one
// instance's run is spread over the ops. Under synchronous=FULL (the
// default) each heartbeat is an fsynced commit; NORMAL shows the write
// without the fsync.
func BenchmarkHeartbeat(b *testing.B) {
	for _, sync := range []string{"FULL", "NORMAL"} {
		b.Run(sync, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			be, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "hb.db"), &sqlite.Options{Synchronous: sync})
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			reg := duro.NewRegistry()
			n := b.N
			duro.RegisterActivity(reg, "Loop", func(ctx duro.ActivityContext, _ any) (int, error) {
				for i := range n {
					if err := ctx.Heartbeat(importProgress{Next: i + 1}); err != nil {
						return 0, err
					}
				}
				return n, nil
			})
			duro.RegisterOrchestration(reg, "Loop", func(ctx *duro.OrchestrationContext, _ any) (int, error) {
				var out int
				err := ctx.CallActivity("Loop", nil).Await(&out)
				return out, err
			})
			w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			if err := w.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer w.Stop(ctx)
			client := duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: time.Millisecond})
			b.ResetTimer()
			id, err := client.Start(ctx, "Loop", nil)
			if err != nil {
				b.Fatal(err)
			}
			inst, err := client.Wait(ctx, id)
			if err != nil || inst.Status != duro.StatusCompleted {
				b.Fatalf("%v %v", inst, err)
			}
		})
	}
}
