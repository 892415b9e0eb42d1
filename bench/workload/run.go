package workload

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// Engine is what Run needs of a durable-task engine: start instances, raise
// events, and read back from its store whether and when they finished.
type Engine interface {
	// Start starts the instance id of the orchestration name with input.
	Start(ctx context.Context, name, id string, input any) error
	// RaiseEvent raises the event name, with data, to the instance id.
	RaiseEvent(ctx context.Context, id, name string, data any) error
	// Finished reports whether every instance in the store has finished
	// (completed, failed, terminated or suspended). It should be cheap: Run
	// calls it every Spec.Poll.
	Finished(ctx context.Context) (bool, error)
	// Outcomes reads every instance's status and the completion time its
	// store recorded.
	Outcomes(ctx context.Context) (map[string]Outcome, error)
	// Err returns an error the engine has reported meanwhile that means
	// the run cannot finish (a step it can never commit), or nil.
	Err() error
}

// Outcome is how one instance ended, as its store records it.
type Outcome struct {
	// Completed is true for a successful completion.
	Completed bool
	// Status is the engine's own name of the status.
	Status string
	// CompletedAt is the completion time the store recorded.
	CompletedAt time.Time
}

// Result is the measurement of one run.
type Result struct {
	Engine   string `json:"engine"`
	Backend  string `json:"backend"`
	Workload string `json:"workload"`
	N        int    `json:"n"`
	// Workers is the number of worker processes (1: in the bench process).
	Workers int `json:"workers"`
	// Concurrency is the per-worker concurrency setting (0: defaults).
	Concurrency int `json:"concurrency"`
	// Runs is the number of runs this result is the median of.
	Runs int `json:"runs"`

	Instances  int `json:"instances"`
	Activities int `json:"activities"`
	Completed  int `json:"completed"`
	// Failed counts instances that finished other than by completing.
	Failed int `json:"failed"`

	// StartSeconds is how long starting every instance took.
	StartSeconds float64 `json:"start_s"`
	// ElapsedSeconds runs from the first start to the last recorded
	// completion.
	ElapsedSeconds   float64 `json:"elapsed_s"`
	InstancesPerSec  float64 `json:"instances_per_s"`
	ActivitiesPerSec float64 `json:"activities_per_s"`
	// Steps counts orchestration steps committed, when the engine says
	// (0: unknown).
	Steps       int64   `json:"steps,omitempty"`
	StepsPerSec float64 `json:"steps_per_s,omitempty"`

	// P50Ms, P99Ms and MaxMs are the latency of an instance, start to the
	// recorded completion, in milliseconds.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`

	// PeakRSSBytes is the peak resident set of the bench process (VmHWM);
	// WorkerPeakRSSBytes that of each worker process, if any.
	PeakRSSBytes       int64   `json:"peak_rss_bytes"`
	WorkerPeakRSSBytes []int64 `json:"worker_peak_rss_bytes,omitempty"`
	// StoreBytes is the size of the store after the run.
	StoreBytes int64 `json:"store_bytes"`

	// Chain holds the per-step figures of a chain run.
	Chain *ChainFigures `json:"chain,omitempty"`

	// Error says why the run did not finish; the figures are then void.
	Error string `json:"error,omitempty"`
}

// OK reports whether the run finished with every instance completed.
func (r *Result) OK() bool { return r.Error == "" && r.Failed == 0 && r.Completed == r.Instances }

// MaxWorkerRSS is the largest peak RSS among the worker processes (0 if
// none).
func (r *Result) MaxWorkerRSS() int64 {
	var m int64
	for _, b := range r.WorkerPeakRSSBytes {
		m = max(m, b)
	}
	return m
}

