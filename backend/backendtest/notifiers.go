package backendtest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// finishNotifierTests check backend.FinishNotifier: a watch fires when a
// step that ends the instance commits, and Client.Wait returns on it
// rather than on a poll.
func finishNotifierTests() []test {
	return []test{
		{"FiresOnCompleted", func(t *testing.T, e *env) { testFinishFires(t, e, backend.StatusCompleted) }},
		{"FiresOnFailed", func(t *testing.T, e *env) { testFinishFires(t, e, backend.StatusFailed) }},
		{"FiresOnTerminated", func(t *testing.T, e *env) { testFinishFires(t, e, backend.StatusTerminated) }},
		{"FiresAfterContinueAsNew", testFinishAfterContinueAsNew},
		{"FiresOnClose", testFinishOnClose},
		{"ClientWaitWakes", testClientWaitWakes},
		{"ClientWaitCancelReleases", testClientWaitCancelReleases},
	}
}

// finishNotifier returns the backend's FinishNotifier or skips the test.
func (e *env) finishNotifier() backend.FinishNotifier {
	e.t.Helper()
	n, ok := e.b.(backend.FinishNotifier)
	if !ok {
		e.t.Skip("backend does not implement backend.FinishNotifier")
	}
	return n
}

// wantFired fails unless ch is closed within a few seconds of real time.
func (e *env) wantFired(ch <-chan struct{}, after string) {
	e.t.Helper()
	if ch == nil {
		e.t.Fatalf("WatchFinish returned a nil channel (no watch) before %s", after)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		e.t.Fatalf("WatchFinish channel not closed within 10s after %s", after)
	}
}

// watching is what the SQL backends report of their live watches.
type watching interface{ WatchingFinish() int }

func testFinishFires(t *testing.T, e *env, status backend.Status) {
	n := e.finishNotifier()
	e.start("a", nil)
	e.create("b", nil)
	fired, stop := n.WatchFinish("a")
	defer stop()
	wi := e.claimStep("b", e.at(time.Minute))
	e.commit(wi, e.at(time.Minute), func(p *backend.CompleteOrchestrationStepParams) { p.Status = backend.StatusRunning })
	// a is still running: whatever fired, the watch of a must still fire
	// on a's own finish (a spurious wake-up is allowed, a missed one not).
	e.enqueue(raised("a", "m", "m"))
	wi = e.claimStep("a", e.at(2*time.Minute))
	e.commit(wi, e.at(2*time.Minute), func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = status
		if status == backend.StatusFailed {
			p.Failure = &backend.Failure{Message: "boom"}
		}
	})
	e.wantFired(fired, "a step that ended the instance "+string(status))
	stop()
	if w, ok := e.b.(watching); ok {
		if got := w.WatchingFinish(); got != 0 {
			t.Fatalf("WatchingFinish = %d after the watch fired and was stopped, want 0", got)
		}
	}
}

// testFinishAfterContinueAsNew: a watch taken before a continue-as-new
// still sees the new execution's finish (re-watching after a spurious
// wake-up, as Client.Wait does).
func testFinishAfterContinueAsNew(t *testing.T, e *env) {
	n := e.finishNotifier()
	e.create("a", nil)
	fired, stop := n.WatchFinish("a")
	defer func() { stop() }()
	wi := e.claimStep("a", e.t0)
	e.commit(wi, e.t0, func(p *backend.CompleteOrchestrationStepParams) {
		p.ContinueAsNew = &backend.ContinueAsNew{NewExecutionID: "a-e2"}
	})
	select {
	case <-fired: // allowed: the waiter reads the instance and watches again
		stop()
		fired, stop = n.WatchFinish("a")
	default:
	}
	inst, err := e.b.GetInstance(e.ctx, "a")
	e.noErr("GetInstance", err)
	if inst.Status.IsTerminal() {
		t.Fatalf("status after continue-as-new = %s, want a live status", inst.Status)
	}
	wi = e.claimStep("a", e.at(time.Minute))
	e.commit(wi, e.at(time.Minute), func(p *backend.CompleteOrchestrationStepParams) { p.Status = backend.StatusCompleted })
	e.wantFired(fired, "the new execution completed")
}

func testFinishOnClose(t *testing.T, e *env) {
	n := e.finishNotifier()
	e.create("a", nil)
	fired, stop := n.WatchFinish("a")
	defer stop()
	if err := e.b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	e.wantFired(fired, "Close")
	after, stop2 := n.WatchFinish("a")
	defer stop2()
	e.wantFired(after, "Close (a watch taken after it)")
}

// countingWatches wraps a backend and counts the watches taken through it
// that are neither fired nor stopped, and the instance reads.
type countingWatches struct {
	backend.Backend
	fn   backend.FinishNotifier
	live atomic.Int64
	gets atomic.Int64
	// parked receives after a read that found the instance live while a
	// watch was held: the waiter is about to block on the watch.
	parked chan struct{}
}

