package backendtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// storeClockTests check that lease times, and the delays of work handed
// back, come from the store's clock and never from a worker's. They call the
// backend as the SDK's worker does: no Now in ClaimParams and
// RenewLeaseParams, a RetryAfter (not a RetryAt) when it hands work back,
// but its own clock as the Now of a step (the step's time, recorded in
// history). A worker whose clock is off must still hold every lease for
// LeaseDuration by the store's clock. Time is the real clock here, not the
// suite's synthetic t0: later times are passed as Now to claims that stand
// for other workers looking later.
func storeClockTests() []test {
	return []test{
		{"EagerLeaseIgnoresTheStepsClock", testEagerLeaseStoreClock},
		{"RenewalsCountFromTheStoreClock", testRenewStoreClock},
		{"RetryAfterCountsFromTheStoreClock", testRetryAfterStoreClock},
	}
}

// skews are the worker clocks modelled: two minutes behind the store's,
// and two minutes ahead.
var skews = []time.Duration{-2 * time.Minute, 2 * time.Minute}

// clockSlack is how far the store's clock may read from the test's: a store
// that keeps coarser times, a database server's clock.
const clockSlack = time.Second

// workerClaim are the claim params of an SDK worker: no Now.
func workerClaim(owner string) *backend.ClaimParams {
	return &backend.ClaimParams{Owner: owner, LeaseDuration: lease}
}

// wantLeaseFrom fails unless got is lease after some instant of [lo, hi]
// (the test's clock around the call that took the lease), within clockSlack.
func (e *env) wantLeaseFrom(what string, got, lo, hi time.Time) {
	e.t.Helper()
	if got.Before(lo.Add(lease-clockSlack)) || got.After(hi.Add(lease+clockSlack)) {
		e.t.Fatalf("%s = %s, want %s after the call by the store's clock (between %s and %s)",
			what, got.Format(time.RFC3339Nano), lease, lo.Add(lease).Format(time.RFC3339Nano), hi.Add(lease).Format(time.RFC3339Nano))
	}
}

// createNow creates instance id with the backend's clock (Now zero, as the
// client does) and claims its first step as a worker does.
func (e *env) createNow(id string) *backend.OrchestrationWorkItem {
	e.t.Helper()
	e.noErr("CreateInstance(Now zero)", e.b.CreateInstance(e.ctx, &backend.CreateInstanceParams{ID: id, Name: orchName, ExecutionID: id + "-e1"}))
	wi, err := e.b.ClaimOrchestrationStep(e.ctx, workerClaim("worker"))
	e.noErr("ClaimOrchestrationStep(Now zero)", err)
	if wi == nil || wi.Instance.ID != id {
		e.t.Fatalf("ClaimOrchestrationStep(Now zero) = %+v, want the step of %q", wi, id)
	}
	return wi
}

// scheduleOne is the params of a step of wi at the worker's time now that
// schedules activity task 1.
func scheduleOne(wi *backend.OrchestrationWorkItem, now time.Time) (*backend.CompleteOrchestrationStepParams, *backend.ActivityTask) {
	p := stepParams(wi, now)
	tk := task(&backend.CreateInstanceParams{ID: wi.Instance.ID, ExecutionID: wi.Instance.ExecutionID}, 1)
	p.ActivityTasks = []*backend.ActivityTask{tk}
	p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventTaskScheduled, Timestamp: now, TaskID: tk.TaskID, Name: tk.Name, Input: tk.Input})
	return p, tk
}

// testEagerLeaseStoreClock: a worker whose clock is skewed commits a step
// (its Now is the worker's clock) that claims the step's activity eagerly
// with the worker's claim params. The lease runs LeaseDuration from the
// commit by the store's clock: another worker does not get the task at
// once (the lease would have lapsed already with a clock two minutes
// behind), nor only after LeaseDuration plus the skew.
func testEagerLeaseStoreClock(t *testing.T, e *env) {
	claimer := e.eager()
	for n, skew := range skews {
		wi := e.createNow(fmt.Sprintf("w%d", n))
		p, tk := scheduleOne(wi, time.Now().Add(skew))
		before := time.Now()
		got, err := claimer.CompleteOrchestrationStepClaim(e.ctx, p, workerClaim("worker"), 1)
		after := time.Now()
		e.noErr(fmt.Sprintf("worker clock %s: CompleteOrchestrationStepClaim", skew), err)
		if len(got) != 1 || got[0].Task.ID != tk.ID || got[0].Attempt != 1 {
			t.Fatalf("worker clock %s: eager claim = %d work items, want task %q as attempt 1", skew, len(got), tk.ID)
		}
		other, err := e.b.ClaimActivity(e.ctx, workerClaim("other"))
		e.noErr("ClaimActivity(Now zero) by another worker", err)
		if other != nil {
			t.Fatalf("worker clock %s: another worker claimed %q as attempt %d right after the eager claim: "+
				"its lease was counted from the step's clock, not the store's", skew, other.Task.ID, other.Attempt)
		}
		e.wantLeaseFrom(fmt.Sprintf("worker clock %s: eager claim's LeaseExpiresAt", skew), got[0].LeaseExpiresAt, before, after)
		later := after.Add(lease + clockSlack)
		if wi2 := e.tryClaimActivity(later); wi2 == nil || wi2.Task.ID != tk.ID || wi2.Attempt != 2 {
			t.Fatalf("worker clock %s: a lease after the eager claim, ClaimActivity = %+v, want task %q as attempt 2", skew, wi2, tk.ID)
		}
	}
}

