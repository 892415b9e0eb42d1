package backendtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// preciseTests check the engine's side of precise at-most-once: a delivery
// is a possible duplicate only when an earlier delivery may have started
// the code. Deliveries handed back unstarted (a worker without the code, a
// worker that stopped) do not count; one whose code ran does.
func preciseTests() []test {
	return []test{
		{"HandBackIsNotDuplicate", testHandBackNotDuplicate},
		{"EntityHandBackIsNotDuplicate", testEntityHandBackNotDuplicate},
		{"StopReleasesClaimedUnstarted", testStopReleasesClaimed},
		{"StopKeepsRenewingRunningCode", testStopKeepsRenewing},
		{"MayBeDuplicateAfterCodeRan", testMayBeDuplicateAfterCodeRan},
	}
}

// ignoreNames is a worker's store that drops ClaimParams.ActivityNames, as
// a worker of an older build claims: every activity, registered or not.
// It counts the deliveries handed back unstarted. It embeds
// backend.Backend only: its worker claims one item at a time, without
// eager dispatch.
type ignoreNames struct {
	backend.Backend
	released atomic.Int32
	steps    atomic.Int32 // entity batches handed back
}

func (b *ignoreNames) ClaimActivity(ctx context.Context, p *backend.ClaimParams) (*backend.ActivityWorkItem, error) {
	q := *p
	q.ActivityNames = nil
	return b.Backend.ClaimActivity(ctx, &q)
}

func (b *ignoreNames) AbandonActivity(ctx context.Context, p *backend.AbandonParams) error {
	err := b.Backend.AbandonActivity(ctx, p)
	if err == nil && p.Unstarted {
		b.released.Add(1)
	}
	return err
}

func (b *ignoreNames) AbandonOrchestrationStep(ctx context.Context, p *backend.AbandonParams) error {
	err := b.Backend.AbandonOrchestrationStep(ctx, p)
	if err == nil && strings.HasPrefix(p.ID, "@") {
		b.steps.Add(1)
	}
	return err
}

// chargeOnce registers Pay, which calls Charge at most once (Fail), and,
// when calls is not nil, Charge, which counts its runs and reports what
// its context says.
func chargeOnce(calls *atomic.Int32, seen chan<- string) func(r *duro.Registry) {
	return func(r *duro.Registry) {
		duro.RegisterOrchestration(r, "Pay", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			var out string
			err := ctx.CallActivity("Charge", 1, duro.CallOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateFail}).Await(&out)
			var dup *duro.PossibleDuplicateError
			if errors.As(err, &dup) {
				return fmt.Sprintf("duplicate attempt=%d", dup.Attempt), nil
			}
			return out, err
		})
		if calls == nil {
			// An older build: another activity, not Charge.
			duro.RegisterActivity(r, "Ship", func(ctx duro.ActivityContext, _ int) (string, error) { return "shipped", nil })
			return
		}
		duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
			calls.Add(1)
			if seen != nil {
				seen <- fmt.Sprintf("attempt=%d maybeDuplicate=%v", ctx.Attempt(), ctx.MayBeDuplicate())
			}
			return "charged", nil
		}, duro.ActivityOptions{Guarantee: duro.AtMostOnce})
	}
}

