package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/memory"
	"github.com/durohq/duro/backend/sqlite"
)

// stores are the backends every workload runs on.
var stores = []struct {
	name string
	open func(b *testing.B) backend.Backend
}{
	{"sqlite", func(b *testing.B) backend.Backend { return openSQLite(b, nil) }},
	{"sqlite-normal", func(b *testing.B) backend.Backend {
		return openSQLite(b, &sqlite.Options{Synchronous: "NORMAL"})
	}},
	{"memory", func(b *testing.B) backend.Backend {
		be, err := memory.Open(nil)
		if err != nil {
			b.Fatal(err)
		}
		return be
	}},
}

func registry() *duro.Registry {
	r := duro.NewRegistry()
	duro.RegisterActivity(r, "Hello", func(ctx duro.ActivityContext, name string) (string, error) {
		return "Hello, " + name, nil
	})
	duro.RegisterOrchestration(r, "Sequence", func(ctx *duro.OrchestrationContext, g duro.Guarantee) ([]string, error) {
		out := make([]string, 0, 3)
		for _, city := range []string{"Tokyo", "Seattle", "London"} {
			var s string
			if err := ctx.CallActivity("Hello", city, duro.CallOptions{Guarantee: g}).Await(&s); err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	})
	duro.RegisterOrchestration(r, "FanOut", func(ctx *duro.OrchestrationContext, n int) (int, error) {
		tasks := make([]*duro.Task, n)
		for i := range tasks {
			tasks[i] = ctx.CallActivity("Hello", fmt.Sprint(i))
		}
		if err := ctx.AwaitAll(tasks...); err != nil {
			return 0, err
		}
		return n, nil
	})
	return r
}

// workerOptions are the benchmarks' worker options: the defaults, with
// the sticky executor cache off when DURO_BENCH_STICKY=off (to compare).
func workerOptions() *duro.WorkerOptions {
	o := &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler)}
	if os.Getenv("DURO_BENCH_STICKY") == "off" {
		o.StickyOrchestrations = -1
	}
	return o
}

func startWorker(b *testing.B, be backend.Backend) *duro.Client {
	c, _ := startWorkerWith(b, be, registry(), workerOptions())
	return c
}

// startWorkerWith starts a worker of reg on be with opts, stopped (and be
// closed) when the benchmark ends, and returns a client of be and the
// worker.
func startWorkerWith(b *testing.B, be backend.Backend, reg *duro.Registry, opts *duro.WorkerOptions) (*duro.Client, *duro.Worker) {
	w, err := duro.NewWorker(be, reg, opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = w.Stop(context.Background())
		_ = be.Close()
	})
	return duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 5 * time.Millisecond}), w
}

// BenchmarkSequence runs 500 instances of a 3-activity sequence per op, with
// at-least-once activities and, as "atmostonce", with at-most-once ones.
func BenchmarkSequence(b *testing.B) {
	for _, g := range []duro.Guarantee{duro.AtLeastOnce, duro.AtMostOnce} {
		name := "atleastonce"
		if g == duro.AtMostOnce {
			name = "atmostonce"
		}
		b.Run(name, func(b *testing.B) { benchSequence(b, g) })
	}
}

// runInstances starts n instances of the orchestration name with input,
// then waits for each to complete, and returns them as they finished.
func runInstances(b *testing.B, c *duro.Client, n int, name string, input any) []*duro.Instance {
	ctx := context.Background()
	ids := make([]string, n)
	for j := range ids {
		id, err := c.Start(ctx, name, input)
		if err != nil {
			b.Fatal(err)
		}
		ids[j] = id
	}
	out := make([]*duro.Instance, n)
	for j, id := range ids {
		inst, err := c.Wait(ctx, id)
		if err != nil || inst.Status != duro.StatusCompleted {
			b.Fatalf("%v %v", inst, err)
		}
		out[j] = inst
	}
	return out
}

func benchSequence(b *testing.B, g duro.Guarantee) {
	const instances = 500
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			be := st.open(b)
			c := startWorker(b, be)
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				runInstances(b, c, instances, "Sequence", g)
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(instances*b.N)/secs, "instances/s")
			b.ReportMetric(float64(3*instances*b.N)/secs, "activities/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(instances*b.N), "cpu-µs/instance")
			reportWrites(b, be)
		})
	}
}

// BenchmarkFanOut runs one instance fanning out to 1,000 activities and back
// in per op.
func BenchmarkFanOut(b *testing.B) {
	const fan = 1000
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			be := st.open(b)
			c := startWorker(b, be)
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				runInstances(b, c, 1, "FanOut", fan)
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/secs, "instances/s")
			b.ReportMetric(float64(fan*b.N)/secs, "activities/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(fan*b.N), "cpu-µs/activity")
			reportWrites(b, be)
		})
	}
}

// reportWrites reports, for a backend that counts them (the SQLite ones),
// the mean number of write operations per commit (group commit), commits
// per second, and SQL statements per write operation.
func reportWrites(b *testing.B, be backend.Backend) {
	ws, ok := be.(interface{ WriteStats() sqlite.WriteStats })
	if !ok {
		return
	}
	st := ws.WriteStats()
	if st.Commits == 0 || st.Ops == 0 {
		return
	}
	b.ReportMetric(float64(st.Ops)/float64(st.Commits), "ops/commit")
	b.ReportMetric(float64(st.Commits)/b.Elapsed().Seconds(), "commits/s")
	b.ReportMetric(float64(st.Statements)/float64(st.Ops), "stmts/op")
}
