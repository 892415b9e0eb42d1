// Package chaos is duro's chaos harness: it runs a mixed workload on worker
// processes that it kills, pauses and cuts off while they work, and then
// checks — against a ledger kept outside the engine — that no instance was
// lost, no at-most-once activity ran twice, no at-least-once call was skipped,
// and every task delivered exactly one result. `duro chaos` runs it.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/durohq/duro"
)

// The workload's orchestrations, one per shape.
const (
	WorkSequence     = "ChaosSequence"
	WorkFanOut       = "ChaosFanOut"
	WorkParent       = "ChaosParent"
	WorkEvent        = "ChaosEvent"
	WorkPayFail      = "ChaosPayFail"
	WorkPaySuspend   = "ChaosPaySuspend"
	WorkPayReconcile = "ChaosPayReconcile"
)

// Shapes lists the workload's orchestrations in the order they are started.
var Shapes = []string{WorkSequence, WorkFanOut, WorkParent, WorkEvent, WorkPayFail, WorkPaySuspend, WorkPayReconcile}

// Ledger policies.
const (
	policyALO = "alo"
	policyAMO = "amo"
)

// duplicateFailure is the designed failure of WorkPayFail.
const duplicateFailure = "charge may have run twice; refusing to continue"

// EventName is the event WorkEvent waits for; the coordinator raises it.
const EventName = "go"

// Worker roles. A split fleet (Config.SplitFleet) runs orchestration-only
// and activity-only worker processes; otherwise every process runs all of
// the workload's code.
const (
	RoleAll            = ""
	RoleOrchestrations = "orchestrations"
	RoleActivities     = "activities"
)

// RoleEnv is the environment variable that gives a worker process its role.
const RoleEnv = "DURO_CHAOS_ROLE"

// MissingEnv is the environment variable that names an activity a worker
// process does not register, as a worker of an older build would during a
// rolling deploy: it leaves that activity's tasks to the workers that have
// it.
const MissingEnv = "DURO_CHAOS_MISSING"

// The workload's activities.
const (
	// ActivityStep is at least once.
	ActivityStep = "ChaosStep"
	// ActivityCharge is at most once, with the policy its call names.
	ActivityCharge = "ChaosCharge"
)

// Activities lists the workload's activities: those a worker may be
// started without (MissingEnv).
var Activities = []string{ActivityStep, ActivityCharge}

// ErrUnknownActivity is returned by RegisterRole for a missing activity
// that is not one of Activities.
var ErrUnknownActivity = errors.New("chaos: not an activity of the workload")

// Register registers the workload's code, recording executions in l.
func Register(reg *duro.Registry, l *Ledger) {
	if err := RegisterRole(reg, l, RoleAll, ""); err != nil {
		panic(err) // unreachable: RoleAll with nothing missing
	}
}

// RegisterRole registers the part of the workload's code a worker of role
// runs: its activities, its orchestrations, or both, leaving out the
// activity named missing ("" for none; one of Activities). An
// orchestration-only worker knows nothing of the activities' options:
// ChaosCharge is at most once only by the activity workers' registration,
// so that is what they must enforce.
func RegisterRole(reg *duro.Registry, l *Ledger, role, missing string) error {
	switch role {
	case RoleAll, RoleOrchestrations, RoleActivities:
	default:
		return fmt.Errorf("chaos: unknown worker role %q", role)
	}
	if missing != "" && !slices.Contains(Activities, missing) {
		return fmt.Errorf("%w: %q (want one of %v)", ErrUnknownActivity, missing, Activities)
	}
	if missing != "" && role == RoleOrchestrations {
		return fmt.Errorf("chaos: an orchestration-only worker registers no activity, so it cannot miss %q", missing)
	}
	if role != RoleOrchestrations {
		registerActivities(reg, l, missing)
	}
	if role != RoleActivities {
		registerOrchestrations(reg)
	}
	return nil
}