func newCountingWatches(t *testing.T, be backend.Backend) *countingWatches {
	fn, ok := be.(backend.FinishNotifier)
	if !ok {
		t.Skip("backend does not implement backend.FinishNotifier")
	}
	return &countingWatches{Backend: be, fn: fn, parked: make(chan struct{}, 100)}
}

func (c *countingWatches) WatchFinish(id string) (<-chan struct{}, func()) {
	ch, stop := c.fn.WatchFinish(id)
	c.live.Add(1)
	var once sync.Once
	return ch, func() { once.Do(func() { c.live.Add(-1); stop() }) }
}

func (c *countingWatches) GetInstance(ctx context.Context, id string) (*backend.Instance, error) {
	inst, err := c.Backend.GetInstance(ctx, id)
	c.gets.Add(1)
	if err == nil && !inst.Status.IsTerminal() && c.live.Load() > 0 {
		select {
		case c.parked <- struct{}{}:
		default:
		}
	}
	return inst, err
}

// waitParked waits until the waiter has read the instance while holding a
// watch, or fails the test.
func (c *countingWatches) waitParked(t *testing.T) {
	t.Helper()
	select {
	case <-c.parked:
	case <-time.After(30 * time.Second):
		t.Fatalf("Client.Wait never read the instance while watching it (%d reads)", c.gets.Load())
	}
}

// testClientWaitWakes: with a fallback poll of an hour, Client.Wait
// returns when the instance finishes, having read it only around the
// finish: the wake-up comes from the watch.
func testClientWaitWakes(t *testing.T, e *env) {
	cw := newCountingWatches(t, e.b)
	env := newSDKEnv(t, e.b, func(r *duro.Registry) {
		duro.RegisterActivity(r, "Echo", func(_ duro.ActivityContext, s string) (string, error) { return s, nil })
		duro.RegisterOrchestration(r, "Gate", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			if err := ctx.WaitForEvent("go", -1).Await(nil); err != nil {
				return "", err
			}
			var s string
			err := ctx.CallActivity("Echo", "done").Await(&s)
			return s, err
		})
	})
	client := duro.NewClient(cw, &duro.ClientOptions{WaitPollInterval: time.Hour})
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	id, err := client.Start(ctx, "Gate", nil)
	e.noErr("Start", err)
	type result struct {
		inst *duro.Instance
		err  error
	}
	done := make(chan result, 1)
	go func() {
		inst, err := client.Wait(ctx, id)
		done <- result{inst, err}
	}()
	cw.waitParked(t)
	before := cw.gets.Load()
	e.noErr("RaiseEvent", env.client.RaiseEvent(ctx, id, "go", nil))
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("Client.Wait did not return within 30s of the instance's finish (fallback poll: 1h; %d reads)", cw.gets.Load())
	}
	if r.err != nil {
		t.Fatalf("Wait: %v", r.err)
	}
	if got := mustOutput[string](t, r.inst); got != "done" {
		t.Fatalf("output %q, want done", got)
	}
	// Between raising the event and returning, Wait read the instance
	// once per wake-up of its watch: at most once per step the instance
	// committed after the event (the event's step, the activity result's
	// step) plus the last read.
	if after := cw.gets.Load() - before; after > 3 {
		t.Fatalf("Wait read the instance %d times after the event: it polled instead of waking on the finish", after)
	}
	if n := cw.live.Load(); n != 0 {
		t.Fatalf("%d watches live after Wait returned, want 0", n)
	}
	if w, ok := e.b.(watching); ok {
		if got := w.WatchingFinish(); got != 0 {
			t.Fatalf("backend WatchingFinish = %d after Wait returned, want 0", got)
		}
	}
}

// testClientWaitCancelReleases: a Wait whose ctx ends returns the ctx's
// error and leaves no watch behind.
func testClientWaitCancelReleases(t *testing.T, e *env) {
	cw := newCountingWatches(t, e.b)
	client := duro.NewClient(cw, &duro.ClientOptions{WaitPollInterval: time.Hour})
	e.create("a", nil) // no worker: it stays Pending
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() {
		_, err := client.Wait(ctx, "a")
		done <- err
	}()
	cw.waitParked(t)
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Client.Wait did not return within 30s of its ctx's cancel")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel: %v, want context.Canceled", err)
	}
	if n := cw.live.Load(); n != 0 {
		t.Fatalf("%d watches live after a cancelled Wait, want 0", n)
	}
	if w, ok := e.b.(watching); ok {
		if got := w.WatchingFinish(); got != 0 {
			t.Fatalf("backend WatchingFinish = %d after a cancelled Wait, want 0", got)
		}
	}
}
