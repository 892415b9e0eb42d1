package backendtest

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

func attemptTests() []test {
	return []test{
		{"ActivityIncrementsAcrossLeaseExpiry", testActivityAttemptsExpiry},
		{"ActivityIncrementsAcrossAbandon", testActivityAttemptsAbandon},
		{"ActivityIncrementsAcrossReopen", testActivityAttemptsReopen},
		{"StepIncrementsAcrossLeaseExpiry", testStepAttemptsExpiry},
		{"StepIncrementsAcrossAbandon", testStepAttemptsAbandon},
		{"StepIncrementsAcrossReopen", testStepAttemptsReopen},
		{"StepAttemptsGrowAcrossSteps", testStepAttemptsAcrossSteps},
		{"StepDeliveriesCountTriesOfOneStep", testStepDeliveries},
		{"StepAbandonRetryAt", testStepAbandonRetryAt},
		{"ConcurrentActivityClaimsDistinct", testConcurrentActivityClaims},
		{"ConcurrentStepClaimsDistinct", testConcurrentStepClaims},
	}
}

// wantActivityAttempt fails unless wi is delivery n, whose predecessor was
// claimed at prev (zero for the first).
func (e *env) wantActivityAttempt(wi *backend.ActivityWorkItem, n int, prev time.Time) {
	e.t.Helper()
	if wi.Attempt != n {
		e.t.Fatalf("claim of %q: Attempt = %d, want %d", wi.Task.ID, wi.Attempt, n)
	}
	e.wantTime(fmt.Sprintf("attempt %d: PreviousDeliveryAt", n), wi.PreviousDeliveryAt, prev)
}

// wantStepAttempt fails unless wi is delivery n of an instance's first step:
// its Attempt and its Deliveries are both n.
func (e *env) wantStepAttempt(wi *backend.OrchestrationWorkItem, n int64) {
	e.t.Helper()
	if wi.Attempt != n || int64(wi.Deliveries) != n {
		e.t.Fatalf("claim of %q: Attempt %d, Deliveries %d; want %d and %d", wi.Instance.ID, wi.Attempt, wi.Deliveries, n, n)
	}
}

func testActivityAttemptsExpiry(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	id := tasks[0].ID
	e.wantActivityAttempt(e.claimActivity(id, e.t0), 1, time.Time{})
	e.noActivity(e.at(30*time.Second), "attempt 1 holds a live lease")
	e.wantActivityAttempt(e.claimActivity(id, e.at(2*time.Minute)), 2, e.t0)
	e.noActivity(e.at(2*time.Minute+30*time.Second), "attempt 2 holds a live lease")
	e.wantActivityAttempt(e.claimActivity(id, e.at(4*time.Minute)), 3, e.at(2*time.Minute))
}

func testActivityAttemptsAbandon(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	id := tasks[0].ID
	var prev time.Time
	for n := 1; n <= 3; n++ {
		now := e.at(time.Duration(n) * time.Second)
		wi := e.claimActivity(id, now)
		e.wantActivityAttempt(wi, n, prev)
		e.noErr("AbandonActivity", e.b.AbandonActivity(e.ctx, &backend.AbandonParams{ID: id, Attempt: int64(n)}))
		prev = now
	}
}

func testActivityAttemptsReopen(t *testing.T, e *env) {
	e.needReopen()
	_, tasks := e.startWithTasks("a", 1)
	id := tasks[0].ID
	e.wantActivityAttempt(e.claimActivity(id, e.t0), 1, time.Time{})
	e.reopen()
	e.noActivity(e.at(30*time.Second), "attempt 1's lease outlives the reopen")
	e.wantActivityAttempt(e.claimActivity(id, e.at(2*time.Minute)), 2, e.t0)
	e.reopen()
	e.wantActivityAttempt(e.claimActivity(id, e.at(4*time.Minute)), 3, e.at(2*time.Minute))
}

