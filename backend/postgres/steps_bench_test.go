package postgres_test

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/postgres"
)

// stepBenchHub opens a fresh hub with an in-process worker (default
// options, the default pool size) and returns a client of it.
func stepBenchHub(b *testing.B, r *duro.Registry) (*duro.Client, *postgres.Backend) {
	url := testURL(b)
	o := &postgres.Options{MaxConns: postgres.DefaultMaxConns}
	if n, err := strconv.Atoi(os.Getenv("DURO_PG_MAX_CONNS")); err == nil {
		o.MaxConns = n // for comparisons
	}
	if os.Getenv("DURO_PG_HISTORY_CACHE") == "off" {
		o.HistoryCacheEvents = -1 // for comparisons
	}
	be := open(b, url, freshSchema(b, url), o)
	w, err := duro.NewWorker(be, r, &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Stop(context.Background()) })
	return duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 5 * time.Millisecond}), be
}

// BenchmarkSteps runs, with an in-process worker on PostgreSQL: sequence
// (500 instances of 3 activities one after the other per op, started
// first, then waited for), fanout (one instance of 1,000 activities at
// once per op) and chain (one instance of 1,000 activities one after the
// other per op; it reports the mean time per step over the first and the
// last 10% of the steps, which shows how a step's cost grows with the
// history).
func BenchmarkSteps(b *testing.B) {
	b.Run("sequence", func(b *testing.B) {
		r := duro.NewRegistry()
		registerBench(r)
		c, be := stepBenchHub(b, r)
		ctx := context.Background()
		st0 := be.Pool().Stat()
		var lat []time.Duration
		var start time.Duration
		for range b.N {
			ids := make([]string, 500)
			began := make([]time.Time, 500)
			t0 := time.Now()
			for j := range ids {
				began[j] = time.Now()
				id, err := c.Start(ctx, "Sequence", duro.AtLeastOnce)
				if err != nil {
					b.Fatal(err)
				}
				ids[j] = id
			}
			start += time.Since(t0)
			for j, id := range ids {
				inst, err := c.Wait(ctx, id)
				if err != nil || inst.Status != duro.StatusCompleted {
					b.Fatalf("%v %v", inst, err)
				}
				lat = append(lat, inst.CompletedAt.Sub(began[j]))
			}
		}
		secs := b.Elapsed().Seconds()
		slices.Sort(lat)
		b.ReportMetric(float64(500*b.N)/secs, "instances/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(start.Milliseconds())/float64(b.N), "start-ms/op")
		st := be.Pool().Stat()
		if n := st.AcquireCount() - st0.AcquireCount(); n > 0 {
			// How long an operation waited for one of the pool's
			// connections, on average, and how often it had to wait.
			b.ReportMetric(float64((st.AcquireDuration()-st0.AcquireDuration()).Microseconds())/float64(n), "acquire-µs")
			b.ReportMetric(float64(st.EmptyAcquireCount()-st0.EmptyAcquireCount())/float64(n), "acquire-waits/op")
		}
	})
	b.Run("starts", func(b *testing.B) {
		// 500 starts with no worker running, for comparison with the
		// sequence's start-ms/op.
		url := testURL(b)
		be := open(b, url, freshSchema(b, url), &postgres.Options{MaxConns: postgres.DefaultMaxConns})
		c := duro.NewClient(be, nil)
		ctx := context.Background()
		for range b.N {
			for range 500 {
				if _, err := c.Start(ctx, "Sequence", duro.AtLeastOnce); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "starts/s")
	})
	b.Run("fanout", func(b *testing.B) {
		r := duro.NewRegistry()
		registerBench(r)
		c, _ := stepBenchHub(b, r)
		ctx := context.Background()
		for range b.N {
			id, err := c.Start(ctx, "FanOut", 1000)
			if err != nil {
				b.Fatal(err)
			}
			if inst, err := c.Wait(ctx, id); err != nil || inst.Status != duro.StatusCompleted {
				b.Fatalf("%v %v", inst, err)
			}
		}
		b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "activities/s")
	})
	b.Run("chain", func(b *testing.B) {
		const steps = 1000
		var mu sync.Mutex
		var at []time.Time
		r := duro.NewRegistry()
		duro.RegisterActivity(r, "Step", func(ctx duro.ActivityContext, i int) (int, error) {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
			return i + 1, nil
		})
		duro.RegisterOrchestration(r, "Chain", func(ctx *duro.OrchestrationContext, n int) (int, error) {
			v := 0
			for range n {
				if err := ctx.CallActivity("Step", v).Await(&v); err != nil {
					return 0, err
				}
			}
			return v, nil
		})
		c, _ := stepBenchHub(b, r)
		ctx := context.Background()
		var first, last time.Duration
		for range b.N {
			mu.Lock()
			at = at[:0]
			mu.Unlock()
			id, err := c.Start(ctx, "Chain", steps)
			if err != nil {
				b.Fatal(err)
			}
			if inst, err := c.Wait(ctx, id); err != nil || inst.Status != duro.StatusCompleted {
				b.Fatalf("%v %v", inst, err)
			}
			mu.Lock()
			if len(at) < steps {
				b.Fatalf("%d steps ran, want %d", len(at), steps)
			}
			tenth := steps / 10
			first += at[tenth].Sub(at[0])
			last += at[steps-1].Sub(at[steps-1-tenth])
			mu.Unlock()
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(steps*b.N), "ms/step")
		b.ReportMetric(float64(first.Microseconds())/1000/float64(b.N*(steps/10)), "first10%-ms/step")
		b.ReportMetric(float64(last.Microseconds())/1000/float64(b.N*(steps/10)), "last10%-ms/step")
	})
}
