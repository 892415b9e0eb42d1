package backendtest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// fleetTests check deployments where workers register different code: a
// split fleet (orchestration workers and activity workers) and a rolling
// deploy (the worker that schedules a call lacks the activity). A worker
// claims only the activities it registers, and the worker that executes an
// activity enforces its own registration's guarantee, whatever the
// scheduling worker recorded.
func fleetTests() []test {
	return []test{
		{"ClaimOnlyNamedActivities", testClaimNamedActivities},
		{"SplitFleetExecutingWorkerEnforcesAtMostOnce", testSplitFleetAtMostOnce},
		{"SplitFleetPolicy", testSplitFleetPolicy},
		{"RollingDeployStepWorkerLacksActivity", testRollingDeploy},
	}
}

// testClaimNamedActivities: ClaimParams.ActivityNames restricts activity
// claims to those names (both tasks visible at once and tasks handed back
// with a retry time), an empty list claims nothing, nil claims any, and a
// task skipped keeps its attempt number.
func testClaimNamedActivities(t *testing.T, e *env) {
	c := e.create("a", nil)
	var tasks []*backend.ActivityTask
	for i, name := range []string{"charge", "ship", "charge"} {
		tk := task(c, i+1)
		tk.Name = name
		tasks = append(tasks, tk)
	}
	e.commit(e.claimStep("a", e.t0), e.t0, func(p *backend.CompleteOrchestrationStepParams) { p.ActivityTasks = tasks })
	claim := func(now time.Time, names []string) *backend.ActivityWorkItem {
		t.Helper()
		p := e.claimParams(now)
		p.ActivityNames = names
		wi, err := e.b.ClaimActivity(e.ctx, p)
		if err != nil {
			t.Fatalf("ClaimActivity(ActivityNames %q): %v", names, err)
		}
		return wi
	}
	now := e.at(time.Second)
	if wi := claim(now, []string{}); wi != nil {
		t.Fatalf("ClaimActivity with an empty ActivityNames claimed %q", wi.Task.ID)
	}
	if wi := claim(now, []string{"refund"}); wi != nil {
		t.Fatalf("ClaimActivity(ActivityNames [refund]) claimed %q (%s)", wi.Task.ID, wi.Task.Name)
	}
	ship := claim(now, []string{"ship", "refund"})
	if ship == nil || ship.Task.ID != tasks[1].ID || ship.Attempt != 1 {
		t.Fatalf("ClaimActivity(ActivityNames [ship refund]) = %+v, want task %q attempt 1", ship, tasks[1].ID)
	}
	// Handed back with a retry time, ship is claimable later, by ship only.
	retryAt := e.at(time.Hour)
	if err := e.b.AbandonActivity(e.ctx, &backend.AbandonParams{ID: ship.Task.ID, Attempt: int64(ship.Attempt), RetryAt: retryAt}); err != nil {
		t.Fatalf("AbandonActivity: %v", err)
	}
	later := retryAt.Add(time.Second)
	for _, want := range []string{tasks[0].ID, tasks[2].ID} {
		wi := claim(later, []string{"charge"})
		if wi == nil || wi.Task.ID != want || wi.Attempt != 1 {
			t.Fatalf("ClaimActivity(ActivityNames [charge]) at %s = %+v, want %q attempt 1 (skipped claims spend no attempt)",
				e.rel(later), wi, want)
		}
	}
	if wi := claim(later, []string{"charge"}); wi != nil {
		t.Fatalf("ClaimActivity(ActivityNames [charge]) claimed %q (%s): the handed-back ship task is not a charge",
			wi.Task.ID, wi.Task.Name)
	}
	if wi := claim(later, nil); wi == nil || wi.Task.ID != ship.Task.ID || wi.Attempt != 2 {
		t.Fatalf("ClaimActivity(ActivityNames nil) = %+v, want the handed-back %q attempt 2", wi, ship.Task.ID)
	}

	bc, ok := e.b.(backend.BatchClaimer)
	if !ok {
		return
	}
	_, batch := e.startWithTasks("b", 3) // all named "act"
	p := e.claimParams(later)
	p.ActivityNames = []string{"other"}
	if wis, err := bc.ClaimActivities(e.ctx, p, 10); err != nil || len(wis) != 0 {
		t.Fatalf("ClaimActivities(ActivityNames [other]) = %d work items, %v; want none", len(wis), err)
	}
	p.ActivityNames = []string{"act"}
	wis, err := bc.ClaimActivities(e.ctx, p, 10)
	if err != nil || len(wis) != len(batch) {
		t.Fatalf("ClaimActivities(ActivityNames [act]) = %d work items, %v; want %d", len(wis), err, len(batch))
	}
	for _, wi := range wis {
		if wi.Task.Name != "act" || wi.Attempt != 1 {
			t.Fatalf("ClaimActivities(ActivityNames [act]) claimed %q (%s) attempt %d", wi.Task.ID, wi.Task.Name, wi.Attempt)
		}
	}
}