func testStepAttemptsExpiry(t *testing.T, e *env) {
	e.create("a", nil)
	e.wantStepAttempt(e.claimStep("a", e.t0), 1)
	e.noStep(e.at(30*time.Second), "attempt 1 holds a live lease")
	e.wantStepAttempt(e.claimStep("a", e.at(2*time.Minute)), 2)
	e.noStep(e.at(2*time.Minute+30*time.Second), "attempt 2 holds a live lease")
	e.wantStepAttempt(e.claimStep("a", e.at(4*time.Minute)), 3)
}

func testStepAttemptsAbandon(t *testing.T, e *env) {
	e.create("a", nil)
	for n := int64(1); n <= 3; n++ {
		wi := e.claimStep("a", e.at(time.Duration(n)*time.Second))
		e.wantStepAttempt(wi, n)
		e.wantMessages(wi, backend.StartMessageID("a", "a-e1"))
		e.noErr("AbandonOrchestrationStep", e.b.AbandonOrchestrationStep(e.ctx, &backend.AbandonParams{ID: "a", Attempt: n}))
	}
}

func testStepAttemptsReopen(t *testing.T, e *env) {
	e.needReopen()
	e.create("a", nil)
	e.wantStepAttempt(e.claimStep("a", e.t0), 1)
	e.reopen()
	e.noStep(e.at(30*time.Second), "attempt 1's lease outlives the reopen")
	e.wantStepAttempt(e.claimStep("a", e.at(2*time.Minute)), 2)
	e.reopen()
	e.wantStepAttempt(e.claimStep("a", e.at(4*time.Minute)), 3)
}

// testStepAttemptsAcrossSteps checks that a later step of an instance never
// reuses the attempt number of an earlier one: the number is the fencing
// token of the instance's lease, and a delivery of an old step that wakes up
// late must not match a delivery of the current one.
func testStepAttemptsAcrossSteps(t *testing.T, e *env) {
	e.create("a", nil)
	var seen []int64
	now := e.t0
	for step := range 4 {
		if step > 0 {
			e.enqueue(raised("a", fmt.Sprintf("e%d", step), "e"))
		}
		wi := e.claimStep("a", now)
		seen = append(seen, wi.Attempt)
		if step%2 == 0 { // let this delivery lapse and take the step again
			now = now.Add(2 * lease)
			wi = e.claimStep("a", now)
			seen = append(seen, wi.Attempt)
		}
		e.commit(wi, now, nil)
		now = now.Add(time.Second)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("step attempts of one instance over four steps: %v, want them to grow", seen)
		}
	}
	if seen[0] != 1 {
		t.Fatalf("first claim of the instance: Attempt %d, want 1", seen[0])
	}
}

// testStepDeliveries: Deliveries counts the claims since the instance's last
// committed step, whether earlier ones lapsed or were abandoned.
func testStepDeliveries(t *testing.T, e *env) {
	e.create("a", nil)
	now := e.t0
	for step := range 3 {
		if step > 0 {
			e.enqueue(raised("a", fmt.Sprint("e", step), "e"))
		}
		var wi *backend.OrchestrationWorkItem
		for n := 1; n <= 3; n++ {
			wi = e.claimStep("a", now)
			if wi.Deliveries != n {
				t.Fatalf("step %d, try %d: Deliveries = %d (Attempt %d), want %d", step+1, n, wi.Deliveries, wi.Attempt, n)
			}
			if n == 3 {
				break
			}
			if n == 1 { // the first try lapses, the second is abandoned
				now = now.Add(2 * lease)
				continue
			}
			e.noErr("AbandonOrchestrationStep", e.b.AbandonOrchestrationStep(e.ctx, &backend.AbandonParams{ID: "a", Attempt: wi.Attempt}))
		}
		e.commit(wi, now, nil)
	}
}

