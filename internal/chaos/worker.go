package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/fault"
)

// Worker timings: short leases so that killed and paused workers' work moves
// on quickly.
const (
	activityLease = time.Second
	stepLease     = time.Second
	// stopDeadline bounds a graceful stop (ctx done: SIGTERM in `duro chaos
	// worker`): Worker.Stop lets the work in flight finish until then.
	stopDeadline = 5 * time.Second
)

// WorkerMain is the body of a chaos worker process: it runs the workload
// (the part of it its role, RoleEnv, names, less the activity MissingEnv
// names) on be until ctx is done, then stops the worker gracefully (within
// five seconds). It records executions in the ledger at ledgerPath, and
// beside it its counters (a stats file) and the activity deliveries it
// runs (a deliveries file, through the worker's tracer). Fault points are
// armed from the environment (DURO_TEST_FAULT).
func WorkerMain(ctx context.Context, be backend.Backend, ledgerPath string, logger *slog.Logger) error {
	fault.EnableFromEnv()
	role, missing := os.Getenv(RoleEnv), os.Getenv(MissingEnv)
	l, err := OpenLedger(ledgerPath)
	if err != nil {
		return err
	}
	defer l.Close()
	reg := duro.NewRegistry()
	if err := RegisterRole(reg, l, role, missing); err != nil {
		return fmt.Errorf("chaos worker (%s=%q, %s=%q): %w", RoleEnv, role, MissingEnv, missing, err)
	}
	tracer, err := newDeliveryTracer(deliveriesPath(ledgerPath, os.Getpid()), ActivityCharge)
	if err != nil {
		return err
	}
	defer tracer.Close()
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{
		ActivityLeaseDuration: activityLease, OrchestrationLeaseDuration: stepLease,
		PollInterval: 50 * time.Millisecond, ActivityConcurrency: 16, MaxDeliveries: 50, MaxStepDeliveries: 50,
		Logger: logger, Tracer: tracer,
	})
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	statsPath := fmt.Sprintf("%s.stats.%d.json", ledgerPath, os.Getpid())
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		writeStats(statsPath, w.Stats())
		select {
		case <-ctx.Done():
			stopCtx, cancel := context.WithTimeout(context.Background(), stopDeadline)
			defer cancel()
			err := w.Stop(stopCtx)
			writeStats(statsPath, w.Stats())
			return err
		case <-t.C:
		}
	}
}

func writeStats(path string, s duro.WorkerStats) {
	b, _ := json.Marshal(s)
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o644) == nil {
		_ = os.Rename(tmp, path)
	}
}