// fleetCharge registers "Charge" with opts for an activity worker. Its
// code counts calls and reports each delivery's attempt on attempts; when
// block is set it then blocks until its worker stops, so the delivery is
// abandoned with its attempt recorded, as if the process had died in the
// middle of the code.
func fleetCharge(opts duro.ActivityOptions, calls *atomic.Int32, attempts chan<- int, block bool) func(r *duro.Registry) {
	return func(r *duro.Registry) {
		duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
			calls.Add(1)
			attempts <- ctx.Attempt()
			if block {
				<-ctx.Done()
				return "", ctx.Err()
			}
			return fmt.Sprintf("charged on attempt %d", ctx.Attempt()), nil
		}, opts)
	}
}

// splitFleet starts Pay (calling Charge with call) on an orchestration-only
// worker, lets a first activity-only worker with Charge registered with reg
// start the code and stops it there, and starts a second one. It returns
// the instance's ID, its client, the first delivery's attempt, and how many
// times the second worker ran the code.
func splitFleet(t *testing.T, be backend.Backend, call duro.CallOptions, reg duro.ActivityOptions, status duro.Status) (string, *duro.Client, int, *atomic.Int32) {
	t.Helper()
	ctx := bg(t)
	orch := newSDKEnv(t, be, registerPay) // no activity: it claims none
	var firstCalls, secondCalls atomic.Int32
	attempts := make(chan int, 10)
	first := newSDKEnv(t, be, fleetCharge(reg, &firstCalls, attempts, true))
	id, err := orch.client.Start(ctx, "Pay", call)
	if err != nil {
		t.Fatal(err)
	}
	var attempt int
	select {
	case attempt = <-attempts:
	case <-ctx.Done():
		t.Fatal("Charge never ran on the first activity worker")
	}
	stopped, stop := context.WithCancel(ctx)
	stop()
	_ = first.worker.Stop(stopped) // abandons the running delivery
	newSDKEnv(t, be, fleetCharge(reg, &secondCalls, make(chan int, 10), false))
	waitStatus(t, orch.client, id, status)
	if n := firstCalls.Load(); n != 1 {
		t.Fatalf("the first activity worker ran Charge %d times", n)
	}
	return id, orch.client, attempt, &secondCalls
}

