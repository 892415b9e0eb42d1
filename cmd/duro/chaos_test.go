package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
	"github.com/durohq/duro/internal/chaos"
)

// TestChaos runs a short chaos round on SQLite with real worker processes
// (this test binary, re-executed as `duro chaos worker`): the invariants hold.
// With a deliberate at-most-once bug armed, the same run must report a
// violation and fail.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	t.Setenv("DURO_TEST_MAIN", "1") // inherited by the spawned workers
	for _, tc := range []struct {
		name, brk string
		ok        bool
		split     bool
	}{
		{"holds", "", true, false},
		{"catches a broken at-most-once", "at-most-once", false, false},
		// Orchestration-only and activity-only workers: the at-most-once
		// guarantee comes from the activity workers' registration alone.
		{"holds in a split fleet", "", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rep chaos.Report
			var r result
			// The bug only shows when an at-most-once call is redelivered;
			// a short run may see none, so the broken build gets three runs.
			for seed := 42; seed < 45; seed++ {
				store := filepath.Join(t.TempDir(), "chaos.db")
				args := []string{"chaos", "--store", store, "--duration", "8s", "--rate", "12", "--seed", fmt.Sprint(seed), "-o", "json", "--drain", "90s"}
				if tc.brk != "" {
					args = append(args, "--break", tc.brk)
				}
				if tc.split {
					args = append(args, "--split-fleet")
				}
				start := time.Now()
				r = cliEnv(t, map[string]string{"DURO_TEST_MAIN": "1"}, args...)
				rep = chaos.Report{}
				if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
					t.Fatalf("report: %v\nstdout %s\nstderr %s", err, r.stdout, r.stderr)
				}
				t.Logf("%s in %v: started %d, completed %d, faults %v, duplicates prevented %d, max at-most-once executions %d",
					tc.name, time.Since(start).Round(time.Second), rep.Started, rep.Completed, rep.Faults, rep.DuplicatesPrevented, rep.AtMostOnceMaxExecutions)
				if tc.ok || !rep.OK {
					break
				}
			}
			if rep.OK != tc.ok || (r.code == exitOK) != tc.ok {
				t.Fatalf("ok = %v, exit %d; want ok %v\nviolations: %v\nstderr: %s", rep.OK, r.code, tc.ok, rep.Violations, r.stderr)
			}
			if tc.ok && (rep.Lost != 0 || rep.Started == 0 || len(rep.Faults) == 0) {
				t.Fatalf("report %+v", rep)
			}
			if tc.split && (!rep.SplitFleet || rep.AtMostOnceCalls == 0 || rep.WorkersThatRanCode == 0) {
				t.Fatalf("split-fleet report %+v", rep)
			}
			if rep.FalseAlarms > rep.PossibleDuplicates || rep.AfterHandBack+rep.AfterCrash != rep.FalseAlarms {
				t.Fatalf("false alarms %d (after hand-back %d, after crash %d) of %d possible duplicates",
					rep.FalseAlarms, rep.AfterHandBack, rep.AfterCrash, rep.PossibleDuplicates)
			}
			if tc.ok && rep.PossibleDuplicates == 0 && rep.DuplicatesPrevented > 0 {
				t.Fatalf("the workers prevented %d duplicates but the report counts no possible duplicate", rep.DuplicatesPrevented)
			}
			if !tc.ok && rep.AtMostOnceMaxExecutions < 2 {
				t.Fatalf("the broken build was caught for another reason: %v", rep.Violations)
			}
		})
	}
}

