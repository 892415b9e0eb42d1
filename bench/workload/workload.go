// Package workload defines the workloads of duro's benchmarks and measures
// them the same way on any engine: `duro bench` runs them on duro, and the
// peer comparison (the separate module under bench/peers) runs them on duro
// and on another durable-task engine, alternately.
//
// A workload is a number of orchestration instances started at once. Each
// instance's latency runs from the moment the driver asks the engine to
// start it to the completion time the engine's store records (never the
// moment a wait call returns, which would add the waiter's polling delay);
// throughput is the work done divided by the time from the first start to
// the last recorded completion.
//
// The workloads:
//
//   - sequence: N instances of a 3-activity chain ("hello cities");
//   - fanout: one instance fanning out to N activities and back in;
//   - mixed: N instances of an activity, a durable timer, a wait for an
//     external event (raised by the driver right after the start) and two
//     more activities;
//   - atmostonce: sequence with every activity at-most-once;
//   - chain: one instance running N activities one after another, with the
//     cost of each step recorded (chain.go);
//   - latency: N idle single-activity instances started one at a time, each
//     waited on with the engine's own wait; its latencies are the caller's.
package workload

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/durohq/duro"
)

// Workload names.
const (
	Sequence   = "sequence"
	FanOut     = "fanout"
	Mixed      = "mixed"
	AtMostOnce = "atmostonce"
	Chain      = "chain"
	Latency    = "latency"
)

// Names lists the workloads in the order "all" runs them.
var Names = []string{Sequence, FanOut, Mixed, AtMostOnce, Chain, Latency}

// Names of the orchestrations, the activity and the event: every engine
// registers its code under these.
const (
	OrchSequence  = "BenchSequence"
	OrchFanOut    = "BenchFanOut"
	OrchMixed     = "BenchMixed"
	OrchChain     = "BenchChain"
	OrchSingle    = "BenchSingle"
	ActivityHello = "BenchHello"
	// ActivityStep is the chain's activity: ChainStep.
	ActivityStep = "BenchStep"
	EventApprove = "approve"
)

// TimerDelay is the durable timer of the mixed workload.
const TimerDelay = 100 * time.Millisecond

// Cities are the inputs of the sequence's three activities.
var Cities = []string{"Tokyo", "Seattle", "London"}

// Hello is what the activity returns: the whole of its work.
func Hello(name string) string { return "Hello, " + name + "!" }

// SequenceInput is the input of OrchSequence.
type SequenceInput struct {
	// AtMostOnce makes every activity call at-most-once.
	AtMostOnce bool `json:"atMostOnce,omitempty"`
}

// Parse turns a --workload value (a name, a comma-separated list, or
// "all") into workload names.
func Parse(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return append([]string(nil), Names...), nil
	}
	var out []string
	for _, w := range strings.Split(s, ",") {
		w = strings.TrimSpace(w)
		if !known(w) {
			return nil, fmt.Errorf("unknown workload %q (want %s or all)", w, strings.Join(Names, ", "))
		}
		out = append(out, w)
	}
	return out, nil
}

func known(w string) bool {
	for _, n := range Names {
		if n == w {
			return true
		}
	}
	return false
}

// DefaultN is the size of a workload when none is given: instances, or
// activities of the one fan-out or chain instance.
func DefaultN(workload string) int {
	switch workload {
	case FanOut, Chain:
		return 1000
	case Latency:
		return 200
	case Mixed:
		return 300
	default:
		return 500
	}
}

// Spec is one run of a workload.
type Spec struct {
	Workload string
	// N is the number of instances, or the width of the fan-out or the
	// length of the chain.
	// Zero means DefaultN.
	N int
	// Starters is how many goroutines start instances at once. Default 8.
	Starters int
	// Poll is how often the driver asks the store whether every instance
	// has finished. It does not affect the figures, which come from the
	// times the store records. Default 20ms.
	Poll time.Duration
	// Prefix starts every instance ID. Default "bench-".
	Prefix string
}