// resultEvent returns the result event of task 0 in id's history.
func resultEvent(t *testing.T, c *duro.Client, id string) (scheduled, result *backend.Event) {
	t.Helper()
	h, err := c.History(bg(t), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range h {
		switch {
		case ev.TaskID != 0:
		case ev.Type == backend.EventTaskScheduled:
			scheduled = ev
		case ev.Type == backend.EventTaskCompleted, ev.Type == backend.EventTaskFailed, ev.Type == backend.EventTaskDuplicate:
			result = ev
		}
	}
	if scheduled == nil || result == nil {
		t.Fatalf("history of %s has no TaskScheduled or no result for task 0: %+v", id, h)
	}
	return scheduled, result
}

// testSplitFleetAtMostOnce: the orchestration worker knows nothing of
// Charge, so the call is recorded at least once; the activity workers
// register it AtMostOnce. The first delivery (attempt 1: the orchestration
// worker neither claimed it eagerly nor through its activity loop) dies in
// the code; the next one does not run the code again and fails the task as
// a possible duplicate, and history records the guarantee it enforced.
func testSplitFleetAtMostOnce(t *testing.T, e *env) {
	id, client, attempt, calls := splitFleet(t, e.b, duro.CallOptions{}, duro.ActivityOptions{Guarantee: duro.AtMostOnce},
		duro.StatusCompleted)
	if attempt != 1 {
		t.Fatalf("the first activity worker got attempt %d, want 1: a worker without Charge claimed it", attempt)
	}
	inst, err := client.Get(bg(t), id)
	if err != nil {
		t.Fatal(err)
	}
	// Attempt 2, or 3 when the first activity worker's claim in flight as
	// it stopped took a delivery it handed back unstarted (allowed: attempt
	// numbers stay unique, the code ran once).
	if got := mustOutput[string](t, inst); (got != "duplicate attempt=2" && got != "duplicate attempt=3") || calls.Load() != 0 {
		t.Fatalf("output %q, the second activity worker ran the code %d times; want a possible duplicate, not run",
			got, calls.Load())
	}
	sched, res := resultEvent(t, client, id)
	if sched.Activity == nil || sched.Activity.AtMostOnce {
		t.Fatalf("TaskScheduled options %+v; want at least once (the scheduling worker does not register Charge)", sched.Activity)
	}
	if res.Type != backend.EventTaskFailed || res.Activity == nil || !res.Activity.AtMostOnce ||
		res.Activity.OnDuplicate != string(duro.OnDuplicateFail) {
		t.Fatalf("result %s with options %+v; want TaskFailed recording the enforced at-most-once/Fail", res.Type, res.Activity)
	}
}

// testSplitFleetPolicy: the policy in force is the executing worker's
// registration's when it names one (even against the call's), and the
// call's otherwise, with the executing worker's reconciler.
func testSplitFleetPolicy(t *testing.T, e *env) {
	reconciled := func(ctx duro.ActivityContext, _ *duro.Payload) (duro.ReconcileDecision, error) {
		return duro.ReconcileResult(fmt.Sprintf("reconciled attempt %d", ctx.Attempt())), nil
	}
	for _, tc := range []struct {
		name   string
		call   duro.CallOptions
		reg    duro.ActivityOptions
		policy duro.OnDuplicate
	}{
		{"RegistrationSuspend", duro.CallOptions{}, duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend},
			duro.OnDuplicateSuspend},
		{"RegistrationOverridesCall", duro.CallOptions{OnDuplicate: duro.OnDuplicateFail},
			duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend}, duro.OnDuplicateSuspend},
		{"CallPolicyWithExecutingReconciler", duro.CallOptions{OnDuplicate: duro.OnDuplicateReconcile},
			duro.ActivityOptions{Guarantee: duro.AtMostOnce, Reconcile: reconciled}, duro.OnDuplicateReconcile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			be := e.fresh(t)
			status := duro.StatusSuspended
			if tc.policy == duro.OnDuplicateReconcile {
				status = duro.StatusCompleted
			}
			id, client, attempt, calls := splitFleet(t, be, tc.call, tc.reg, status)
			if attempt != 1 || calls.Load() != 0 {
				t.Fatalf("first delivery attempt %d, code run again %d times; want 1 and 0", attempt, calls.Load())
			}
			_, res := resultEvent(t, client, id)
			if res.Activity == nil || !res.Activity.AtMostOnce || res.Activity.OnDuplicate != string(tc.policy) {
				t.Fatalf("result %s records options %+v; want at-most-once/%s", res.Type, res.Activity, tc.policy)
			}
			if tc.policy == duro.OnDuplicateReconcile {
				inst, err := client.Get(bg(t), id)
				if err != nil {
					t.Fatal(err)
				}
				// Attempt 3 when the first worker's claim in flight as it
				// stopped took a delivery it released unstarted.
				if got := mustOutput[string](t, inst); got != "reconciled attempt 2" && got != "reconciled attempt 3" {
					t.Fatalf("output %q, want the executing worker's reconciler's result", got)
				}
				return
			}
			pending, err := client.PendingDecisions(bg(t))
			if err != nil || len(pending) != 1 || (pending[0].Attempt != 2 && pending[0].Attempt != 3) || !pending[0].Options.AtMostOnce ||
				pending[0].Options.OnDuplicate != string(duro.OnDuplicateSuspend) {
				t.Fatalf("pending %+v, %v; want Charge attempt 2 with the enforced at-most-once/Suspend", pending, err)
			}
			if err := client.Resume(bg(t), id, "checked the provider", duro.CompleteTask(0, "charged once")); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, client, id, duro.StatusCompleted)
			inst, err := client.Get(bg(t), id)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustOutput[string](t, inst); got != "charged once" || calls.Load() != 0 {
				t.Fatalf("output %q, code run %d times after the decision", got, calls.Load())
			}
		})
	}
}