// testRenewStoreClock: renewals without a Now extend leases from the store's
// clock, for steps and activities.
func testRenewStoreClock(t *testing.T, e *env) {
	const renewed = 10 * time.Minute
	wi := e.createNow("s")
	e.noErr("RenewOrchestrationLease(Now zero)", e.b.RenewOrchestrationLease(e.ctx, &backend.RenewLeaseParams{
		ID: "s", ExecutionID: wi.Instance.ExecutionID, Attempt: wi.Attempt, LeaseDuration: renewed}))
	done := time.Now()
	e.noStep(done.Add(renewed/2), "the step's lease was renewed for 10m by the store's clock")
	if wi2 := e.tryClaimStep(done.Add(renewed + clockSlack)); wi2 == nil || wi2.Instance.ID != "s" || wi2.Attempt != wi.Attempt+1 {
		t.Fatalf("after the renewed lease: ClaimOrchestrationStep = %+v, want the next delivery of \"s\"", wi2)
	}

	aw, tk := claimNewActivity(t, e, "a")
	e.noErr("RenewActivityLease(Now zero)", e.b.RenewActivityLease(e.ctx, &backend.RenewLeaseParams{
		ID: tk.ID, Attempt: int64(aw.Attempt), LeaseDuration: renewed}))
	done = time.Now()
	e.noActivity(done.Add(renewed/2), "the activity's lease was renewed for 10m by the store's clock")
	if aw2 := e.tryClaimActivity(done.Add(renewed + clockSlack)); aw2 == nil || aw2.Task.ID != tk.ID || aw2.Attempt != 2 {
		t.Fatalf("after the renewed lease: ClaimActivity = %+v, want task %q as attempt 2", aw2, tk.ID)
	}
}

// testRetryAfterStoreClock: work handed back with RetryAfter is visible
// again RetryAfter after the abandon by the store's clock, whatever RetryAt
// says (here: the time a worker two minutes ahead would have computed).
func testRetryAfterStoreClock(t *testing.T, e *env) {
	const after = 10 * time.Minute
	skewedRetry := func() time.Time { return time.Now().Add(2*time.Minute + after) }
	wi := e.createNow("s")
	e.noErr("AbandonOrchestrationStep(RetryAfter 10m)", e.b.AbandonOrchestrationStep(e.ctx, &backend.AbandonParams{
		ID: "s", ExecutionID: wi.Instance.ExecutionID, Attempt: wi.Attempt, RetryAt: skewedRetry(), RetryAfter: after}))
	done := time.Now()
	e.noStep(done.Add(after/2), "the step was handed back for 10m by the store's clock")
	if wi2 := e.tryClaimStep(done.Add(after + clockSlack)); wi2 == nil || wi2.Instance.ID != "s" || wi2.Attempt != wi.Attempt+1 {
		t.Fatalf("10m after the abandon: ClaimOrchestrationStep = %+v, want the next delivery of \"s\"", wi2)
	}

	aw, tk := claimNewActivity(t, e, "a")
	e.noErr("AbandonActivity(RetryAfter 10m)", e.b.AbandonActivity(e.ctx, &backend.AbandonParams{
		ID: tk.ID, Attempt: int64(aw.Attempt), RetryAt: skewedRetry(), RetryAfter: after}))
	done = time.Now()
	e.noActivity(done.Add(after/2), "the activity was handed back for 10m by the store's clock")
	if aw2 := e.tryClaimActivity(done.Add(after + clockSlack)); aw2 == nil || aw2.Task.ID != tk.ID || aw2.Attempt != 2 {
		t.Fatalf("10m after the abandon: ClaimActivity = %+v, want task %q as attempt 2", aw2, tk.ID)
	}
}

// claimNewActivity creates instance id, schedules one activity task in its
// first step and claims it as a worker does (Now zero).
func claimNewActivity(t *testing.T, e *env, id string) (*backend.ActivityWorkItem, *backend.ActivityTask) {
	t.Helper()
	p, tk := scheduleOne(e.createNow(id), time.Now())
	e.noErr("CompleteOrchestrationStep", e.b.CompleteOrchestrationStep(e.ctx, p))
	aw, err := e.b.ClaimActivity(e.ctx, workerClaim("worker"))
	e.noErr("ClaimActivity(Now zero)", err)
	if aw == nil || aw.Task.ID != tk.ID {
		t.Fatalf("ClaimActivity(Now zero) = %+v, want task %q", aw, tk.ID)
	}
	return aw, tk
}
