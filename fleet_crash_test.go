package duro_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
	"github.com/durohq/duro/backend/sqlite"
)

// The fleet crash tests run a split fleet and a rolling deploy as real
// processes (this test binary with DURO_CRASH_WORKER=fleet): workers that
// register different code share one store, the activity's worker is
// SIGKILLed in the middle of the at-most-once code, and a ledger file
// outside the engine counts how many times the code ran.

// Fleet worker roles: which code a process registers.
const (
	roleOrchestrations = "orchestrations" // FleetPay only
	roleActivities     = "activities"     // FleetCharge and FleetShip only
	roleOld            = "old"            // FleetPay and FleetShip: the version before FleetCharge
	roleNew            = "new"            // everything
)

// registerFleet registers the code of role. FleetPay calls FleetCharge,
// then FleetShip, then waits for the charge; it knows nothing of how
// FleetCharge is registered. FleetCharge is at most once with the policy
// DURO_FLEET_POLICY (empty: the default, Fail); it appends to the ledger
// before its work and, in a process with DURO_FLEET_HANG set, then blocks
// until the process is killed.
func registerFleet(reg *duro.Registry, role, ledger string) {
	appendLedger := func(line string) {
		f, err := os.OpenFile(ledger, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			panic(err)
		}
		fmt.Fprintln(f, line)
		if err := f.Sync(); err != nil {
			panic(err)
		}
		_ = f.Close()
	}
	if role == roleOrchestrations || role == roleOld || role == roleNew {
		duro.RegisterOrchestration(reg, "FleetPay", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			charge := ctx.CallActivity("FleetCharge", "card-1")
			if err := ctx.CallActivity("FleetShip", "parcel-1").Await(nil); err != nil {
				return "", err
			}
			var out string
			err := charge.Await(&out)
			var dup *duro.PossibleDuplicateError
			if errors.As(err, &dup) {
				return fmt.Sprintf("duplicate attempt=%d", dup.Attempt), nil
			}
			return out, err
		})
	}
	if role == roleActivities || role == roleOld || role == roleNew {
		duro.RegisterActivity(reg, "FleetShip", func(ctx duro.ActivityContext, _ string) (string, error) {
			appendLedger(fmt.Sprintf("ship attempt=%d pid=%d", ctx.Attempt(), os.Getpid()))
			return "shipped", nil
		})
	}
	if role == roleActivities || role == roleNew {
		duro.RegisterActivity(reg, "FleetCharge", func(ctx duro.ActivityContext, _ string) (string, error) {
			appendLedger(fmt.Sprintf("charge attempt=%d pid=%d", ctx.Attempt(), os.Getpid()))
			if os.Getenv("DURO_FLEET_HANG") != "" {
				select {} // until SIGKILL
			}
			return "charged", nil
		}, duro.ActivityOptions{
			Guarantee:   duro.AtMostOnce,
			OnDuplicate: duro.OnDuplicate(os.Getenv("DURO_FLEET_POLICY")),
			Reconcile: func(ctx duro.ActivityContext, _ *duro.Payload) (duro.ReconcileDecision, error) {
				appendLedger(fmt.Sprintf("reconcile attempt=%d", ctx.Attempt()))
				if strings.Contains(readFile(ledger), "charge attempt=") {
					return duro.ReconcileResult("reconciled"), nil
				}
				return duro.ReconcileRetry(), nil
			},
		})
	}
}