// testRollingDeploy: the old version's worker runs orchestrations and the
// Ship activity but not Charge; the new version's registers Charge
// AtMostOnce. The old worker runs the step that schedules Charge and then
// Ship (which it claims, eagerly or through its activity loop, past
// Charge); the new worker gets Charge's first delivery, dies in its code,
// and the next delivery does not run it again.
func testRollingDeploy(t *testing.T, e *env) {
	for _, eager := range []bool{true, false} {
		t.Run(fmt.Sprintf("Eager=%v", eager), func(t *testing.T) {
			t.Parallel()
			be := e.fresh(t)
			ctx := bg(t)
			shipped := make(chan struct{}, 1)
			order := func(r *duro.Registry) {
				duro.RegisterOrchestration(r, "Order", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
					charge := ctx.CallActivity("Charge", 1)
					if err := ctx.CallActivity("Ship", 1).Await(nil); err != nil {
						return "", err
					}
					var out string
					err := charge.Await(&out)
					if errors.Is(err, duro.ErrPossibleDuplicate) {
						return "charge: possible duplicate", nil
					}
					return out, err
				})
				duro.RegisterActivity(r, "Ship", func(ctx duro.ActivityContext, _ int) (string, error) {
					select {
					case shipped <- struct{}{}:
					default:
					}
					return "shipped", nil
				})
			}
			old := newSDKEnvOpts(t, be, &duro.WorkerOptions{DisableEagerActivities: !eager}, order)
			id, err := old.client.Start(ctx, "Order", nil)
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-shipped: // the old worker has claimed past Charge
			case <-ctx.Done():
				t.Fatal("Ship never ran on the old worker")
			}
			var calls, again atomic.Int32
			attempts := make(chan int, 10)
			first := newSDKEnv(t, be, func(r *duro.Registry) {
				order(r)
				fleetCharge(duro.ActivityOptions{Guarantee: duro.AtMostOnce}, &calls, attempts, true)(r)
			})
			var attempt int
			select {
			case attempt = <-attempts:
			case <-ctx.Done():
				t.Fatal("Charge never ran on the new worker")
			}
			if attempt != 1 {
				t.Fatalf("the new worker got Charge's attempt %d, want 1: the old worker, which lacks it, claimed it", attempt)
			}
			stopped, stop := context.WithCancel(ctx)
			stop()
			_ = first.worker.Stop(stopped)
			newSDKEnv(t, be, func(r *duro.Registry) {
				order(r)
				fleetCharge(duro.ActivityOptions{Guarantee: duro.AtMostOnce}, &again, make(chan int, 10), false)(r)
			})
			waitStatus(t, old.client, id, duro.StatusCompleted)
			inst, err := old.client.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustOutput[string](t, inst); got != "charge: possible duplicate" || calls.Load() != 1 || again.Load() != 0 {
				t.Fatalf("output %q, Charge ran %d+%d times; want a possible duplicate after one run", got, calls.Load(), again.Load())
			}
		})
	}
}
