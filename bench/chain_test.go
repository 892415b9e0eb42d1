package bench

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// BenchmarkChain runs one instance of a long chain of sequential
// activities per op (3,000 on SQLite, 1,000 on PostgreSQL when
// DURO_POSTGRES_URL is set), with the sticky executor cache on ("sticky")
// and off ("replay", every step replays the whole history), and reports
// the cost per step over the first and the last 10% of the chain: the time
// between the starts of consecutive activities, which is one step, one
// activity and their commits, and the process's CPU time per step over the
// same spans. Run it with -benchtime=1x.
func BenchmarkChain(b *testing.B) {
	type store struct {
		name  string
		steps int
		open  func(b *testing.B) backend.Backend
	}
	st := []store{{"sqlite", 3000, func(b *testing.B) backend.Backend { return openSQLite(b, nil) }}}
	if url := os.Getenv("DURO_POSTGRES_URL"); url != "" {
		st = append(st, store{"postgres", 1000, func(b *testing.B) backend.Backend { return openPostgres(b, url) }})
	}
	for _, s := range st {
		for _, mode := range []string{"sticky", "replay"} {
			b.Run(s.name+"/"+mode, func(b *testing.B) {
				opts := duro.WorkerOptions{}
				if mode == "replay" {
					opts.StickyOrchestrations = -1
				}
				benchChain(b, s.open(b), s.steps, opts)
			})
		}
	}
}

func benchChain(b *testing.B, be backend.Backend, steps int, opts duro.WorkerOptions) {
	starts := make([]time.Time, steps)
	cpus := make([]time.Duration, steps)
	r := duro.NewRegistry()
	duro.RegisterActivity(r, "Link", func(ctx duro.ActivityContext, i int) (int, error) {
		starts[i], cpus[i] = time.Now(), cpuTime()
		return i + 1, nil
	})
	duro.RegisterOrchestration(r, "Chain", func(ctx *duro.OrchestrationContext, n int) (int, error) {
		i := 0
		for i < n {
			if err := ctx.CallActivity("Link", i).Await(&i); err != nil {
				return 0, err
			}
		}
		return i, nil
	})
	opts.Logger = slog.New(slog.DiscardHandler)
	c, w := startWorkerWith(b, be, r, &opts)
	ctx := context.Background()
	cpu0 := cpuTime()
	var first, last, cpuFirst, cpuLast time.Duration
	for b.Loop() {
		id, err := c.Start(ctx, "Chain", steps)
		if err != nil {
			b.Fatal(err)
		}
		inst, err := c.Wait(ctx, id)
		if err != nil || inst.Status != duro.StatusCompleted {
			b.Fatalf("%v %v", inst, err)
		}
		tenth := steps / 10
		first += starts[tenth].Sub(starts[0])
		last += starts[steps-1].Sub(starts[steps-1-tenth])
		cpuFirst += cpus[tenth] - cpus[0]
		cpuLast += cpus[steps-1] - cpus[steps-1-tenth]
	}
	tenth := float64(steps / 10 * b.N)
	f, l := first.Seconds()*1000/tenth, last.Seconds()*1000/tenth
	b.ReportMetric(f, "ms/step-first10%")
	b.ReportMetric(l, "ms/step-last10%")
	b.ReportMetric(l/f, "last/first")
	// The process's CPU time per step, which a loaded machine disturbs
	// less than elapsed time (the store's own CPU is not in it).
	cf, cl := float64(cpuFirst.Microseconds())/tenth, float64(cpuLast.Microseconds())/tenth
	b.ReportMetric(cf, "cpu-µs/step-first10%")
	b.ReportMetric(cl, "cpu-µs/step-last10%")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(steps*b.N), "cpu-µs/step")
	s := w.Stats()
	b.ReportMetric(float64(s.StickyHits)/float64(max(1, s.StickyHits+s.StickyMisses)), "sticky-hit-ratio")
}
