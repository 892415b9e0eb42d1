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
)

// latencyStores are the backends of BenchmarkLatency: SQLite, and
// PostgreSQL when DURO_POSTGRES_URL names a database (a fresh schema,
// dropped afterwards).
var latencyStores = []struct {
	name string
	open func(b *testing.B) backend.Backend
}{
	{"sqlite", func(b *testing.B) backend.Backend { return openSQLite(b, nil) }},
	{"postgres", func(b *testing.B) backend.Backend {
		url := os.Getenv("DURO_POSTGRES_URL")
		if url == "" {
			b.Skip("DURO_POSTGRES_URL not set")
		}
		return openPostgres(b, url)
	}},
}

// pollOnly hides every capability of a backend, FinishNotifier among
// them: a Client on it waits with the growing poll, as every Client did
// before Wait watched finishes.
type pollOnly struct{ backend.Backend }

// BenchmarkLatency is the idle single-activity latency: one instance at a
// time of a one-activity orchestration, from Start until Client.Wait
// returns, with the Client's default options. "notify" is the Client on
// the backend itself (Wait wakes on the finish notification); "poll" is
// the same Client on a wrapper without FinishNotifier (Wait polls at
// doubling intervals from 2ms). p50_ms and p99_ms are the reported
// percentiles; wait_lag_p50_ms is the median time from the finishing
// step's commit (the instance's CompletedAt) until Wait returned.
func BenchmarkLatency(b *testing.B) {
	for _, st := range latencyStores {
		b.Run(st.name, func(b *testing.B) {
			for _, mode := range []string{"notify", "poll"} {
				b.Run(mode, func(b *testing.B) {
					be := st.open(b)
					startLatencyWorker(b, be) // the worker, on the backend itself
					var cbe backend.Backend = be
					if mode == "poll" {
						cbe = pollOnly{be}
					}
					c := duro.NewClient(cbe, nil)
					benchLatency(b, c)
				})
			}
		})
	}
}

func benchLatency(b *testing.B, c *duro.Client) {
	ctx := context.Background()
	// once returns the time from Start until Wait returned, and the part
	// of it after the finishing step committed (the instance's
	// CompletedAt, the step's time): what Wait itself adds.
	once := func() (total, lag time.Duration) {
		t0 := time.Now()
		id, err := c.Start(ctx, "Once", "x")
		if err != nil {
			b.Fatal(err)
		}
		inst, err := c.Wait(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		end := time.Now()
		if inst.Status != duro.StatusCompleted {
			b.Fatalf("instance %s: %s", id, inst.Status)
		}
		return end.Sub(t0), end.Sub(inst.CompletedAt)
	}
	// Warm up: the first instance pays for connections and caches.
	for range 3 {
		once()
	}
	lat := make([]time.Duration, 0, b.N)
	lags := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		total, lag := once()
		lat = append(lat, total)
		lags = append(lags, lag)
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[min(len(d)-1, int(p*float64(len(d))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(lat, 0.50), "p50_ms")
	b.ReportMetric(pct(lat, 0.99), "p99_ms")
	b.ReportMetric(pct(lags, 0.50), "wait_lag_p50_ms")
}

// startLatencyWorker starts a worker with default options running Once,
// the one-activity orchestration of BenchmarkLatency.
func startLatencyWorker(b *testing.B, be backend.Backend) {
	r := duro.NewRegistry()
	duro.RegisterActivity(r, "Hello", func(ctx duro.ActivityContext, name string) (string, error) {
		return "Hello, " + name, nil
	})
	duro.RegisterOrchestration(r, "Once", func(ctx *duro.OrchestrationContext, s string) (string, error) {
		var out string
		err := ctx.CallActivity("Hello", s).Await(&out)
		return out, err
	})
	w, err := duro.NewWorker(be, r, &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
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
}