// testHandBackNotDuplicate: a worker that lacks Charge (an older build,
// which claims every activity) claims it and hands it back; the worker
// that has it then runs the code, once, not as a possible duplicate.
func testHandBackNotDuplicate(t *testing.T, e *env) {
	ctx := bg(t)
	old := &ignoreNames{Backend: e.b}
	oldEnv := newSDKEnv(t, old, chargeOnce(nil, nil))
	id, err := oldEnv.client.Start(ctx, "Pay", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !poll(20*time.Second, func() bool { return old.released.Load() > 0 }) {
		t.Fatal("the worker without Charge never handed it back")
	}
	stopWorker(t, oldEnv)
	var calls atomic.Int32
	seen := make(chan string, 10)
	newSDKEnv(t, e.b, chargeOnce(&calls, seen))
	waitStatus(t, oldEnv.client, id, duro.StatusCompleted)
	inst, err := oldEnv.client.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustOutput[string](t, inst); got != "charged" || calls.Load() != 1 {
		t.Fatalf("output %q, Charge ran %d times; want \"charged\", once (%d hand-backs by the worker without it)",
			got, calls.Load(), old.released.Load())
	}
	if got := <-seen; !strings.HasSuffix(got, "maybeDuplicate=false") || strings.HasPrefix(got, "attempt=1 ") {
		t.Fatalf("the code saw %s; want an attempt above 1 that is not a possible duplicate", got)
	}
}

// testEntityHandBackNotDuplicate: a worker without the wallet entity
// claims its batch and hands it back; the worker that has it runs the
// at-most-once debit once, not as a possible duplicate.
func testEntityHandBackNotDuplicate(t *testing.T, e *env) {
	ctx := bg(t)
	wallet := duro.EntityID{Name: "wallet", Key: "w"}
	debit := func(r *duro.Registry) {
		duro.RegisterOrchestration(r, "Debit", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			var v int
			err := ctx.CallEntity(wallet, "debit", 5).Await(&v)
			var dup *duro.PossibleDuplicateError
			if errors.As(err, &dup) {
				return fmt.Sprintf("duplicate attempt=%d", dup.Attempt), nil
			}
			return fmt.Sprint(v), err
		})
	}
	old := &ignoreNames{Backend: e.b}
	oldEnv := newSDKEnv(t, old, debit)
	id, err := oldEnv.client.Start(ctx, "Debit", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !poll(20*time.Second, func() bool { return old.steps.Load() > 0 }) {
		t.Fatal("the worker without the wallet entity never handed its batch back")
	}
	stopWorker(t, oldEnv)
	var mu sync.Mutex
	var seen []string
	newSDKEnv(t, e.b, func(r *duro.Registry) {
		debit(r)
		duro.RegisterEntityOperation(r, "wallet", "debit", func(ctx duro.EntityContext, s *counter, n int) (int, error) {
			mu.Lock()
			seen = append(seen, fmt.Sprintf("attempt=%d maybeDuplicate=%v", ctx.Attempt(), ctx.MayBeDuplicate()))
			mu.Unlock()
			s.Value -= n
			return s.Value, nil
		}, duro.OperationOptions{Guarantee: duro.AtMostOnce})
	})
	waitStatus(t, oldEnv.client, id, duro.StatusCompleted)
	inst, err := oldEnv.client.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := mustOutput[string](t, inst); got != "-5" || len(seen) != 1 || !strings.HasSuffix(seen[0], "maybeDuplicate=false") {
		t.Fatalf("output %q, debit ran as %v; want -5, once, not a possible duplicate", got, seen)
	}
}

// holdClaims is a worker's store whose activity claims, once they found
// a task, return only when the claim's context ends: when the worker's
// Stop has begun. The deliveries it returns were claimed before Stop and
// have not started.
type holdClaims struct {
	backend.Backend
	claimed chan struct{} // closed on the first claim that found a task
	once    sync.Once
}

func (b *holdClaims) ClaimActivity(ctx context.Context, p *backend.ClaimParams) (*backend.ActivityWorkItem, error) {
	wi, err := b.Backend.ClaimActivity(ctx, p)
	if wi != nil {
		b.once.Do(func() { close(b.claimed) })
		<-ctx.Done()
	}
	return wi, err
}

// testStopReleasesClaimed: a delivery claimed as Stop begins is released
// unstarted: the stopping worker does not run it, and the next worker
// runs the at-most-once code, not as a possible duplicate.
func testStopReleasesClaimed(t *testing.T, e *env) {
	ctx := bg(t)
	held := &holdClaims{Backend: e.b, claimed: make(chan struct{})}
	var first, second atomic.Int32
	seen := make(chan string, 10)
	stopping := newSDKEnv(t, held, chargeOnce(&first, seen))
	id, err := stopping.client.Start(ctx, "Pay", nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.claimed:
	case <-ctx.Done():
		t.Fatal("Charge was never claimed")
	}
	stopWorker(t, stopping)
	if n := first.Load(); n != 0 {
		t.Fatalf("the stopping worker ran Charge %d times; a delivery claimed as Stop began must be released", n)
	}
	if n := stopping.worker.Stats().ActivitiesReleased; n != 1 {
		t.Fatalf("the stopping worker's ActivitiesReleased = %d, want 1", n)
	}
	newSDKEnv(t, e.b, chargeOnce(&second, seen))
	waitStatus(t, stopping.client, id, duro.StatusCompleted)
	inst, err := stopping.client.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustOutput[string](t, inst); got != "charged" || second.Load() != 1 {
		t.Fatalf("output %q, Charge ran %d times on the next worker; want \"charged\", once", got, second.Load())
	}
	if got := <-seen; got != "attempt=2 maybeDuplicate=false" {
		t.Fatalf("the code saw %s; want attempt=2 maybeDuplicate=false", got)
	}
}

// testStopKeepsRenewing: Stop waits for code that runs longer than its
// lease, renewing the lease meanwhile, and commits its result: nothing is
// delivered again.
func testStopKeepsRenewing(t *testing.T, e *env) {
	ctx := bg(t)
	running := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	env := newSDKEnvOpts(t, e.b, &duro.WorkerOptions{ActivityLeaseDuration: 300 * time.Millisecond}, func(r *duro.Registry) {
		chargeOnce(nil, nil)(r)
		duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
			calls.Add(1)
			close(running)
			<-release
			return fmt.Sprintf("charged on attempt %d", ctx.Attempt()), nil
		}, duro.ActivityOptions{Guarantee: duro.AtMostOnce})
	})
	id, err := env.client.Start(ctx, "Pay", nil)
	if err != nil {
		t.Fatal(err)
	}
	<-running
	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stopped <- env.worker.Stop(sctx)
	}()
	// Three lease lengths pass while Stop waits; a store without renewals
	// would have let another delivery claim the task by then.
	timer := time.NewTimer(time.Second)
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while the code ran", err)
	case <-timer.C:
	}
	wi, err := e.b.ClaimActivity(ctx, &backend.ClaimParams{Owner: "probe", LeaseDuration: time.Minute})
	if err != nil || wi != nil {
		t.Fatalf("a probe claimed %+v (%v) while the stopping worker ran the code; its lease must be renewed", wi, err)
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// The result committed before Stop returned; a new worker finishes
	// the orchestration without running Charge again.
	next := newSDKEnv(t, e.b, chargeOnce(&calls, nil))
	waitStatus(t, next.client, id, duro.StatusCompleted)
	inst, err := next.client.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustOutput[string](t, inst); got != "charged on attempt 1" || calls.Load() != 1 {
		t.Fatalf("output %q, Charge ran %d times; want the first attempt's result, once", got, calls.Load())
	}
}

