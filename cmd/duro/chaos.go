package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/chaos"
)

func (a *app) chaosCmd() *cobra.Command {
	var (
		workers           int
		duration, drain   time.Duration
		rate              float64
		seed              uint64
		output, breakName string
		keep, splitFleet  bool
		rolling, missing  bool
	)
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run a workload under injected faults and check the guarantees",
		Long: `Chaos starts worker processes on one store, runs a mixed workload
(sequences, fan-out/fan-in, sub-orchestrations, timers, external events,
at-least-once and at-most-once activities with each duplicate policy), and
for --duration injects faults: SIGKILL of random workers, kills at chosen
points of a work item's life (fault points), pauses longer than a lease
(SIGSTOP/SIGCONT), rolling restarts (a graceful stop with SIGTERM, half of
them restarting the worker without one activity, as an older build would
run), and, on PostgreSQL, killed database connections. Stopped workers are
restarted. Then it lets the workload finish and checks, against a ledger the
activities write outside the engine: no instance lost, no at-most-once call
run twice, no at-least-once call skipped, exactly one result per task. It
exits 1 when an invariant breaks, printing the offending instance's history.

It also counts the possible duplicates of at-most-once calls (a failed
duplicate, a suspension for a decision, a reconciler call) and the false
alarms among them: those none of whose earlier deliveries ran the code,
broken down by what became of those deliveries (handed back or stopped,
killed, paused, never reached). False alarms are not violations.

With --split-fleet the workers are orchestration-only and activity-only
processes, as in a fleet that deploys them separately: the orchestrations
schedule activities they know nothing of, so the at-most-once guarantee
comes from the activity workers' registration alone; the run also checks
that no orchestration worker ran activity code.

Without --store it uses a temporary SQLite file; DURO_STORE is ignored, since
it names an application's store. A store given with --store must hold no
instances: chaos refuses to run its workload next to an application's. The
seed of the random faults is printed; --seed replays the same fault plan.`,
		Example: `  duro chaos --duration 60s
  duro chaos --split-fleet --duration 60s
  duro chaos --store /tmp/chaos.db --workers 4 --duration 10m -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := parseOutput(output)
			if err != nil {
				return err
			}
			if workers < 1 || duration <= 0 || rate <= 0 {
				return usageErrorf("--workers, --duration and --rate must be positive")
			}
			ctx, stop := signal.NotifyContext(context.WithoutCancel(cmd.Context()), os.Interrupt, syscall.SIGTERM)
			defer stop()
			dir, err := os.MkdirTemp("", "duro-chaos-")
			if err != nil {
				return err
			}
			if !keep {
				defer os.RemoveAll(dir)
			}
			// Only an explicit --store is used: DURO_STORE (and the default
			// duro.db) usually name an application's store, which a fault
			// workload must never write into.
			store := filepath.Join(dir, "chaos.db")
			if cmd.Flags().Changed("store") {
				store = a.store
			}
			ledger := filepath.Join(dir, "ledger.db")
			self, err := os.Executable()
			if err != nil {
				return err
			}
			cfg := chaos.Config{
				Open:     func(ctx context.Context) (backend.Backend, error) { return openStore(ctx, store) },
				Ledger:   ledger,
				Workers:  workers,
				Duration: duration, Drain: drain, Rate: rate, Seed: seed, Break: breakName,
				SplitFleet:        splitFleet,
				NoRollingRestarts: !rolling, NoMissingActivity: !missing,
				Log: a.stderr,
				WorkerCommand: func(env []string) *exec.Cmd {
					c := exec.Command(self, "chaos", "worker", "--store", workerStore(store), "--ledger", ledger)
					c.Env = append(os.Environ(), env...)
					c.Stderr = os.Stderr
					return c
				},
				KillConnections: killConnections(store),
			}
			fmt.Fprintf(a.stderr, "chaos: store %s, ledger %s\n", redactStore(store), ledger)
			rep, err := chaos.Run(ctx, cfg)
			if errors.Is(err, chaos.ErrStoreNotEmpty) {
				return fmt.Errorf("%w; name a new store with --store, or omit it for a temporary one", err)
			}
			if err != nil {
				return err
			}
			rep.Backend = storeKind(store)
			if asJSON {
				b, _ := json.MarshalIndent(rep, "", "  ")
				fmt.Fprintln(a.stdout, string(b))
			} else {
				rep.WriteTable(a.stdout)
			}
			if !rep.OK {
				return fmt.Errorf("chaos: invariants violated (seed %d)", rep.Seed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&workers, "workers", 3, "worker processes")
	f.DurationVar(&duration, "duration", 60*time.Second, "how long to inject faults")
	f.DurationVar(&drain, "drain", 2*time.Minute, "how long to wait for the workload to finish afterwards")
	f.Float64Var(&rate, "rate", 10, "instances started per second")
	f.Uint64Var(&seed, "seed", 0, "seed of the random faults (0: pick one and print it)")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	f.BoolVar(&keep, "keep", false, "keep the temporary directory (store and ledger)")
	f.BoolVar(&splitFleet, "split-fleet", false, "run orchestration-only and activity-only workers (at least 2 workers)")
	f.BoolVar(&rolling, "rolling-restarts", true, "include rolling restarts (SIGTERM, graceful stop) in the faults")
	f.BoolVar(&missing, "missing-activity", true, "restart half of the rolled workers without one activity (needs --rolling-restarts)")
	f.StringVar(&breakName, "break", "", "arm a deliberate engine bug, to check that chaos catches it (at-most-once)")
	_ = f.MarkHidden("break")
	cmd.AddCommand(a.chaosWorkerCmd())
	return cmd
}

// chaosWorkerCmd is the worker process chaos spawns.
func (a *app) chaosWorkerCmd() *cobra.Command {
	var ledger string
	cmd := &cobra.Command{
		Use:    "worker",
		Short:  "Run one chaos worker process (started by duro chaos)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.WithoutCancel(cmd.Context()), os.Interrupt, syscall.SIGTERM)
			defer stop()
			be, err := openStore(ctx, a.store)
			if err != nil {
				return err
			}
			defer be.Close()
			logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
			return chaos.WorkerMain(ctx, be, ledger, logger)
		},
	}
	cmd.Flags().StringVar(&ledger, "ledger", "", "the ledger file")
	return cmd
}

func storeKind(spec string) string {
	if isPostgresURL(spec) {
		return "postgres"
	}
	return "sqlite"
}

// redactStore hides a PostgreSQL URL, which may hold a password.
func redactStore(spec string) string {
	if isPostgresURL(spec) {
		return "postgres://…"
	}
	return spec
}
