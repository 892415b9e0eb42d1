package bench

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/bench/workload"
)

// fusedStores are the backends the fused-step benchmarks compare on:
// SQLite with its defaults, and PostgreSQL (a new schema per run, dropped
// afterwards) when DURO_POSTGRES_URL is set.
func fusedStores() []struct {
	name string
	open func(b *testing.B) backend.Backend
} {
	out := []struct {
		name string
		open func(b *testing.B) backend.Backend
	}{
		{"sqlite", func(b *testing.B) backend.Backend { return openSQLite(b, nil) }},
	}
	url := os.Getenv("DURO_POSTGRES_URL")
	if url == "" {
		return out
	}
	return append(out, struct {
		name string
		open func(b *testing.B) backend.Backend
	}{"postgres", func(b *testing.B) backend.Backend {
		ctx := context.Background()
		st, err := workload.NewStore(url, "bench_fused_")
		if err != nil {
			b.Fatal(err)
		}
		be, err := st.OpenDuro(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Remove(ctx) })
		return be
	}})
}

// fusedModes are the two settings of WorkerOptions.DisableFusedSteps, run
// one after the other for each store so that -count alternates them.
var fusedModes = []struct {
	name    string
	disable bool
}{{"fused", false}, {"unfused", true}}

// startFusedWorker is startWorker with fused steps on or off; it returns
// the worker too, for its stats.
func startFusedWorker(b *testing.B, be backend.Backend, disable bool) (*duro.Client, *duro.Worker) {
	return startWorkerWith(b, be, registry(), &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler), DisableFusedSteps: disable})
}

// BenchmarkFusedSequence is BenchmarkSequence's at-least-once workload (500
// instances of a 3-activity sequence per op) with fused activity→step
// commits on and off, reporting the p50 and p99 latency from an instance's
// creation to its completion, as the store records them, and the share of
// steps the fused path claimed.
func BenchmarkFusedSequence(b *testing.B) {
	const instances = 500
	for _, st := range fusedStores() {
		for _, m := range fusedModes {
			b.Run(st.name+"/"+m.name, func(b *testing.B) {
				be := st.open(b)
				c, w := startFusedWorker(b, be, m.disable)
				var lat []time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for _, inst := range runInstances(b, c, instances, "Sequence", duro.AtLeastOnce) {
						lat = append(lat, inst.CompletedAt.Sub(inst.CreatedAt))
					}
				}
				b.StopTimer()
				secs := b.Elapsed().Seconds()
				b.ReportMetric(float64(instances*b.N)/secs, "instances/s")
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				s := w.Stats()
				b.ReportMetric(float64(s.FusedSteps)/float64(s.StepsCompleted), "fused/step")
			})
		}
	}
}

// BenchmarkFusedFanOut is BenchmarkFanOut (one instance fanning out to
// 1,000 activities and back in per op) with fused steps on and off: the
// results of a fan-out race for the instance's step, which one of them
// claims at a time.
func BenchmarkFusedFanOut(b *testing.B) {
	const fan = 1000
	for _, st := range fusedStores() {
		for _, m := range fusedModes {
			b.Run(st.name+"/"+m.name, func(b *testing.B) {
				be := st.open(b)
				c, w := startFusedWorker(b, be, m.disable)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					runInstances(b, c, 1, "FanOut", fan)
				}
				b.StopTimer()
				b.ReportMetric(float64(fan*b.N)/b.Elapsed().Seconds(), "activities/s")
				s := w.Stats()
				b.ReportMetric(float64(s.FusedSteps)/float64(s.StepsCompleted), "fused/step")
				b.ReportMetric(float64(s.StepsCompleted)/float64(b.N), "steps/op")
			})
		}
	}
}