// testMayBeDuplicateAfterCodeRan: when the code of an at-least-once
// activity started and its worker stopped before it finished, the next
// delivery is told it may be a duplicate; a delivery released unstarted
// before it is not counted.
func testMayBeDuplicateAfterCodeRan(t *testing.T, e *env) {
	ctx := bg(t)
	seen := make(chan string, 10)
	note := func(block bool) func(r *duro.Registry) {
		return func(r *duro.Registry) {
			duro.RegisterOrchestration(r, "Notify", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
				var out string
				err := ctx.CallActivity("Note", 1).Await(&out)
				return out, err
			})
			duro.RegisterActivity(r, "Note", func(ctx duro.ActivityContext, _ int) (string, error) {
				seen <- fmt.Sprintf("attempt=%d maybeDuplicate=%v", ctx.Attempt(), ctx.MayBeDuplicate())
				if block {
					<-ctx.Done()
					return "", ctx.Err()
				}
				return "noted", nil
			})
		}
	}
	gate := &claimGate{Backend: e.b}
	first := newSDKEnv(t, gate, note(true))
	id, err := first.client.Start(ctx, "Notify", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != "attempt=1 maybeDuplicate=false" {
		t.Fatalf("first delivery saw %s", got)
	}
	stopAbandoning(ctx, first, gate) // the code gives up: handed back, started
	newSDKEnv(t, e.b, note(false))
	waitStatus(t, first.client, id, duro.StatusCompleted)
	if got := <-seen; got != "attempt=2 maybeDuplicate=true" {
		t.Fatalf("the delivery after code that started saw %s; want attempt=2 maybeDuplicate=true", got)
	}
}