// Run runs the workload s on e and measures it. For chain, e's chain
// activities must run in this process (they record each step in
// ChainSteps); for latency, e must be a Waiter. The result carries
// neither RSS nor store size (the caller knows its processes and store). An
// error is returned only for a run that could not start; a run that cannot
// finish (ctx done, the engine's Err) returns a Result with Error set.
func Run(ctx context.Context, e Engine, s Spec) (*Result, error) {
	s, err := s.withDefaults()
	if err != nil {
		return nil, err
	}
	name, input := s.Orchestration()
	n := s.Instances()
	res := &Result{Workload: s.Workload, N: s.N, Runs: 1, Instances: n, Activities: n * s.ActivitiesPerInstance()}
	ids := make([]string, n)
	started := make([]time.Time, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%s-%06d", s.Prefix, s.Workload, i)
	}
	if s.Workload == Latency {
		return runLatency(ctx, e, s, res, ids)
	}
	if s.Workload == Chain {
		ChainSteps.Reset(s.N)
	}

	t0 := time.Now()
	var (
		wg       sync.WaitGroup
		next     = make(chan int)
		errMu    sync.Mutex
		startErr error
	)
	for range min(s.Starters, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				started[i] = time.Now()
				err := e.Start(ctx, name, ids[i], input)
				if err == nil && s.Workload == Mixed {
					err = e.RaiseEvent(ctx, ids[i], EventApprove, i)
				}
				if err != nil {
					errMu.Lock()
					if startErr == nil {
						startErr = fmt.Errorf("start %s: %w", ids[i], err)
					}
					errMu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	res.StartSeconds = time.Since(t0).Seconds()
	if startErr != nil {
		res.Error = startErr.Error()
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		res.Error = err.Error()
		return res, nil
	}

	if err := waitFinished(ctx, e, s.Poll); err != nil {
		res.Error = err.Error()
		return res, nil
	}
	outs, err := e.Outcomes(ctx)
	if err != nil {
		res.Error = fmt.Sprintf("read outcomes: %v", err)
		return res, nil
	}
	lat := make([]float64, 0, n)
	var last time.Time
	statuses := map[string]int{}
	for i, id := range ids {
		o, ok := outs[id]
		switch {
		case !ok:
			statuses["missing"]++
			res.Failed++
			continue
		case !o.Completed:
			statuses[o.Status]++
			res.Failed++
			continue
		}
		res.Completed++
		if o.CompletedAt.After(last) {
			last = o.CompletedAt
		}
		lat = append(lat, max(0, o.CompletedAt.Sub(started[i]).Seconds()*1000))
	}
	if res.Failed > 0 {
		res.Error = fmt.Sprintf("%d of %d instances did not complete: %v", res.Failed, n, statuses)
	}
	if res.Completed == 0 {
		return res, nil
	}
	res.ElapsedSeconds = last.Sub(t0).Seconds()
	if res.ElapsedSeconds > 0 {
		res.InstancesPerSec = float64(res.Completed) / res.ElapsedSeconds
		res.ActivitiesPerSec = float64(res.Completed*s.ActivitiesPerInstance()) / res.ElapsedSeconds
	}
	sort.Float64s(lat)
	res.P50Ms, res.P99Ms, res.MaxMs = Percentile(lat, 50), Percentile(lat, 99), lat[len(lat)-1]
	if s.Workload == Chain {
		res.Chain, err = ComputeChain(started[0], last, ChainSteps.Times())
		if err != nil {
			res.Error = err.Error()
		}
	}
	return res, nil
}

// waitFinished polls e until every instance has finished.
func waitFinished(ctx context.Context, e Engine, poll time.Duration) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if err := e.Err(); err != nil {
			return err
		}
		done, err := e.Finished(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			return fmt.Errorf("poll the store: %w", err)
		case done:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting for the instances: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// SetSteps records the number of orchestration steps committed in the run.
func (r *Result) SetSteps(steps int64) {
	r.Steps = steps
	if r.ElapsedSeconds > 0 {
		r.StepsPerSec = float64(steps) / r.ElapsedSeconds
	}
}

// Percentile returns the p-th percentile (nearest rank) of sorted values.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Median combines the results of repeated runs of one configuration: each
// figure is the median of that figure over the runs (so the figures of the
// result may come from different runs). If a run failed, the result is
// that failed run.
func Median(runs []*Result) (*Result, error) {
	if len(runs) == 0 {
		return nil, errors.New("no runs")
	}
	for _, r := range runs {
		if !r.OK() {
			out := *r
			out.Runs = len(runs)
			return &out, nil
		}
	}
	out := *runs[0]
	out.Runs = len(runs)
	f := func(get func(*Result) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		return median(v)
	}
	i := func(get func(*Result) int64) int64 {
		return int64(math.Round(f(func(r *Result) float64 { return float64(get(r)) })))
	}
	out.StartSeconds = f(func(r *Result) float64 { return r.StartSeconds })
	out.ElapsedSeconds = f(func(r *Result) float64 { return r.ElapsedSeconds })
	out.InstancesPerSec = f(func(r *Result) float64 { return r.InstancesPerSec })
	out.ActivitiesPerSec = f(func(r *Result) float64 { return r.ActivitiesPerSec })
	out.Steps = i(func(r *Result) int64 { return r.Steps })
	out.StepsPerSec = f(func(r *Result) float64 { return r.StepsPerSec })
	out.P50Ms = f(func(r *Result) float64 { return r.P50Ms })
	out.P99Ms = f(func(r *Result) float64 { return r.P99Ms })
	out.MaxMs = f(func(r *Result) float64 { return r.MaxMs })
	out.PeakRSSBytes = i(func(r *Result) int64 { return r.PeakRSSBytes })
	out.StoreBytes = i(func(r *Result) int64 { return r.StoreBytes })
	if runs[0].Chain != nil {
		c := func(get func(*ChainFigures) float64) float64 {
			return f(func(r *Result) float64 {
				if r.Chain == nil {
					return 0
				}
				return get(r.Chain)
			})
		}
		out.Chain = &ChainFigures{
			Steps:          runs[0].Chain.Steps,
			MsPerStep:      c(func(f *ChainFigures) float64 { return f.MsPerStep }),
			FirstMsPerStep: c(func(f *ChainFigures) float64 { return f.FirstMsPerStep }),
			LastMsPerStep:  c(func(f *ChainFigures) float64 { return f.LastMsPerStep }),
			LastOverFirst:  c(func(f *ChainFigures) float64 { return f.LastOverFirst }),
		}
	}
	out.WorkerPeakRSSBytes = nil
	for w := range runs[0].WorkerPeakRSSBytes {
		out.WorkerPeakRSSBytes = append(out.WorkerPeakRSSBytes, i(func(r *Result) int64 {
			if w < len(r.WorkerPeakRSSBytes) {
				return r.WorkerPeakRSSBytes[w]
			}
			return 0
		}))
	}
	return &out, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
