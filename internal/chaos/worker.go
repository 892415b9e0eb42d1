package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"duro"
	"duro/backend"
	"duro/internal/fault"
)

// Worker timings: short leases so that killed and paused workers' work moves
// on quickly.
const (
	activityLease = time.Second
	stepLease     = time.Second
)

// WorkerMain is the body of a chaos worker process: it runs the workload
// (the part of it its role, RoleEnv, names) on be until ctx is done,
// recording executions in the ledger at ledgerPath and its counters in a
// stats file beside it. Fault points are armed from the environment
// (DURO_TEST_FAULT).
func WorkerMain(ctx context.Context, be backend.Backend, ledgerPath string, logger *slog.Logger) error {
	fault.EnableFromEnv()
	role := os.Getenv(RoleEnv)
	switch role {
	case RoleAll, RoleOrchestrations, RoleActivities:
	default:
		return fmt.Errorf("chaos worker: unknown role %q in %s", role, RoleEnv)
	}
	l, err := OpenLedger(ledgerPath)
	if err != nil {
		return err
	}
	defer l.Close()
	reg := duro.NewRegistry()
	RegisterRole(reg, l, role)
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{
		ActivityLeaseDuration: activityLease, OrchestrationLeaseDuration: stepLease,
		PollInterval: 50 * time.Millisecond, ActivityConcurrency: 16, MaxDeliveries: 50, MaxStepDeliveries: 50,
		Logger: logger,
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
			stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
