package duro

import (
	"math"
	"time"

	"github.com/durohq/duro/internal/replay"
)

// RetryPolicy retries a failed activity or sub-orchestration call. Retries are
// new tasks with their own history entries; between them the orchestration
// waits on durable timers, so a retry survives restarts.
type RetryPolicy struct {
	// MaxAttempts counts the first call: 3 means at most two retries. Zero
	// means no limit.
	MaxAttempts int
	// InitialInterval is the wait before the first retry. Zero means 1s.
	InitialInterval time.Duration
	// BackoffCoefficient multiplies the wait after each retry. Zero means 2;
	// values below 1 are treated as 1.
	BackoffCoefficient float64
	// MaxInterval caps the wait. Zero means 100 × InitialInterval.
	MaxInterval time.Duration
	// RetryIf decides whether a failure is retried. Nil retries every
	// failure not marked NonRetryable. It runs inside the orchestration and
	// must be deterministic.
	RetryIf func(err *TaskError) bool
}

// delay returns the wait before retry number n (n = 1 for the first retry).
func (p *RetryPolicy) delay(n int) time.Duration {
	initial := p.InitialInterval
	if initial <= 0 {
		initial = time.Second
	}
	coef := p.BackoffCoefficient
	if coef == 0 {
		coef = 2
	}
	if coef < 1 {
		coef = 1
	}
	maxI := p.MaxInterval
	if maxI <= 0 {
		maxI = 100 * initial
	}
	d := float64(initial) * math.Pow(coef, float64(n-1))
	if d > float64(maxI) || math.IsInf(d, 0) || math.IsNaN(d) {
		return maxI
	}
	return time.Duration(d)
}

// withRetry schedules a call and, if policy is set, re-schedules it after
// failures. The retry logic runs in future callbacks, on the engine's side of
// the replay, so it is as deterministic as the code that asked for it.
func (ctx *OrchestrationContext) withRetry(policy *RetryPolicy, kind TaskKind, name string, schedule func() *replay.Future) *replay.Future {
	first := schedule()
	if policy == nil {
		return first
	}
	outer := replay.NewFuture()
	outer.TaskID = first.TaskID
	attempt := 1
	var watch func(f *replay.Future)
	watch = func(f *replay.Future) {
		f.OnDone(func() {
			if f.Failure() == nil && f.Err() == nil {
				outer.CopyFrom(f)
				return
			}
			if !ctx.shouldRetry(policy, attempt, kind, name, f) {
				outer.CopyFrom(f)
				outer.TaskID = f.TaskID
				return
			}
			timer := ctx.c.CreateTimer(ctx.c.Now().Add(policy.delay(attempt)))
			attempt++
			timer.OnDone(func() { watch(schedule()) })
		})
	}
	watch(first)
	return outer
}

func (ctx *OrchestrationContext) shouldRetry(p *RetryPolicy, attempt int, kind TaskKind, name string, f *replay.Future) (retry bool) {
	if p.MaxAttempts > 0 && attempt >= p.MaxAttempts {
		return false
	}
	fail := f.Failure()
	if fail == nil {
		return false // engine-level errors (bad payloads) are not retried
	}
	te := newTaskError(kind, name, f.TaskID, fail)
	if p.RetryIf == nil {
		return !te.NonRetryable
	}
	defer func() {
		if r := recover(); r != nil {
			retry = false
		}
	}()
	return p.RetryIf(te)
}
