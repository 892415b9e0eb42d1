package workload

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// The chain and latency workloads.
//
// chain is one instance running N activities one after another. Each
// activity records the moment it runs (ChainStep, called by every engine's
// activity in the bench process), so the cost of each step of the chain is
// known: the time from one activity to the next, which covers committing
// the activity's result, the orchestration's next step and the claim of the
// next activity. An engine whose history grows with every step shows it as
// later steps costing more than earlier ones: ChainFigures compares the
// first and the last tenth.
//
// latency is N idle instances of a single activity, started one at a time,
// each waited on with the engine's own wait (Waiter) before the next
// starts: its figures are the latency a caller sees, start to result.

// ChainSteps records when each activity of the running chain ran. Run
// resets it at the start of a chain run; the engines' chain activities call
// ChainStep. The chain's activities must therefore run in the process that
// calls Run.
var ChainSteps StepRecorder

// ChainStep is the chain activity's whole work: it records that step i ran
// and returns i+1.
func ChainStep(i int) int {
	ChainSteps.Record(i)
	return i + 1
}

// StepRecorder records the time each step of a chain ran. It is safe for
// concurrent use.
type StepRecorder struct {
	mu sync.Mutex
	at []time.Time
}

// Reset forgets every step and expects n.
func (r *StepRecorder) Reset(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = make([]time.Time, n)
}

// Record records that step i ran now. A step that runs again (an engine
// retrying it) keeps its latest time; steps out of range are ignored.
func (r *StepRecorder) Record(i int) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if i >= 0 && i < len(r.at) {
		r.at[i] = now
	}
}

// Times returns a copy of the recorded times (zero: not run).
func (r *StepRecorder) Times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.at...)
}

// ChainFigures are the per-step costs of one chain run.
type ChainFigures struct {
	// Steps is the chain's length.
	Steps int `json:"steps"`
	// MsPerStep is the whole run, start to the recorded completion,
	// divided by Steps.
	MsPerStep float64 `json:"ms_per_step"`
	// FirstMsPerStep and LastMsPerStep are the mean cost of a step over
	// the first and the last tenth of the chain (at least one step each),
	// a step's cost being the time from the previous activity to its own.
	FirstMsPerStep float64 `json:"first_ms_per_step"`
	LastMsPerStep  float64 `json:"last_ms_per_step"`
	// LastOverFirst is LastMsPerStep / FirstMsPerStep: 1 for a flat cost
	// per step.
	LastOverFirst float64 `json:"last_over_first"`
}

// ErrStepMissing is returned by ComputeChain when a step has no recorded
// time: its activity did not run in this process.
var ErrStepMissing = errors.New("chain step not recorded (the activities must run in the bench process)")

// ComputeChain computes the figures of a chain of len(at) steps started at
// start and completed (as its store recorded) at completed. at[i] is when
// step i's activity ran. The cost of step i (i >= 1) is at[i] - at[i-1];
// step 0, which also pays for the start, is in MsPerStep only.
func ComputeChain(start, completed time.Time, at []time.Time) (*ChainFigures, error) {
	n := len(at)
	if n == 0 {
		return nil, errors.New("chain of no steps")
	}
	for i, t := range at {
		if t.IsZero() {
			return nil, fmt.Errorf("step %d of %d: %w", i, n, ErrStepMissing)
		}
	}
	f := &ChainFigures{Steps: n, MsPerStep: ms(completed.Sub(start)) / float64(n)}
	if n < 2 {
		return f, nil
	}
	// Costs of steps 1..n-1.
	cost := make([]float64, n-1)
	for i := 1; i < n; i++ {
		cost[i-1] = ms(at[i].Sub(at[i-1]))
	}
	k := max(1, len(cost)/10)
	f.FirstMsPerStep = mean(cost[:k])
	f.LastMsPerStep = mean(cost[len(cost)-k:])
	if f.FirstMsPerStep > 0 {
		f.LastOverFirst = f.LastMsPerStep / f.FirstMsPerStep
	}
	return f, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// Waiter is implemented by an engine that can wait for one instance the way
// its users do (duro: Client.Wait; DBOS: its handle's GetResult;
// durabletask-go: WaitForOrchestrationCompletion). The latency workload
// needs it.
type Waiter interface {
	// Wait blocks until the instance id has finished and returns nil if it
	// completed successfully, an error otherwise.
	Wait(ctx context.Context, id string) error
}

// runLatency runs the latency workload: s.N single-activity instances, one
// at a time, each started and waited on with e's own wait. The latencies
// are those the caller sees.
func runLatency(ctx context.Context, e Engine, s Spec, res *Result, ids []string) (*Result, error) {
	w, ok := e.(Waiter)
	if !ok {
		return nil, fmt.Errorf("workload %s: engine %T has no Wait", Latency, e)
	}
	name, input := s.Orchestration()
	lat := make([]float64, 0, len(ids))
	t0 := time.Now()
	for _, id := range ids {
		t := time.Now()
		if err := e.Start(ctx, name, id, input); err != nil {
			res.Error = fmt.Sprintf("start %s: %v", id, err)
			return res, nil
		}
		if err := w.Wait(ctx, id); err != nil {
			res.Error = fmt.Sprintf("wait for %s: %v", id, err)
			return res, nil
		}
		lat = append(lat, ms(time.Since(t)))
	}
	elapsed := time.Since(t0)
	res.StartSeconds = elapsed.Seconds()
	outs, err := e.Outcomes(ctx)
	if err != nil {
		res.Error = fmt.Sprintf("read outcomes: %v", err)
		return res, nil
	}
	for _, id := range ids {
		if o, ok := outs[id]; ok && o.Completed {
			res.Completed++
		} else {
			res.Failed++
		}
	}
	if res.Failed > 0 {
		res.Error = fmt.Sprintf("%d of %d instances did not complete", res.Failed, len(ids))
		return res, nil
	}
	res.ElapsedSeconds = elapsed.Seconds()
	res.InstancesPerSec = float64(res.Completed) / res.ElapsedSeconds
	res.ActivitiesPerSec = res.InstancesPerSec
	sort.Float64s(lat)
	res.P50Ms, res.P99Ms, res.MaxMs = Percentile(lat, 50), Percentile(lat, 99), lat[len(lat)-1]
	return res, nil
}
