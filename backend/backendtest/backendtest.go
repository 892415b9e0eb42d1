package backendtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// Options tune Exercise for a backend.
type Options struct {
	// Reopen closes b and opens the same store again (for persistence tests);
	// nil for non-persistent stores, whose persistence tests are then skipped.
	// The suite closes the returned backend when the test ends.
	Reopen func(t *testing.T, b backend.Backend) backend.Backend
}

// Exercise runs the whole conformance suite against backends made by
// newBackend. Every subtest runs in parallel with its own backend, so
// newBackend must return a fresh, empty store on every call.
//
// The suite owns the backends it is given: it closes each one (and each one
// Reopen returns) in t.Cleanup, accepting an error wrapping backend.ErrClosed
// from a backend that a test has already closed. newBackend only registers
// cleanup of what lies under the store (t.TempDir does that for files).
//
// Exercise returns once every subtest has finished, so ctx may be cancelled
// by the caller afterwards.
func Exercise(ctx context.Context, t *testing.T, newBackend func(t *testing.T) backend.Backend, opts *Options) {
	t.Helper()
	s := &suite{ctx: ctx, newBackend: newBackend}
	if opts != nil {
		s.opts = *opts
	}
	// A synthetic clock an hour ahead of the wall clock: methods without a Now
	// (EnqueueMessage, AbandonParams.RetryAt zero) fall back to the backend's
	// clock, which must then read as "already visible" to every claim.
	s.t0 = time.Now().Add(time.Hour).Truncate(time.Second).UTC()

	groups := []struct {
		name  string
		tests []test
	}{
		{"Instances", instanceTests()},
		{"Lifecycle", lifecycleTests()},
		{"O1", stepTests()},
		{"Messages", messageTests()},
		{"Timers", timerTests()},
		{"SubOrchestrations", subOrchestrationTests()},
		{"Activities", activityTests()},
		{"A1", attemptTests()},
		{"A2", fencingTests()},
		{"CommitReplies", replyTests()},
		{"EagerActivities", eagerTests()},
		{"FusedSteps", fusedTests()},
		{"FusedCommits", fusedCommitTests()},
		{"FusedStarts", fusedStartTests()},
		{"History", historyTests()},
		{"Purge", purgeTests()},
		{"List", listTests()},
		{"Suspend", suspendTests()},
		{"Rewind", rewindTests()},
		{"Operator", append(operatorTests(), sdkOperatorTests()...)},
		{"Persistence", persistenceTests()},
		{"Close", closeTests()},
		{"WorkNotifier", notifierTests()},
		{"FinishNotifier", finishNotifierTests()},
		{"Ordering", orderingTests()},
		{"MessageOrder", messageOrderTests()},
		{"SDK", sdkTests()},
		{"Guarantees", guaranteeTests()},
		{"Control", controlTests()},
		{"Leases", leaseTests()},
		{"Entities", append(append(entityTests(), entityRoutingTests()...), entitySuspendTests()...)},
		{"ConcurrentCreate", concurrentCreateTests()},
		{"StoreClock", storeClockTests()},
		{"RequestWindow", windowTests()},
		{"EntityWindow", entityWindowTests()},
		{"Fleet", fleetTests()},
		{"StartMarks", startMarkTests()},
		{"PreciseAtMostOnce", preciseTests()},
		{"InFlight", append(inFlightTests(), sdkInFlightTests()...)},
	}
	for _, g := range groups {
		// The group itself is not parallel: t.Run returns only after all of
		// its parallel subtests have, so Exercise returns after the whole run.
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, s.setup(t))
				})
			}
		})
	}
}

// test is one conformance check.
type test struct {
	name string
	run  func(t *testing.T, e *env)
}

type suite struct {
	ctx        context.Context
	newBackend func(t *testing.T) backend.Backend
	opts       Options
	t0         time.Time
}

// setup gives a test its own backend.
func (s *suite) setup(t *testing.T) *env {
	b := s.newBackend(t)
	if b == nil {
		t.Fatal("newBackend returned nil")
	}
	e := &env{t: t, ctx: s.ctx, b: b, opts: s.opts, t0: s.t0, suite: s}
	e.closeOnCleanup(b)
	return e
}

// env is what one test works with: its backend and the synthetic clock.
type env struct {
	t    *testing.T
	ctx  context.Context
	b    backend.Backend
	opts Options
	// t0 is the synthetic "now" at which every test begins. Later times are
	// e.at(d); leases expire and timers fire by passing a later Now.
	t0 time.Time
	// suite makes more backends for tests that need several.
	suite *suite
}

func (e *env) closeOnCleanup(b backend.Backend) {
	e.t.Cleanup(func() {
		if err := b.Close(); err != nil && !errors.Is(err, backend.ErrClosed) {
			e.t.Errorf("Close: %v", err)
		}
	})
}

// at is the synthetic time d after t0.
func (e *env) at(d time.Duration) time.Time { return e.t0.Add(d) }

// fresh returns another new backend, closed when the test ends.
func (e *env) fresh(t *testing.T) backend.Backend {
	b := e.suite.newBackend(t)
	e.closeOnCleanup(b)
	return b
}

// reopen closes the store and opens it again, or skips the test for a
// backend without Options.Reopen.
func (e *env) reopen() {
	e.t.Helper()
	if e.opts.Reopen == nil {
		e.t.Skip("backend is not persistent (Options.Reopen is nil)")
	}
	e.b = e.opts.Reopen(e.t, e.b)
	if e.b == nil {
		e.t.Fatal("Reopen returned nil")
	}
	e.closeOnCleanup(e.b)
}

// needReopen skips a test up front when the backend cannot be reopened.
func (e *env) needReopen() {
	e.t.Helper()
	if e.opts.Reopen == nil {
		e.t.Skip("backend is not persistent (Options.Reopen is nil)")
	}
}
