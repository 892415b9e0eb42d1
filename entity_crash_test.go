package duro_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/sqlite"
)

const countFanCalls = 100

var metrics = duro.EntityID{Name: "metrics", Key: "signals"}

// registerCountFan registers the seed thread's scenario: an orchestration
// fans out to activities that each signal a counter entity ("add 1") three
// times. With DURO_CRASH_AFTER_SIGNALS set, every first attempt waits after
// signalling until all have signalled, and then the process dies before any
// completes.
func registerCountFan(reg *duro.Registry, ledger string) {
	duro.RegisterEntityOperation(reg, "metrics", "add", func(ctx duro.EntityContext, n *int, d int) (int, error) {
		*n += d
		return *n, nil
	})
	duro.RegisterActivity(reg, "CountSignal", func(ctx duro.ActivityContext, _ int) (any, error) {
		for range 3 {
			if err := ctx.SignalEntity(metrics, "add", 1); err != nil {
				return nil, err
			}
		}
		f, err := os.OpenFile(ledger, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(f, "signalled attempt=%d\n", ctx.Attempt())
		f.Close()
		if os.Getenv("DURO_CRASH_AFTER_SIGNALS") != "" && ctx.Attempt() == 1 {
			for strings.Count(readFile(ledger), "\n") < countFanCalls {
				time.Sleep(10 * time.Millisecond)
			}
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil, nil
	})
	duro.RegisterOrchestration(reg, "CountFan", func(ctx *duro.OrchestrationContext, _ any) (any, error) {
		var ts []*duro.Task
		for i := range countFanCalls {
			ts = append(ts, ctx.CallActivity("CountSignal", i))
		}
		return nil, ctx.AwaitAll(ts...)
	})
}

// TestCrashActivitySignalsEntity is the seed thread's metrics counter: 100
// activities each signal "add 1" three times; the worker process is killed
// after every one has signalled and before any completes; the next process
// runs them all again, they signal again, and the counter ends at exactly
// 3 per activity call.
func TestCrashActivitySignalsEntity(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	c := newCrashEnv(t, 120*time.Second, "CountFan", nil)
	ctx, client, ledger := c.ctx, c.client, c.ledger
	if err := c.worker(t, "DURO_CRASH_AFTER_SIGNALS=1").Run(); err == nil {
		t.Fatal("the first worker should have been killed")
	}
	if err := c.worker(t).Run(); err != nil {
		t.Fatalf("second worker: %v", err)
	}
	l := readFile(ledger)
	// Every call ran once in the killed process and again after it (a
	// lease that lapses under load may add further attempts).
	if a1, again := strings.Count(l, "attempt=1\n"), strings.Count(l, "\n")-strings.Count(l, "attempt=1\n"); a1 != countFanCalls || again < countFanCalls {
		t.Fatalf("ledger: %d first attempts, %d later ones; want %d and at least %d", a1, again, countFanCalls, countFanCalls)
	}
	// The second process exits when the orchestration completes; signals
	// may still wait in the entity's inbox. Finish them with a worker here.
	reg := duro.NewRegistry()
	registerCountFan(reg, ledger)
	be, err := sqlite.Open(ctx, c.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Stop(context.Background())
	var n int
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := client.GetEntity(ctx, metrics)
		if err == nil && st.State(&n) == nil && n >= 3*countFanCalls {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	st, err := client.GetEntity(ctx, metrics)
	if err != nil || st.State(&n) != nil || n != 3*countFanCalls {
		t.Fatalf("counter = %d (err %v), want exactly %d", n, err, 3*countFanCalls)
	}
}