func (s Spec) withDefaults() (Spec, error) {
	if !known(s.Workload) {
		return s, fmt.Errorf("unknown workload %q", s.Workload)
	}
	if s.N < 0 {
		return s, errors.New("negative N")
	}
	if s.N == 0 {
		s.N = DefaultN(s.Workload)
	}
	if s.Starters <= 0 {
		s.Starters = 8
	}
	if s.Poll <= 0 {
		s.Poll = 20 * time.Millisecond
	}
	if s.Prefix == "" {
		s.Prefix = "bench-"
	}
	return s, nil
}

// Instances is the number of instances the run starts.
func (s Spec) Instances() int {
	if s.Workload == FanOut || s.Workload == Chain {
		return 1
	}
	return s.N
}

// ActivitiesPerInstance is the number of activities one instance runs.
func (s Spec) ActivitiesPerInstance() int {
	switch s.Workload {
	case FanOut, Chain:
		return s.N
	case Latency:
		return 1
	}
	return len(Cities)
}

// Orchestration returns the orchestration the workload starts and its input.
func (s Spec) Orchestration() (name string, input any) {
	switch s.Workload {
	case FanOut:
		return OrchFanOut, s.N
	case Chain:
		return OrchChain, s.N
	case Latency:
		return OrchSingle, Cities[0]
	case Mixed:
		return OrchMixed, nil
	case AtMostOnce:
		return OrchSequence, SequenceInput{AtMostOnce: true}
	default:
		return OrchSequence, SequenceInput{}
	}
}

// Register registers the workloads' orchestrations and activities with a
// duro registry.
func Register(r *duro.Registry) {
	duro.RegisterActivity(r, ActivityHello, func(_ duro.ActivityContext, name string) (string, error) {
		return Hello(name), nil
	})
	duro.RegisterActivity(r, ActivityStep, func(_ duro.ActivityContext, i int) (int, error) {
		return ChainStep(i), nil
	})
	duro.RegisterOrchestration(r, OrchChain, func(ctx *duro.OrchestrationContext, n int) (int, error) {
		next := 0
		for i := range n {
			if err := ctx.CallActivity(ActivityStep, i).Await(&next); err != nil {
				return 0, err
			}
		}
		return next, nil
	})
	duro.RegisterOrchestration(r, OrchSingle, func(ctx *duro.OrchestrationContext, name string) (string, error) {
		var s string
		err := ctx.CallActivity(ActivityHello, name).Await(&s)
		return s, err
	})
	duro.RegisterOrchestration(r, OrchSequence, func(ctx *duro.OrchestrationContext, in SequenceInput) ([]string, error) {
		var opts duro.CallOptions
		if in.AtMostOnce {
			opts.Guarantee = duro.AtMostOnce
		}
		out := make([]string, 0, len(Cities))
		for _, city := range Cities {
			var s string
			if err := ctx.CallActivity(ActivityHello, city, opts).Await(&s); err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	})
	duro.RegisterOrchestration(r, OrchFanOut, func(ctx *duro.OrchestrationContext, n int) (int, error) {
		tasks := make([]*duro.Task, n)
		for i := range tasks {
			tasks[i] = ctx.CallActivity(ActivityHello, fmt.Sprint(i))
		}
		if err := ctx.AwaitAll(tasks...); err != nil {
			return 0, err
		}
		return n, nil
	})
	duro.RegisterOrchestration(r, OrchMixed, func(ctx *duro.OrchestrationContext, _ any) ([]string, error) {
		out := make([]string, 0, len(Cities))
		var s string
		if err := ctx.CallActivity(ActivityHello, Cities[0]).Await(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
		if err := ctx.Sleep(TimerDelay); err != nil {
			return nil, err
		}
		var approval int
		if err := ctx.WaitForEvent(EventApprove, -1).Await(&approval); err != nil {
			return nil, err
		}
		for _, city := range Cities[1:] {
			if err := ctx.CallActivity(ActivityHello, city).Await(&s); err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	})
}
