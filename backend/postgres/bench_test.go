package postgres_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/durohq/duro"
)

// registerBench registers the foundation's two benchmark workloads (as in
// package bench): Sequence, three activities one after the other, and
// FanOut, n activities at once.
func registerBench(r *duro.Registry) {
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
}

// BenchmarkWorkerProcesses runs the foundation's workloads (500 Sequence
// instances per op; one FanOut of 1,000 activities per op) on a fresh hub
// served by 1 and by 2 worker processes (default WorkerOptions); the
// benchmark process only starts instances and waits for them.
func BenchmarkWorkerProcesses(b *testing.B) {
	for _, procs := range []int{1, 2} {
		b.Run(fmt.Sprintf("sequence/procs=%d", procs), func(b *testing.B) {
			c := benchHub(b, procs)
			ctx := context.Background()
			for range b.N {
				ids := make([]string, 500)
				for j := range ids {
					id, err := c.Start(ctx, "Sequence", duro.AtLeastOnce)
					if err != nil {
						b.Fatal(err)
					}
					ids[j] = id
				}
				for _, id := range ids {
					if inst, err := c.Wait(ctx, id); err != nil || inst.Status != duro.StatusCompleted {
						b.Fatalf("%v %v", inst, err)
					}
				}
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(500*b.N)/secs, "instances/s")
			b.ReportMetric(float64(1500*b.N)/secs, "activities/s")
		})
		b.Run(fmt.Sprintf("fanout/procs=%d", procs), func(b *testing.B) {
			c := benchHub(b, procs)
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
	}
}

// benchHub makes a fresh hub with procs worker processes and returns a
// client of it.
func benchHub(b *testing.B, procs int) *duro.Client {
	url := testURL(b)
	schema := freshSchema(b, url)
	be := open(b, url, schema, nil)
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "DURO_PG_WORKER=1", "DURO_PG_WORKLOAD=bench", "DURO_PG_URL="+url,
			"DURO_PG_SCHEMA="+schema, fmt.Sprint("DURO_PG_NAME=bench", i))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	b.ResetTimer()
	return duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 5 * time.Millisecond})
}
