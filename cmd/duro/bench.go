package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
	"github.com/durohq/duro/bench/workload"
)

// benchOptions are the flags of duro bench.
type benchOptions struct {
	workloads   string
	n           int
	workers     int
	concurrency string
	repeat      int
	output      string
	fsync       bool
	cpuprofile  string
	memprofile  string
}

// benchReport is what duro bench prints.
type benchReport struct {
	Machine string `json:"machine"`
	Backend string `json:"backend"`
	// FsyncPerSec is the disk's rate of 4 KiB appends with fsync, measured
	// in the store's directory (--fsync).
	FsyncPerSec float64            `json:"fsync_per_s,omitempty"`
	FsyncDir    string             `json:"fsync_dir,omitempty"`
	Results     []*workload.Result `json:"results"`
}

func (a *app) benchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput, latency, memory and store size of named workloads",
		Long: `Bench runs named workloads on a fresh store and reports, for each,
instances/s, activities/s, orchestration steps committed/s, the p50 and p99
latency of an instance (from its start to the completion time the store
records), the peak RSS of the bench process and of each worker process, and
the store's size afterwards.

Workloads (--workload, a comma-separated list or all):
  sequence    N instances of a 3-activity chain ("hello cities")
  fanout      one instance fanning out to N activities and back in
  mixed       N instances of an activity, a 100ms durable timer, a wait for an
              external event (raised right after the start) and two more
              activities
  atmostonce  sequence with every activity at-most-once
  chain       one instance running N activities one after another; reports
              ms per step overall and over the first and the last 10% of
              the steps (a flat cost per step: last/first near 1)
  latency     N idle single-activity instances started one at a time, each
              waited on with Client.Wait; p50 and p99 are start to result as
              the caller sees it

-n sets N (default: 500 for sequence and atmostonce, 1000 for fanout and
chain, 300 for mixed, 200 for latency). Instances are started by 8
goroutines at once (latency: one at a time).

The store is a new SQLite file (with the default durability settings: WAL,
synchronous=FULL), deleted afterwards: --store names it (it must not exist;
default: a temporary directory), or a PostgreSQL URL, in whose database
every run gets a new schema, dropped afterwards.

With --workers 1 (the default) the worker runs in the bench process; with
more, bench starts that many 'duro bench-worker' processes on the store and
only starts and measures instances itself. chain and latency need the
worker in the bench process (chain times each step in the activity, latency
measures an idle worker): they refuse --workers > 1, and all leaves them
out then. --concurrency sets each worker's
orchestration and activity concurrency (0: the worker defaults); a
comma-separated list runs each value. --repeat runs each configuration
several times, alternating the configurations, and reports the median of
each figure.

--fsync first measures the disk's fsync rate in the store's directory: the
reference for steps/s, as a commit under synchronous=FULL costs an fsync.
--cpuprofile writes a CPU profile of the bench process (read it with 'go
tool pprof -top'); --memprofile writes its heap profile when the runs end:
the allocations of the whole run (go tool pprof -sample_index=alloc_space)
and what is still in use.

The machine is shared by whatever else runs on it: compare figures from the
same run, and repeat.`,
		Example: `  duro bench
  duro bench --workload sequence -n 2000 --repeat 3 --fsync
  duro bench --workload fanout -n 10000 -o json
  duro bench --workload chain -n 3000
  duro bench --store postgres://localhost/bench --workload latency
  duro bench --store postgres://localhost/bench --workers 2 --concurrency 8,32
  duro bench --workload sequence --cpuprofile cpu.out && go tool pprof -top cpu.out
  duro bench --workload fanout --memprofile mem.out && go tool pprof -sample_index=alloc_space -top mem.out`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runBench(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.workloads, "workload", "all", "workloads to run: sequence, fanout, mixed, atmostonce, chain, latency (comma-separated) or all")
	f.IntVarP(&o.n, "n", "n", 0, "instances per run (fan-out width for fanout); 0: the workload's default")
	f.IntVar(&o.workers, "workers", 1, "worker processes (1: a worker in the bench process)")
	f.StringVar(&o.concurrency, "concurrency", "0", "per-worker orchestration and activity concurrency, comma-separated to compare (0: defaults)")
	f.IntVar(&o.repeat, "repeat", 1, "runs of each configuration; figures are the medians")
	f.BoolVar(&o.fsync, "fsync", false, "measure the disk's fsync rate in the store's directory first")
	f.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the bench process to this file")
	f.StringVar(&o.memprofile, "memprofile", "", "write a heap profile of the bench process to this file when the runs end")
	addOutputFlag(cmd, &o.output)
	return cmd
}

