package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/durohq/duro/bench/workload"
)

// benchJSON runs duro bench with args and -o json and decodes its report.
func benchJSON(t *testing.T, env map[string]string, args ...string) *benchReport {
	t.Helper()
	r := cliEnv(t, env, append([]string{"bench", "-o", "json"}, args...)...).ok(t)
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, r.stdout)
	}
	return &rep
}

// checkResult checks that a result's figures are sane; no timed assertions.
func checkResult(t *testing.T, r *workload.Result, name string, n, workers int) {
	t.Helper()
	wantInst, wantAct := n, 3*n
	switch name {
	case workload.FanOut, workload.Chain:
		wantInst, wantAct = 1, n
	case workload.Latency:
		wantAct = n
	}
	switch {
	case r.Workload != name || r.Engine != "duro" || r.Backend != "sqlite" || r.N != n || r.Workers != workers || r.Runs < 1:
		t.Errorf("%s: identity %+v", name, r)
	case !r.OK() || r.Error != "":
		t.Errorf("%s: failed: %+v", name, r)
	case r.Instances != wantInst || r.Completed != wantInst || r.Failed != 0 || r.Activities != wantAct:
		t.Errorf("%s: counts: instances %d completed %d failed %d activities %d; want %d instances, %d activities",
			name, r.Instances, r.Completed, r.Failed, r.Activities, wantInst, wantAct)
	case r.P50Ms < 0 || r.P99Ms < r.P50Ms || r.MaxMs < r.P99Ms:
		t.Errorf("%s: latencies p50 %v p99 %v max %v", name, r.P50Ms, r.P99Ms, r.MaxMs)
	case r.ElapsedSeconds <= 0 || r.StartSeconds < 0 || r.InstancesPerSec <= 0 || r.ActivitiesPerSec <= 0:
		t.Errorf("%s: throughput %+v", name, r)
	case r.Steps < int64(wantInst) || r.StepsPerSec <= 0:
		t.Errorf("%s: %d steps (%v/s) for %d instances", name, r.Steps, r.StepsPerSec, wantInst)
	case r.PeakRSSBytes <= 0 || r.StoreBytes <= 0:
		t.Errorf("%s: peak RSS %d, store %d bytes", name, r.PeakRSSBytes, r.StoreBytes)
	case workers > 1 && (len(r.WorkerPeakRSSBytes) != workers || r.MaxWorkerRSS() <= 0):
		t.Errorf("%s: worker RSS %v", name, r.WorkerPeakRSSBytes)
	}
	if c := r.Chain; (name == workload.Chain) != (c != nil) || c != nil && (c.Steps != n || c.MsPerStep <= 0 || c.LastOverFirst <= 0) {
		t.Errorf("%s: chain figures %+v", name, c)
	}
	if name == workload.Mixed && r.P50Ms < float64(workload.TimerDelay.Milliseconds()) {
		t.Errorf("mixed: p50 %v ms is shorter than its timer", r.P50Ms)
	}
}

// TestBench runs every workload tiny on a SQLite store with the worker in
// process, and checks the report's fields.
func TestBench(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "bench.db")
	prof, mem := filepath.Join(dir, "cpu.out"), filepath.Join(dir, "mem.out")
	rep := benchJSON(t, nil, "--store", store, "-n", "5", "--fsync", "--cpuprofile", prof, "--memprofile", mem)
	if len(rep.Results) != len(workload.Names) {
		t.Fatalf("%d results, want %d", len(rep.Results), len(workload.Names))
	}
	for i, r := range rep.Results {
		checkResult(t, r, workload.Names[i], 5, 1)
	}
	if rep.FsyncPerSec <= 0 || rep.Machine == "" || rep.Backend != "sqlite" {
		t.Errorf("report header %+v", rep)
	}
	for _, f := range []string{prof, mem} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", f, err)
		}
	}
	if _, err := os.Stat(store); !os.IsNotExist(err) {
		t.Errorf("the store was not removed: %v", err)
	}
}

// TestBenchText checks the text report and --repeat with a concurrency
// list.
func TestBenchText(t *testing.T) {
	store := filepath.Join(t.TempDir(), "bench.db")
	r := cli(t, "bench", "--store", store, "--workload", "sequence", "-n", "3", "--repeat", "2", "--concurrency", "0,2").ok(t)
	for _, want := range []string{"machine:", "instances/s", "p99 ms", "sequence", "default"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text report lacks %q:\n%s", want, r.stdout)
		}
	}
	if got := strings.Count(r.stdout, "sequence"); got != 2 {
		t.Errorf("%d sequence rows, want 2 (one per concurrency):\n%s", got, r.stdout)
	}
	if got := strings.Count(r.stderr, "run 2/2"); got != 2 {
		t.Errorf("stderr shows %d second runs, want 2:\n%s", got, r.stderr)
	}
	r = cli(t, "bench", "--store", store, "--workload", "chain", "-n", "20").ok(t)
	if !strings.Contains(r.stdout, "chain of 20 steps on sqlite:") || !strings.Contains(r.stdout, "last/first") {
		t.Errorf("text report lacks the chain's figures:\n%s", r.stdout)
	}
}

// TestBenchWorkers runs a workload on two worker processes (this test
// binary re-executed as `duro bench-worker`).
func TestBenchWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	t.Setenv("DURO_TEST_MAIN", "1") // inherited by the spawned workers
	store := filepath.Join(t.TempDir(), "bench.db")
	rep := benchJSON(t, nil, "--store", store, "--workload", "sequence", "-n", "5", "--workers", "2")
	if len(rep.Results) != 1 {
		t.Fatalf("%d results", len(rep.Results))
	}
	checkResult(t, rep.Results[0], workload.Sequence, 5, 2)
}

func TestBenchUsage(t *testing.T) {
	existing := newStore(t)
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"bench", "--workload", "nope"}, exitUsage, "unknown workload"},
		{[]string{"bench", "--concurrency", "x"}, exitUsage, "--concurrency"},
		{[]string{"bench", "--workers", "0"}, exitUsage, "--workers"},
		{[]string{"bench", "--workload", "chain", "--workers", "2"}, exitUsage, "--workload chain needs the worker in the bench process"},
		{[]string{"bench", "--workload", "sequence,latency", "--workers", "3"}, exitUsage, "--workload latency needs the worker in the bench process"},
		{[]string{"bench", "-o", "yaml"}, exitUsage, "yaml"},
		{[]string{"bench", "--store", existing, "-n", "1"}, exitFailure, "exists"},
	} {
		cli(t, tc.args...).fails(t, tc.code, tc.err)
	}
}