func testStepAbandonRetryAt(t *testing.T, e *env) {
	e.create("a", nil)
	wi := e.claimStep("a", e.t0)
	retry := e.at(10 * time.Minute)
	e.noErr("AbandonOrchestrationStep", e.b.AbandonOrchestrationStep(e.ctx, &backend.AbandonParams{ID: "a", Attempt: wi.Attempt, RetryAt: retry}))
	e.noStep(e.at(2*time.Minute), "abandoned with RetryAt in 10m, though the lease has lapsed")
	e.noStep(retry.Add(-time.Millisecond), "abandoned with RetryAt in 1ms")
	e.wantStepAttempt(e.claimStep("a", retry), 2)
}

// hammer runs claim from workers goroutines, rounds times each, with a
// shared synthetic clock that moves two leases per call, so that most claims
// find the previous lease lapsed. It returns how often each attempt number
// was handed out, and fails on any error.
func (e *env) hammer(claim func(worker int, now time.Time) (attempt int64, ok bool, err error)) map[int64]int {
	e.t.Helper()
	const workers, rounds = 8, 25
	var (
		clock atomic.Int64
		mu    sync.Mutex
		seen  = map[int64]int{}
		errs  []error
		wg    sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for range rounds {
				now := e.t0.Add(time.Duration(clock.Add(1)) * 2 * lease)
				n, ok, err := claim(w, now)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if ok {
					seen[n]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		e.t.Fatalf("%d of %d concurrent claims failed; first: %v", len(errs), workers*rounds, errs[0])
	}
	return seen
}

// wantDistinct fails unless the attempts handed out are exactly 1..len(seen),
// each once.
func (e *env) wantDistinct(seen map[int64]int) {
	e.t.Helper()
	if len(seen) == 0 {
		e.t.Fatal("no concurrent claim succeeded")
	}
	var dup []int64
	for n, c := range seen {
		if c > 1 {
			dup = append(dup, n)
		}
	}
	slices.Sort(dup)
	if len(dup) > 0 {
		e.t.Fatalf("attempt numbers handed out more than once: %v", dup)
	}
	for n := int64(1); n <= int64(len(seen)); n++ {
		if seen[n] == 0 {
			e.t.Fatalf("attempts handed out: %v; want exactly 1..%d (missing %d)", keys64(seen), len(seen), n)
		}
	}
}

func keys64(m map[int64]int) []int64 {
	var ks []int64
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func testConcurrentActivityClaims(t *testing.T, e *env) {
	e.startWithTasks("a", 1)
	seen := e.hammer(func(w int, now time.Time) (int64, bool, error) {
		wi, err := e.b.ClaimActivity(e.ctx, &backend.ClaimParams{Owner: fmt.Sprint("worker-", w), LeaseDuration: lease, Now: now})
		if err != nil || wi == nil {
			return 0, false, err
		}
		return int64(wi.Attempt), true, nil
	})
	e.wantDistinct(seen)
	next := e.tryClaimActivity(e.at(24 * time.Hour))
	if next == nil || next.Attempt != len(seen)+1 {
		t.Fatalf("claim after %d concurrent claims: %+v, want attempt %d", len(seen), next, len(seen)+1)
	}
}

func testConcurrentStepClaims(t *testing.T, e *env) {
	e.create("a", nil)
	seen := e.hammer(func(w int, now time.Time) (int64, bool, error) {
		wi, err := e.b.ClaimOrchestrationStep(e.ctx, &backend.ClaimParams{Owner: fmt.Sprint("worker-", w), LeaseDuration: lease, Now: now})
		if err != nil || wi == nil {
			return 0, false, err
		}
		return wi.Attempt, true, nil
	})
	e.wantDistinct(seen)
	next := e.tryClaimStep(e.at(24 * time.Hour))
	if next == nil || next.Attempt != int64(len(seen))+1 {
		t.Fatalf("claim after %d concurrent claims: %+v, want attempt %d", len(seen), next, len(seen)+1)
	}
}
