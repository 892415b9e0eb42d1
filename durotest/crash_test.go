package durotest_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/durotest"
)

// checkout charges an order once and reports the charge.
func checkout(ctx *duro.OrchestrationContext, order string) (string, error) {
	var charge string
	if err := ctx.CallActivity("Charge", order).Await(&charge); err != nil {
		return "", err
	}
	return "paid " + charge, nil
}

// suspendedCheckout starts a checkout whose at-most-once Charge (under
// OnDuplicateSuspend) crashes after its start mark, and runs it until it
// is suspended for a decision. runs returns the attempts at which
// Charge's code ran.
func suspendedCheckout(t *testing.T, order string) (env *durotest.Env, id string, runs func() []int) {
	t.Helper()
	env = durotest.New(t, durotest.WithStartTime(start))
	var mu sync.Mutex
	var attempts []int
	duro.RegisterActivity(env.Registry(), "Charge", func(ctx duro.ActivityContext, order string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, ctx.Attempt())
		return "ch_" + order, nil
	}, duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend})
	duro.RegisterOrchestration(env.Registry(), "Checkout", checkout)
	env.CrashAfterStart("Charge")
	id = env.Start("Checkout", order)
	env.WaitSuspended(id)
	return env, id, func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), attempts...)
	}
}

// An at-most-once activity whose first delivery crashed after marking
// itself started is not run again: under OnDuplicateSuspend the instance
// waits for a decision, and resuming with a result completes it without
// the code ever running.
func TestAtMostOnceCrashSuspendResume(t *testing.T) {
	env, id, runs := suspendedCheckout(t, "o1")
	inst, err := env.Client().Get(t.Context(), id)
	if err != nil || inst.Suspension == nil || inst.Suspension.Reason == "" {
		t.Fatalf("suspension %+v, %v", inst.Suspension, err)
	}
	pending := env.PendingDecisions(id)
	if len(pending) != 1 || pending[0].TaskID != 0 || pending[0].Name != "Charge" || pending[0].Attempt != 2 {
		t.Fatalf("pending %+v; want task 0 Charge at attempt 2", pending)
	}
	// The crashed delivery's lease (1m by default) lapsed in virtual time.
	if got := env.Now().Sub(start); got != time.Minute {
		t.Fatalf("redelivered %v after the start; want the lease, 1m", got)
	}
	env.Resume(id, duro.CompleteTask(0, "ch_checked"))
	if got := output[string](t, env.Wait(id)); got != "paid ch_checked" {
		t.Fatalf("output %q", got)
	}
	if got := runs(); len(got) != 0 {
		t.Fatalf("the code ran at attempts %v; want never", got)
	}
	env.AssertHistory(t, id, "TaskScheduled #0 Charge guarantee=at-most-once/Suspend", "TaskDuplicate #0 Charge attempt=2",
		"ExecutionSuspended", "ExecutionResumed decision=#0:Result", `TaskCompleted #0 result="ch_checked"`,
		`ExecutionCompleted status=Completed result="paid ch_checked"`)
	env.AssertActivityCalled(t, id, "Charge", 1)
}

// A retry decision runs the code once more, with the next attempt number.
func TestAtMostOnceResumeRetry(t *testing.T) {
	env, id, runs := suspendedCheckout(t, "o2")
	env.Resume(id, duro.RetryTask(0))
	if got := output[string](t, env.Wait(id)); got != "paid ch_o2" {
		t.Fatalf("output %q", got)
	}
	if got := runs(); len(got) != 1 || got[0] != 3 {
		t.Fatalf("the code ran at attempts %v; want [3]", got)
	}
}