// TestChaosWorkerSIGTERM starts a chaos worker process (this test binary
// as `duro chaos worker`) and sends it SIGTERM, as a rolling restart does:
// it stops gracefully (Worker.Stop) and exits 0 instead of dying of the
// signal. A worker told to miss an activity the workload lacks refuses to
// start, saying why.
func TestChaosWorkerSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		missing string
		ok      bool
	}{
		{missing: "", ok: true},
		{missing: chaos.ActivityCharge, ok: true},
		{missing: "ChaosRefund", ok: false},
	} {
		t.Run("missing="+tc.missing, func(t *testing.T) {
			dir := t.TempDir()
			ledger := filepath.Join(dir, "ledger.db")
			cmd := exec.Command(self, "chaos", "worker", "--store", filepath.Join(dir, "chaos.db"), "--ledger", ledger)
			cmd.Env = append(os.Environ(), "DURO_TEST_MAIN=1", chaos.MissingEnv+"="+tc.missing)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			if !tc.ok {
				select {
				case err := <-done:
					if err == nil || !strings.Contains(stderr.String(), "not an activity of the workload") {
						t.Fatalf("exit %v, stderr %q; want a failure naming the unknown activity", err, stderr.String())
					}
				case <-time.After(30 * time.Second):
					_ = cmd.Process.Kill()
					t.Fatal("the worker with an unknown missing activity did not exit")
				}
				return
			}
			// The worker writes its counters once it runs.
			stats := fmt.Sprintf("%s.stats.%d.json", ledger, cmd.Process.Pid)
			deadline := time.Now().Add(30 * time.Second)
			for {
				if _, err := os.Stat(stats); err == nil {
					break
				}
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					t.Fatalf("the worker never started: %s", stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("after SIGTERM: %v (%s); want a graceful exit 0", err, stderr.String())
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("the worker did not stop within 30s of SIGTERM")
			}
		})
	}
}

// storeInstances returns the IDs of the instances in the SQLite store at path.
func storeInstances(t *testing.T, path string) []string {
	t.Helper()
	be, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	page, err := be.ListInstances(context.Background(), &backend.ListInstancesParams{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range page.Instances {
		ids = append(ids, in.ID)
	}
	return ids
}

// liveStore returns a store holding one instance of an application.
func liveStore(t *testing.T) string {
	t.Helper()
	store := newStore(t)
	cli(t, "start", "Echo", "--store", store, "--id", "app-order-1").ok(t)
	return store
}

// TestChaosIgnoresDUROSTORE runs chaos with DURO_STORE naming an
// application's store and no --store: the workload runs in a temporary
// store, and the application's store is left as it was.
func TestChaosIgnoresDUROSTORE(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	store := liveStore(t)
	t.Setenv("DURO_TEST_MAIN", "1") // inherited by the spawned workers
	t.Setenv("DURO_STORE", store)   // in the process environment too, as for a user
	r := cliEnv(t, map[string]string{"DURO_TEST_MAIN": "1", "DURO_STORE": store},
		"chaos", "--workers", "1", "--duration", "2s", "--rate", "3", "--seed", "7", "--drain", "15s", "-o", "json").ok(t)
	var rep chaos.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report: %v\nstdout %s\nstderr %s", err, r.stdout, r.stderr)
	}
	if rep.Started == 0 {
		t.Fatalf("chaos started no instance: %+v", rep)
	}
	if ids := storeInstances(t, store); len(ids) != 1 || ids[0] != "app-order-1" {
		t.Fatalf("the DURO_STORE store holds %d instances after chaos (%v), want only app-order-1", len(ids), ids)
	}
	if strings.Contains(r.stderr, "chaos: store "+store) {
		t.Fatalf("chaos says it used the DURO_STORE store:\n%s", r.stderr)
	}
}

// TestChaosRefusesStoreWithInstances gives chaos, with --store, a store
// that holds an application's instance: it refuses to run, and the store
// is left as it was.
func TestChaosRefusesStoreWithInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("may spawn worker processes")
	}
	store := liveStore(t)
	t.Setenv("DURO_TEST_MAIN", "1") // for the workers a run that does not refuse spawns
	r := cliEnv(t, map[string]string{"DURO_TEST_MAIN": "1"}, "chaos", "--store", store, "--workers", "1", "--duration", "1s", "--rate", "3", "--drain", "5s")
	r.fails(t, exitFailure, "holds instances")
	if ids := storeInstances(t, store); len(ids) != 1 || ids[0] != "app-order-1" {
		t.Fatalf("the store holds %d instances after a refused chaos run (%v), want only app-order-1", len(ids), ids)
	}
}