// fleetWorkerMain is a fleet worker process: it runs the code of role
// DURO_FLEET_ROLE on the store DURO_FLEET_STORE (a SQLite file, or a
// PostgreSQL URL with the hub DURO_FLEET_SCHEMA) until it is killed.
func fleetWorkerMain() {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	be, err := openFleetStore(ctx, os.Getenv("DURO_FLEET_STORE"), os.Getenv("DURO_FLEET_SCHEMA"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	reg := duro.NewRegistry()
	registerFleet(reg, os.Getenv("DURO_FLEET_ROLE"), os.Getenv("DURO_FLEET_LEDGER"))
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{
		Name:                  os.Getenv("DURO_FLEET_ROLE") + fmt.Sprintf(":%d", os.Getpid()),
		ActivityLeaseDuration: time.Second, OrchestrationLeaseDuration: time.Second, PollInterval: 20 * time.Millisecond,
		Logger: log,
	})
	if err == nil {
		err = w.Start(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(2)
	}
	select {} // until killed
}

func openFleetStore(ctx context.Context, store, schema string) (backend.Backend, error) {
	if strings.HasPrefix(store, "postgres://") {
		return postgres.Open(ctx, store, &postgres.Options{Schema: schema, MaxConns: 4, PollInterval: 100 * time.Millisecond})
	}
	return sqlite.Open(ctx, store, nil)
}

// fleetEnv is a store shared by fleet worker processes, a ledger beside it
// and a client.
type fleetEnv struct {
	ctx    context.Context
	store  string
	schema string
	ledger string
	client *duro.Client
	mu     sync.Mutex
	procs  []*exec.Cmd
}

// newFleetEnv opens a fresh store: a SQLite file, or a PostgreSQL schema
// dropped at the end (the test is skipped when PostgreSQL is unreachable,
// and fails then when CI=true).
func newFleetEnv(t *testing.T, kind string) *fleetEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	dir := t.TempDir()
	e := &fleetEnv{ctx: ctx, ledger: filepath.Join(dir, "ledger.txt"), store: filepath.Join(dir, "duro.db")}
	if kind == "postgres" {
		e.store = fleetPostgresURL(t)
		var b [6]byte
		_, _ = rand.Read(b[:])
		e.schema = "fleet_" + hex.EncodeToString(b[:])
		t.Cleanup(func() {
			conn, err := pgx.Connect(context.Background(), e.store)
			if err == nil {
				_, _ = conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+e.schema+" CASCADE")
				_ = conn.Close(context.Background())
			}
		})
	}
	be, err := openFleetStore(ctx, e.store, e.schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	e.client = duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 20 * time.Millisecond})
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, p := range e.procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	})
	return e
}

func fleetPostgresURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("DURO_POSTGRES_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		err = conn.Ping(ctx)
		_ = conn.Close(ctx)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is unreachable (DURO_POSTGRES_URL): %v", err)
		}
		t.Skipf("PostgreSQL is unreachable (set DURO_POSTGRES_URL): %v", err)
	}
	return url
}

// start starts a worker process with role and extra environment.
func (e *fleetEnv) start(t *testing.T, role string, extra ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(e.ctx, os.Args[0], "-test.run=^$")
	cmd.Env = slices.Concat(os.Environ(), []string{"DURO_CRASH_WORKER=fleet", "DURO_FLEET_ROLE=" + role,
		"DURO_FLEET_STORE=" + e.store, "DURO_FLEET_SCHEMA=" + e.schema, "DURO_FLEET_LEDGER=" + e.ledger}, extra)
	cmd.Stderr = &prefixWriter{t: t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.procs = append(e.procs, cmd)
	e.mu.Unlock()
	return cmd
}

// kill SIGKILLs a worker process and waits for it to die.
func (e *fleetEnv) kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("worker should have died by SIGKILL, got %v", err)
	}
}

var chargeLine = regexp.MustCompile(`(?m)^charge attempt=(\d+) pid=(\d+)$`)

// charges returns the ledger's charge lines.
func (e *fleetEnv) charges() [][]string {
	return chargeLine.FindAllStringSubmatch(readFile(e.ledger), -1)
}

// settle waits until instance id has finished or waits for a decision.
func (e *fleetEnv) settle(t *testing.T, id string) *duro.Instance {
	t.Helper()
	var inst *duro.Instance
	waitFor(t, e.ctx, func() bool {
		var err error
		inst, err = e.client.Get(e.ctx, id)
		return err == nil && (inst.Status.IsTerminal() ||
			inst.Status == duro.StatusSuspended && inst.Suspension != nil && len(inst.Suspension.Pending) > 0)
	})
	return inst
}