// registerActivities registers the workload's activities but missing.
func registerActivities(reg *duro.Registry, l *Ledger, missing string) {
	effect := func(ctx duro.ActivityContext, policy string, minMS, maxMS int) error {
		if err := l.Record(ctx, ctx.InstanceID(), ctx.TaskID(), ctx.Name(), ctx.Attempt(), policy); err != nil {
			return err
		}
		// The "effect": long enough to be killed in the middle of it.
		t := time.NewTimer(time.Duration(minMS+rand.IntN(maxMS-minMS)) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if missing != ActivityStep {
		duro.RegisterActivity(reg, ActivityStep, func(ctx duro.ActivityContext, n int) (int, error) {
			return n + 1, effect(ctx, policyALO, 0, 40)
		})
	}
	if missing == ActivityCharge {
		return
	}
	duro.RegisterActivity(reg, ActivityCharge, func(ctx duro.ActivityContext, _ string) (string, error) {
		return "charged", effect(ctx, policyAMO, 50, 300)
	}, duro.ActivityOptions{Guarantee: duro.AtMostOnce, Reconcile: func(ctx duro.ActivityContext, _ *duro.Payload) (duro.ReconcileDecision, error) {
		// Every call is an alarm: the engine took this delivery for a
		// possible duplicate.
		if err := l.RecordReconcile(ctx, ctx.InstanceID(), ctx.TaskID(), ctx.Attempt()); err != nil {
			return duro.ReconcileDecision{}, err
		}
		ran, err := l.FenceAndCheck(ctx, ctx.InstanceID(), ctx.TaskID(), ctx.Attempt())
		switch {
		case err != nil:
			return duro.ReconcileDecision{}, err
		case ran:
			return duro.ReconcileResult("reconciled"), nil
		}
		return duro.ReconcileRetry(), nil
	}})
}

// registerOrchestrations registers the workload's orchestrations.
func registerOrchestrations(reg *duro.Registry) {
	duro.RegisterOrchestration(reg, WorkSequence, func(ctx *duro.OrchestrationContext, _ any) (int, error) {
		n := 0
		for range 3 {
			if err := ctx.CallActivity(ActivityStep, n).Await(&n); err != nil {
				return 0, err
			}
		}
		return n, nil
	})
	duro.RegisterOrchestration(reg, WorkFanOut, func(ctx *duro.OrchestrationContext, _ any) (int, error) {
		ts := make([]*duro.Task, 5)
		for i := range ts {
			ts[i] = ctx.CallActivity(ActivityStep, i)
		}
		if err := ctx.AwaitAll(ts...); err != nil {
			return 0, err
		}
		sum := 0
		for _, t := range ts {
			var v int
			_ = t.Await(&v)
			sum += v
		}
		return sum, nil
	})
	duro.RegisterOrchestration(reg, WorkParent, func(ctx *duro.OrchestrationContext, _ any) (int, error) {
		var n int
		if err := ctx.CallSubOrchestration(WorkSequence, nil).Await(&n); err != nil {
			return 0, err
		}
		return n, ctx.Sleep(100 * time.Millisecond)
	})
	duro.RegisterOrchestration(reg, WorkEvent, func(ctx *duro.OrchestrationContext, _ any) (string, error) {
		var s string
		if err := ctx.WaitForEvent(EventName, 10*time.Minute).Await(&s); err != nil {
			return "", err
		}
		var n int
		return s, ctx.CallActivity(ActivityStep, 1).Await(&n)
	})
	pay := func(on duro.OnDuplicate) func(*duro.OrchestrationContext, any) (string, error) {
		return func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			var s string
			err := ctx.CallActivity(ActivityCharge, "card", duro.CallOptions{OnDuplicate: on}).Await(&s)
			if errors.Is(err, duro.ErrPossibleDuplicate) {
				return "", duro.NewNonRetryableError("Duplicate", duplicateFailure)
			}
			return s, err
		}
	}
	duro.RegisterOrchestration(reg, WorkPayFail, pay(duro.OnDuplicateFail))
	duro.RegisterOrchestration(reg, WorkPaySuspend, pay(duro.OnDuplicateSuspend))
	duro.RegisterOrchestration(reg, WorkPayReconcile, pay(duro.OnDuplicateReconcile))
}

// startShape starts one instance of a shape.
func startShape(ctx context.Context, c *duro.Client, shape string, n int) (string, error) {
	return c.Start(ctx, shape, nil, duro.StartOptions{InstanceID: fmt.Sprintf("chaos-%06d-%s", n, shape)})
}