func (a *app) runBench(cmd *cobra.Command, o *benchOptions) error {
	asJSON, err := parseOutput(o.output)
	if err != nil {
		return err
	}
	names, err := workload.Parse(o.workloads)
	if err != nil {
		return usageErrorf("--workload: %v", err)
	}
	concs, err := parseConcurrency(o.concurrency)
	if err != nil {
		return err
	}
	if o.n < 0 || o.workers < 1 || o.repeat < 1 {
		return usageErrorf("-n must not be negative; --workers and --repeat must be at least 1")
	}
	if o.workers > 1 && strings.TrimSpace(o.workloads) == "all" {
		// all means the workloads that can run with worker processes.
		names = slices.DeleteFunc(names, func(n string) bool { return n == workload.Chain || n == workload.Latency })
		fmt.Fprintf(a.stderr, "bench: with --workers %d, all leaves out %s and %s (they need the worker in the bench process)\n",
			o.workers, workload.Chain, workload.Latency)
	}
	if o.workers > 1 {
		for _, name := range names {
			if name == workload.Chain || name == workload.Latency {
				return usageErrorf("--workload %s needs the worker in the bench process: it cannot run with --workers %d", name, o.workers)
			}
		}
	}
	// A benchmark takes as long as it takes: the default --timeout does not
	// apply, one given explicitly does.
	ctx := cmd.Context()
	if !cmd.Flags().Changed("timeout") {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.WithoutCancel(ctx), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}

	spec := a.store
	if !a.storeGiven(cmd) {
		dir, err := os.MkdirTemp("", "duro-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		spec = filepath.Join(dir, "bench.db")
	}
	if !workload.IsPostgresURL(spec) {
		if _, err := workload.NewStore(spec, ""); err != nil {
			return err
		}
	}
	rep := &benchReport{Backend: storeKind(spec)}
	fsDir := os.TempDir()
	if !workload.IsPostgresURL(spec) {
		fsDir = filepath.Dir(spec)
	}
	rep.Machine = workload.Machine(fsDir)
	if o.fsync {
		rate, err := workload.FsyncRate(fsDir, 2*time.Second)
		if err != nil {
			return fmt.Errorf("measure fsync rate: %w", err)
		}
		rep.FsyncPerSec, rep.FsyncDir = rate, fsDir
		fmt.Fprintf(a.stderr, "bench: fsync rate in %s: %.0f/s\n", fsDir, rate)
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	// Repetitions are the outer loop, so that the configurations alternate
	// and a change in the machine's load affects them alike.
	type config struct {
		name string
		conc int
	}
	var configs []config
	for _, name := range names {
		for _, conc := range concs {
			configs = append(configs, config{name, conc})
		}
	}
	runs := make([][]*workload.Result, len(configs))
run:
	for i := range o.repeat {
		for j, c := range configs {
			r, err := a.benchRun(ctx, spec, workload.Spec{Workload: c.name, N: o.n}, o.workers, c.conc)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			fmt.Fprintf(a.stderr, "bench: %s n=%d workers=%d concurrency=%d run %d/%d: %s\n",
				c.name, r.N, o.workers, c.conc, i+1, o.repeat, summary(r))
			runs[j] = append(runs[j], r)
			if ctx.Err() != nil {
				break run
			}
		}
	}
	if o.memprofile != "" {
		if err := writeHeapProfile(o.memprofile); err != nil {
			return err
		}
	}
	failed := 0
	for _, rs := range runs {
		if len(rs) == 0 {
			continue
		}
		med, err := workload.Median(rs)
		if err != nil {
			return err
		}
		if !med.OK() {
			failed++
		}
		rep.Results = append(rep.Results, med)
	}
	if asJSON {
		err = writeJSON(a.stdout, rep)
	} else {
		err = writeBenchText(a.stdout, rep)
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bench interrupted: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d benchmark configurations did not complete", failed, len(rep.Results))
	}
	return nil
}

// writeHeapProfile writes the heap profile of the process to path, after
// a collection (so that its in-use figures are those of live objects).
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}

// summary is the one-line progress report of a run.
func summary(r *workload.Result) string {
	if !r.OK() {
		return "FAILED: " + r.Error
	}
	return fmt.Sprintf("%.1f instances/s, %.1f activities/s, p50 %.1f ms, p99 %.1f ms", r.InstancesPerSec, r.ActivitiesPerSec, r.P50Ms, r.P99Ms)
}

func writeBenchText(w io.Writer, rep *benchReport) error {
	fmt.Fprintf(w, "machine: %s\n", rep.Machine)
	if rep.FsyncPerSec > 0 {
		fmt.Fprintf(w, "fsync:   %.0f/s (4 KiB append + fsync in %s)\n", rep.FsyncPerSec, rep.FsyncDir)
	}
	fmt.Fprintln(w)
	return workload.WriteTable(w, rep.Results)
}

// parseConcurrency parses --concurrency: comma-separated non-negative
// integers.
func parseConcurrency(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 0 {
			return nil, usageErrorf("--concurrency: %q is not a non-negative integer", strings.TrimSpace(f))
		}
		out = append(out, c)
	}
	return out, nil
}