// checkAtMostOnce checks the outcome of an at-most-once call whose first
// delivery was killed in the code: the ledger has exactly one execution,
// by attempt 1 (no worker without the code claimed it before), the
// instance completed with want, and the result event records the
// guarantee the executing worker enforced.
func (e *fleetEnv) checkAtMostOnce(t *testing.T, id string, inst *duro.Instance, want, policy string) {
	t.Helper()
	if c := e.charges(); len(c) != 1 || c[0][1] != "1" {
		t.Fatalf("the at-most-once code ran %d times (want once, as attempt 1); ledger:\n%s", len(c), readFile(e.ledger))
	}
	var out string
	if err := inst.Output(&out); err != nil || inst.Status != duro.StatusCompleted || out != want {
		t.Fatalf("instance %s %+v output %q (%v), want completed with %q; ledger:\n%s",
			inst.Status, inst.Failure, out, err, want, readFile(e.ledger))
	}
	h, err := e.client.History(e.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range h {
		if ev.TaskID == 0 && (ev.Type == backend.EventTaskFailed || ev.Type == backend.EventTaskDuplicate ||
			ev.Type == backend.EventTaskCompleted && ev.Attempt > 0) {
			if ev.Activity == nil || !ev.Activity.AtMostOnce || ev.Activity.OnDuplicate != policy {
				t.Fatalf("%s of FleetCharge records options %+v, want the enforced at-most-once/%s", ev.Type, ev.Activity, policy)
			}
		}
	}
}

// TestCrashSplitFleet runs FleetPay on an orchestration-only process and
// FleetCharge on activity-only processes, on SQLite and PostgreSQL, for
// each policy: the first activity process is SIGKILLed in the middle of the
// code; the code never runs again and the registered policy applies.
func TestCrashSplitFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	for _, kind := range []string{"sqlite", "postgres"} {
		for _, tc := range []struct{ policy, want string }{
			{"Fail", "duplicate attempt=2"},
			{"Suspend", "operator: charged once"},
			{"Reconcile", "reconciled"},
		} {
			t.Run(kind+"/"+tc.policy, func(t *testing.T) {
				t.Parallel()
				e := newFleetEnv(t, kind)
				policy := "DURO_FLEET_POLICY=" + tc.policy
				e.start(t, roleOrchestrations)
				first := e.start(t, roleActivities, policy, "DURO_FLEET_HANG=1")
				id, err := e.client.Start(e.ctx, "FleetPay", nil)
				if err != nil {
					t.Fatal(err)
				}
				waitFor(t, e.ctx, func() bool { return len(e.charges()) > 0 })
				e.kill(t, first)
				e.start(t, roleActivities, policy)
				inst := e.settle(t, id)
				if tc.policy == "Suspend" && inst.Status == duro.StatusSuspended {
					pending := inst.Suspension.Pending
					if len(pending) != 1 || pending[0].Name != "FleetCharge" || pending[0].Attempt != 2 {
						t.Fatalf("pending %+v", pending)
					}
					if err := e.client.Resume(e.ctx, id, "checked the provider", duro.CompleteTask(0, "operator: charged once")); err != nil {
						t.Fatal(err)
					}
					waitFor(t, e.ctx, func() bool {
						inst, err = e.client.Get(e.ctx, id)
						return err == nil && inst.Status.IsTerminal()
					})
				}
				e.checkAtMostOnce(t, id, inst, tc.want, tc.policy)
			})
		}
	}
}

// TestCrashRollingDeploy runs FleetPay first on the old version only,
// which lacks FleetCharge, so the step that schedules the call runs there
// and records it at least once; the new version's process, which
// registers FleetCharge at most once, gets its first delivery and is
// SIGKILLed in the code; the next new process does not run it again.
func TestCrashRollingDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newFleetEnv(t, kind)
			e.start(t, roleOld)
			id, err := e.client.Start(e.ctx, "FleetPay", nil)
			if err != nil {
				t.Fatal(err)
			}
			// The old process ran the step and FleetShip, claimed past
			// FleetCharge.
			waitFor(t, e.ctx, func() bool { return strings.Contains(readFile(e.ledger), "ship attempt=1") })
			first := e.start(t, roleNew, "DURO_FLEET_HANG=1")
			waitFor(t, e.ctx, func() bool { return len(e.charges()) > 0 })
			e.kill(t, first)
			e.start(t, roleNew)
			e.checkAtMostOnce(t, id, e.settle(t, id), "duplicate attempt=2", "Fail")
		})
	}
}
