package workload

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
)

func TestPercentile(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct{ p, want float64 }{{50, 5}, {99, 10}, {100, 10}, {1, 1}, {0, 1}} {
		if got := Percentile(v, tc.p); got != tc.want {
			t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("Percentile of nothing")
	}
}

func TestMedian(t *testing.T) {
	runs := []*Result{
		{Instances: 1, Completed: 1, InstancesPerSec: 10, P99Ms: 5, PeakRSSBytes: 300, WorkerPeakRSSBytes: []int64{1, 9}},
		{Instances: 1, Completed: 1, InstancesPerSec: 30, P99Ms: 1, PeakRSSBytes: 100, WorkerPeakRSSBytes: []int64{3, 7}},
		{Instances: 1, Completed: 1, InstancesPerSec: 20, P99Ms: 3, PeakRSSBytes: 200, WorkerPeakRSSBytes: []int64{2, 8}},
	}
	m, err := Median(runs)
	if err != nil {
		t.Fatal(err)
	}
	if m.Runs != 3 || m.InstancesPerSec != 20 || m.P99Ms != 3 || m.PeakRSSBytes != 200 || m.WorkerPeakRSSBytes[0] != 2 || m.WorkerPeakRSSBytes[1] != 8 {
		t.Fatalf("median %+v", m)
	}
	runs[1].Error = "boom"
	if m, _ := Median(runs); m.OK() || m.Error != "boom" {
		t.Fatalf("a failed run must make the median fail: %+v", m)
	}
}

func TestParse(t *testing.T) {
	if w, err := Parse("all"); err != nil || len(w) != len(Names) {
		t.Fatalf("all: %v %v", w, err)
	}
	if w, err := Parse("fanout, sequence"); err != nil || len(w) != 2 || w[0] != FanOut {
		t.Fatalf("list: %v %v", w, err)
	}
	if _, err := Parse("nope"); err == nil {
		t.Fatal("unknown workload accepted")
	}
}

// TestRunDuro runs each workload tiny on a SQLite store with a worker in
// the test process.
func TestRunDuro(t *testing.T) {
	for _, name := range Names {
		t.Run(name, func(t *testing.T) {
			st, err := NewStore(filepath.Join(t.TempDir(), "bench.db"), "")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			be, err := st.OpenDuro(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			reg := duro.NewRegistry()
			Register(reg)
			w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler), PollInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = w.Stop(context.Background()) }()
			res, err := Run(ctx, &Duro{Client: duro.NewClient(be, nil)}, Spec{Workload: name, N: 4, Poll: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK() {
				t.Fatalf("run failed: %+v", res)
			}
			wantInst, wantAct := 4, 12
			switch name {
			case FanOut, Chain:
				wantInst, wantAct = 1, 4
			case Latency:
				wantInst, wantAct = 4, 4
			}
			if res.Instances != wantInst || res.Completed != wantInst || res.Activities != wantAct {
				t.Fatalf("counts %+v", res)
			}
			if res.P50Ms < 0 || res.P99Ms < res.P50Ms || res.MaxMs < res.P99Ms || res.ElapsedSeconds <= 0 || res.InstancesPerSec <= 0 {
				t.Fatalf("figures %+v", res)
			}
			if (name == Chain) != (res.Chain != nil) {
				t.Fatalf("chain figures %+v on %s", res.Chain, name)
			}
			if c := res.Chain; c != nil && (c.Steps != 4 || c.MsPerStep <= 0 || c.FirstMsPerStep <= 0 || c.LastMsPerStep <= 0 || c.LastOverFirst <= 0) {
				t.Fatalf("chain figures %+v", c)
			}
			if name == Mixed && res.P50Ms < float64(TimerDelay.Milliseconds()) {
				t.Fatalf("mixed finished before its timer: p50 %v ms", res.P50Ms)
			}
			size, err := st.Size(ctx)
			if err != nil || size <= 0 {
				t.Fatalf("store size %d, %v", size, err)
			}
		})
	}
}

func TestPostgresStoreSpec(t *testing.T) {
	st, err := NewStore("postgres://u:pw@h/db?sslmode=disable&duro_schema=theirs", "bench_")
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind != KindPostgres || !strings.HasPrefix(st.Schema, "bench_") || strings.Contains(st.URL, "duro_schema") {
		t.Fatalf("store %+v", st)
	}
	spec := st.Spec()
	if !strings.Contains(spec, "duro_schema="+st.Schema) || strings.Contains(spec, "theirs") || !strings.Contains(spec, "sslmode=disable") {
		t.Fatalf("spec %q", spec)
	}
	if strings.Contains(st.String(), "pw") {
		t.Fatalf("String leaks the password: %s", st)
	}
}

// TestComputeChain checks the chain's figures on recorded times: step i
// (i >= 1) costs at[i]-at[i-1]; the first and last tenth are averaged.
func TestComputeChain(t *testing.T) {
	start := time.Unix(1000, 0)
	// 21 steps: step 0 at start+50ms (the start's cost), then 20 step
	// costs: 2 ms for the first two, 1 ms for the 16 in between, 8 and 6 ms for the
	// last two.
	costs := []int{2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 8, 6}
	at := []time.Time{start.Add(50 * time.Millisecond)}
	for _, c := range costs {
		at = append(at, at[len(at)-1].Add(time.Duration(c)*time.Millisecond))
	}
	completed := at[len(at)-1].Add(3 * time.Millisecond)
	f, err := ComputeChain(start, completed, at)
	if err != nil {
		t.Fatal(err)
	}
	// 50 + 2+2 + 16×1 + 8+6 = 84 ms, +3 to the completion: 87 ms / 21 steps.
	want := ChainFigures{Steps: 21, MsPerStep: 87.0 / 21, FirstMsPerStep: 2, LastMsPerStep: 7, LastOverFirst: 3.5}
	if !near(f.MsPerStep, want.MsPerStep) || f.FirstMsPerStep != want.FirstMsPerStep || f.LastMsPerStep != want.LastMsPerStep ||
		f.LastOverFirst != want.LastOverFirst || f.Steps != want.Steps {
		t.Fatalf("figures %+v, want %+v", *f, want)
	}

	// Fewer than 10 step costs: one step each way.
	f, err = ComputeChain(start, at[3], at[:4])
	if err != nil {
		t.Fatal(err)
	}
	if f.FirstMsPerStep != 2 || f.LastMsPerStep != 1 || f.LastOverFirst != 0.5 {
		t.Fatalf("short chain %+v", *f)
	}

	at[5] = time.Time{}
	if _, err := ComputeChain(start, completed, at); !errors.Is(err, ErrStepMissing) {
		t.Fatalf("a missing step: %v", err)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestStepRecorder checks the recorder under concurrent steps.
func TestStepRecorder(t *testing.T) {
	var r StepRecorder
	r.Reset(100)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() { r.Record(i) })
	}
	wg.Wait()
	r.Record(100) // out of range: ignored
	r.Record(-1)
	for i, at := range r.Times() {
		if at.IsZero() {
			t.Fatalf("step %d not recorded", i)
		}
	}
	if n := len(r.Times()); n != 100 {
		t.Fatalf("%d times", n)
	}
}

// noWait is an engine without a Wait.
type noWait struct{ Engine }

func TestLatencyNeedsWaiter(t *testing.T) {
	if _, err := Run(context.Background(), noWait{}, Spec{Workload: Latency, N: 1}); err == nil || !strings.Contains(err.Error(), "no Wait") {
		t.Fatalf("latency on an engine without Wait: %v", err)
	}
}
