// Package fault holds the fault-injection points that crash tests use to kill
// a worker process at a chosen moment: after an attempt is recorded, after the
// code returns but before its completion commits, between a step's decision
// and its commit, and so on.
//
// Points are inert unless a test's worker process calls EnableFromEnv, which
// reads DURO_TEST_FAULT ("point" or "point@n" to fire on the n-th pass, 1 by
// default; several separated by commas). A firing point kills its own process
// with SIGKILL: no deferred calls, no flushing — the crash a power cut or an
// OOM kill would cause. Production code never calls EnableFromEnv.
//
// A few points fail instead of killing (Fail): an in-process test arms one
// for a key (an instance ID) with ArmFor, and the code at the point returns
// ErrInjected, as if a connection had broken there.
package fault

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// The points compiled into duro.
const (
	// ActivityClaimBeforeCommit: inside the claim transaction of an activity,
	// before it commits (the attempt is not recorded yet).
	ActivityClaimBeforeCommit = "activity-claim-before-commit"
	// ActivityAfterClaim: the claim has committed; the code has not started.
	ActivityAfterClaim = "activity-after-claim"
	// ActivityAfterStart: an at-most-once delivery has marked itself
	// started; its code has not run (the instant in which a crash makes
	// the next delivery a possible duplicate although the code never ran).
	ActivityAfterStart = "activity-after-start"
	// ActivityBeforeComplete: the code returned; its completion has not
	// committed.
	ActivityBeforeComplete = "activity-before-complete"
	// ActivityAfterComplete: the completion has committed.
	ActivityAfterComplete = "activity-after-complete"
	// StepBeforeCommit: an orchestration step is decided but not committed.
	StepBeforeCommit = "step-before-commit"
	// StepAfterCommit: an orchestration step has committed.
	StepAfterCommit = "step-after-commit"
	// StepReplyLost: a backend has committed an orchestration step (keyed
	// by instance ID) but its caller does not learn it: the call returns
	// ErrInjected, as when the connection breaks after COMMIT. A Fail point.
	StepReplyLost = "step-reply-lost"
)

var (
	enabled atomic.Bool
	// broken is the deliberate bug armed by DURO_TEST_BREAK.
	broken string
	mu     sync.Mutex
	// remaining maps a point to the passes left before it fires.
	remaining = map[string]int{}
)

// EnableFromEnv arms the points named in DURO_TEST_FAULT. Only test worker
// processes call it.
func EnableFromEnv() {
	spec := os.Getenv("DURO_TEST_FAULT")
	mu.Lock()
	broken = os.Getenv("DURO_TEST_BREAK")
	if spec == "" && broken == "" {
		mu.Unlock()
		return
	}
	defer mu.Unlock()
	for _, part := range strings.Split(spec, ",") {
		if part == "" {
			continue
		}
		name, nth, _ := strings.Cut(strings.TrimSpace(part), "@")
		n := 1
		if nth != "" {
			if v, err := strconv.Atoi(nth); err == nil && v > 0 {
				n = v
			}
		}
		remaining[name] = n
	}
	enabled.Store(true)
}

// Break names the deliberate bugs a harness can arm to prove it catches
// them.
const (
	// BreakAtMostOnce runs an at-most-once activity's code on every attempt.
	BreakAtMostOnce = "at-most-once"
)

// Broken reports whether the deliberate bug name is armed (by
// DURO_TEST_BREAK, read by EnableFromEnv). Only harness tests arm one.
func Broken(name string) bool { return enabled.Load() && broken == name }

// Point kills the process if name is armed and this is the pass it waits
// for. It costs one atomic load when nothing is armed.
func Point(name string) {
	if !enabled.Load() {
		return
	}
	mu.Lock()
	n, ok := remaining[name]
	if ok {
		n--
		remaining[name] = n
	}
	mu.Unlock()
	if ok && n == 0 {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// ErrInjected is the error of a Fail point that fires.
var ErrInjected = errors.New("fault injected")

var (
	// keyedArmed counts the keys armed by ArmFor, so that Fail costs one
	// atomic load when none is.
	keyedArmed atomic.Int32
	// keyed maps a point and key to the passes left that fail, and fired to
	// how many have.
	keyed = map[[2]string]int{}
	fired = map[[2]string]int{}
)

// ArmFor makes the next n passes of Fail point name with key fail, in this
// process. It returns a function that disarms the point and reports how many
// passes failed. Tests arm keys of their own (unique instance IDs), so that
// parallel tests are not affected.
func ArmFor(name, key string, n int) (disarm func() int) {
	k := [2]string{name, key}
	mu.Lock()
	if _, ok := keyed[k]; !ok {
		keyedArmed.Add(1)
	}
	keyed[k] = n
	fired[k] = 0
	mu.Unlock()
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := keyed[k]; ok {
			delete(keyed, k)
			keyedArmed.Add(-1)
		}
		n := fired[k]
		delete(fired, k)
		return n
	}
}

// Fail returns ErrInjected (wrapped with the point's name) if point name is
// armed for key and passes are left; nil otherwise. It costs one atomic load
// when nothing is armed.
func Fail(name, key string) error {
	if keyedArmed.Load() == 0 {
		return nil
	}
	k := [2]string{name, key}
	mu.Lock()
	defer mu.Unlock()
	if n := keyed[k]; n > 0 {
		keyed[k] = n - 1
		fired[k]++
		return fmt.Errorf("%s for %q: %w", name, key, ErrInjected)
	}
	return nil
}
