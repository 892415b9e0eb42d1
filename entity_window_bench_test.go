package duro_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/sqlite"
)

// BenchmarkEntityBatchBytes measures what one entity batch writes once
// the entity's window of processed request IDs is full (the default 5,000
// IDs): the bytes of the step the worker hands the store (its params as
// JSON) and the bytes SQLite appends to its write-ahead log for one signal
// (enqueue, claim and batch), with the log truncated before each. It also
// reports the time per signal of filling the window, 16 senders at once.
func BenchmarkEntityBatchBytes(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "bytes.db")
	be, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		b.Fatal(err)
	}
	id := duro.EntityID{Name: "counter", Key: "full"}
	rec := &stepRecorder{Backend: be, instance: id.String()}
	defer rec.Close()
	reg := duro.NewRegistry()
	duro.RegisterEntityOperation(reg, "counter", "add", func(ctx duro.EntityContext, n *int, d int) (int, error) {
		*n += d
		return *n, nil
	})
	w, err := duro.NewWorker(rec, reg, &duro.WorkerOptions{PollInterval: 2 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	c := duro.NewClient(rec, nil)
	value := func() int {
		st, err := c.GetEntity(ctx, id)
		if err != nil {
			return -1
		}
		var v int
		_ = st.State(&v)
		return v
	}
	waitValue := func(want int) {
		for deadline := time.Now().Add(5 * time.Minute); value() != want; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("counter %d, want %d", value(), want)
			}
		}
	}
	const fill = duro.DefaultEntityDedupWindow
	start := time.Now()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < fill; i += 16 {
				if err := c.SignalEntity(ctx, id, "add", 1); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitValue(fill)
	fillTime := time.Since(start)
	ck, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	defer ck.Close()
	truncate := func() {
		for {
			var busy, log, done int
			if err := ck.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &log, &done); err != nil {
				b.Fatal(err)
			}
			if busy == 0 {
				return
			}
		}
	}
	rec.take()
	var wal int64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		truncate()
		b.StartTimer()
		if err := c.SignalEntity(ctx, id, "add", 1); err != nil {
			b.Fatal(err)
		}
		waitValue(fill + i + 1)
		b.StopTimer()
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			b.Fatal(err)
		}
		wal += fi.Size()
		b.StartTimer()
	}
	b.StopTimer()
	sizes, status := rec.take()
	var stepBytes, statusBytes int
	for i := range sizes {
		stepBytes += sizes[i]
		statusBytes += status[i]
	}
	b.ReportMetric(float64(wal)/float64(b.N), "wal-bytes/signal")
	b.ReportMetric(float64(stepBytes)/float64(len(sizes)), "step-bytes/batch")
	b.ReportMetric(float64(statusBytes)/float64(len(sizes)), "status-bytes/batch")
	b.ReportMetric(float64(fillTime.Nanoseconds())/fill, "fill-ns/signal")
	b.ReportMetric(0, "ns/op")
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "%d batches for %d signals\n", len(sizes), b.N)
	}
}