// A fail decision fails the task without running the code; the
// orchestration sees the operator's message.
func TestAtMostOnceResumeFail(t *testing.T) {
	env, id, runs := suspendedCheckout(t, "o5")
	env.Resume(id, duro.FailTask(0, "refunded by hand"))
	inst := env.Wait(id)
	if inst.Status != duro.StatusFailed || inst.Failure == nil || !strings.Contains(inst.Failure.Message, "refunded by hand") {
		t.Fatalf("status %s, failure %+v", inst.Status, inst.Failure)
	}
	if got := runs(); len(got) != 0 {
		t.Fatalf("the code ran at attempts %v", got)
	}
	env.AssertHistory(t, id, "ExecutionResumed decision=#0:Fail", `TaskFailed #0 failure="refunded by hand"`, "ExecutionCompleted status=Failed")
}

// Under OnDuplicateReconcile the reconciler decides: a charge the
// provider recorded before the crash (CrashAfterRun: the code ran, its
// result was lost) is the result; no charge (CrashAfterStart: the code
// never ran) runs the code again.
func TestReconcile(t *testing.T) {
	for _, c := range []struct {
		name               string
		crash              func(env *durotest.Env)
		wantRuns, wantRecs int32
	}{
		{"after run", func(env *durotest.Env) { env.CrashAfterRun("Charge") }, 1, 1},
		{"after start", func(env *durotest.Env) { env.CrashAfterStart("Charge") }, 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := durotest.New(t, durotest.WithStartTime(start))
			var provider sync.Map
			var runs, recs atomic.Int32
			duro.RegisterActivity(env.Registry(), "Charge", func(ctx duro.ActivityContext, order string) (string, error) {
				runs.Add(1)
				provider.Store(order, "ch_"+order)
				return "ch_" + order, nil
			}, duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateReconcile,
				Reconcile: func(ctx duro.ActivityContext, input *duro.Payload) (duro.ReconcileDecision, error) {
					recs.Add(1)
					var order string
					if err := input.Decode(&order); err != nil {
						return duro.ReconcileDecision{}, err
					}
					if ch, ok := provider.Load(order); ok {
						return duro.ReconcileResult(ch), nil
					}
					return duro.ReconcileRetry(), nil
				}})
			duro.RegisterOrchestration(env.Registry(), "Checkout", checkout)
			c.crash(env)
			if got := output[string](t, env.Run("Checkout", "o3")); got != "paid ch_o3" {
				t.Fatalf("output %q", got)
			}
			if runs.Load() != c.wantRuns || recs.Load() != c.wantRecs {
				t.Fatalf("code ran %d times, reconciler %d; want %d and %d", runs.Load(), recs.Load(), c.wantRuns, c.wantRecs)
			}
		})
	}
}

// An at-least-once activity whose delivery crashed is delivered again,
// as a possible duplicate: after the claim (the code did not run), or
// after the code ran (a true duplicate, the code runs twice).
func TestAtLeastOnceDuplicateDelivery(t *testing.T) {
	for _, c := range []struct {
		name  string
		crash func(env *durotest.Env)
		want  string // the deliveries that ran the code: attempt/duplicate
	}{
		{"after start", func(env *durotest.Env) { env.CrashAfterStart("Charge") }, "[2/true]"},
		{"after run", func(env *durotest.Env) { env.CrashAfterRun("Charge") }, "[1/false 2/true]"},
		{"twice", func(env *durotest.Env) { env.CrashAfterRun("Charge"); env.CrashAfterRun("Charge") }, "[1/false 2/true 3/true]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := durotest.New(t, durotest.WithStartTime(start))
			var mu sync.Mutex
			var runs []string
			duro.RegisterActivity(env.Registry(), "Charge", func(ctx duro.ActivityContext, order string) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				runs = append(runs, itoa(ctx.Attempt())+"/"+btoa(ctx.MayBeDuplicate()))
				return "ch_" + order, nil
			})
			duro.RegisterOrchestration(env.Registry(), "Checkout", checkout)
			c.crash(env)
			if got := output[string](t, env.Run("Checkout", "o4")); got != "paid ch_o4" {
				t.Fatalf("output %q", got)
			}
			mu.Lock()
			defer mu.Unlock()
			if got := "[" + join(runs) + "]"; got != c.want {
				t.Fatalf("deliveries %s; want %s", got, c.want)
			}
		})
	}
}