// benchRun runs one workload on a fresh store made from spec and measures
// it.
func (a *app) benchRun(ctx context.Context, spec string, s workload.Spec, workers, conc int) (res *workload.Result, err error) {
	st, err := workload.NewStore(spec, "duro_bench_")
	if err != nil {
		return nil, err
	}
	defer func() {
		if rerr := st.Remove(context.WithoutCancel(ctx)); rerr != nil && err == nil {
			err = fmt.Errorf("remove the store %s: %w", st, rerr)
		}
	}()
	// The store opens as any --store does.
	be, err := openStore(ctx, st.Spec())
	if err != nil {
		return nil, err
	}
	defer be.Close()
	logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	var (
		steps   func() int64
		rss     func() []int64
		stopAll func() (int64, error)
	)
	var local *duro.Worker // the worker in this process, which runs first steps with their starts
	if workers <= 1 {
		reg := duro.NewRegistry()
		workload.Register(reg)
		w, err := duro.NewWorker(be, reg, benchWorkerOptions(conc, logger))
		if err != nil {
			return nil, err
		}
		if err := w.Start(ctx); err != nil {
			return nil, err
		}
		defer func() { _ = w.Stop(context.WithoutCancel(ctx)) }()
		local = w
		steps = func() int64 { return w.Stats().StepsCompleted }
		rss = func() []int64 { return nil }
		stopAll = func() (int64, error) { return 0, nil }
	} else {
		ws, err := startBenchWorkers(ctx, st, workers, conc, a.stderr)
		if err != nil {
			return nil, err
		}
		defer ws.kill()
		rss = ws.peakRSS
		stopAll = ws.stop
	}

	_ = workload.ResetPeakRSS()
	res, err = workload.Run(ctx, &workload.Duro{Client: duro.NewClient(be, &duro.ClientOptions{Worker: local})}, s)
	if err != nil {
		return nil, err
	}
	res.Engine, res.Backend, res.Workers, res.Concurrency = "duro", st.Kind, workers, conc
	res.PeakRSSBytes, _ = workload.PeakRSS(0)
	res.WorkerPeakRSSBytes = rss()
	if size, err := st.Size(ctx); err == nil {
		res.StoreBytes = size
	} else if res.Error == "" {
		res.Error = fmt.Sprintf("store size: %v", err)
	}
	n, err := stopAll()
	if err != nil && res.Error == "" {
		res.Error = err.Error()
	}
	if steps != nil {
		n = steps()
	}
	res.SetSteps(n)
	return res, nil
}

// benchWorkerOptions are the options of a bench worker: conc (0: the
// defaults) for both orchestrations and activities.
func benchWorkerOptions(conc int, logger *slog.Logger) *duro.WorkerOptions {
	return &duro.WorkerOptions{OrchestrationConcurrency: conc, ActivityConcurrency: conc, Logger: logger}
}

// errNoReady is returned when a worker process exits before it is ready.
var errNoReady = errors.New("bench worker exited before it was ready")

// benchWorkerStats is what a bench-worker process prints when it stops.
type benchWorkerStats struct {
	Steps      int64 `json:"steps"`
	Activities int64 `json:"activities"`
}

// encodeStats writes the worker's stats as one JSON line.
func encodeStats(w io.Writer, s duro.WorkerStats) error {
	return json.NewEncoder(w).Encode(benchWorkerStats{Steps: s.StepsCompleted, Activities: s.ActivitiesCompleted})
}
