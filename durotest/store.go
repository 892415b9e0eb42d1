package durotest

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/memory"
	"github.com/durohq/duro/backend/rules"
)

// store is the environment's backend: the in-memory backend, seen
// through a layer that counts the work in flight (calls in progress and
// claimed work items not yet handed back), notes when each of the
// worker's claim loops found nothing to claim, wakes the worker after
// every change and every move of the clock, and injects the crashes the
// test armed. The environment skips time only when this layer says
// nothing can run.
type store struct {
	inner *memory.Backend
	s     *state
}

var (
	_ backend.Backend             = (*store)(nil)
	_ backend.BatchClaimer        = (*store)(nil)
	_ backend.StepActivityClaimer = (*store)(nil)
	_ backend.ActivityStepClaimer = (*store)(nil)
	_ backend.WorkNotifier        = (*store)(nil)
	_ backend.InFlightReader      = (*store)(nil)
	_ backend.InstanceClaimer     = (*store)(nil)
	_ backend.RequestWindow       = (*store)(nil)
	_ backend.FinishNotifier      = (*store)(nil)
)

// errCrashed is what a delivery that the test crashed is told: that its
// lease is lost, so the worker walks away from it without a word to the
// store, as a worker that died would.
var errCrashed = fmt.Errorf("durotest: injected crash: %w", backend.ErrLeaseLost)

// stepKey and taskKey name a claimed work item: one delivery of a step
// or of an activity task.
func stepKey(id string, attempt int64) string {
	return "step " + id + " #" + strconv.FormatInt(attempt, 10)
}
func taskKey(id string, attempt int64) string {
	return "task " + id + " #" + strconv.FormatInt(attempt, 10)
}

// about runs a call about the held delivery key, counted in flight. The
// delivery ends with the call if ends is set (an abandon), or if the call
// finds its lease lost (the worker then drops it without another call).
// A mutation may have made work claimable.
func (b *store) about(key string, mutation, ends bool, fn func() error) error {
	b.s.begin()
	err := fn()
	var done []finished
	if ends || errors.Is(err, backend.ErrLeaseLost) {
		done = []finished{{key: key, always: true}}
	}
	b.s.end(mutation, nil, done)
	return err
}

// mutate runs a call that may make work claimable: counted in flight
// while it runs, then the worker is woken.
func (b *store) mutate(fn func() error) error {
	b.s.begin()
	err := fn()
	b.s.end(true, nil, nil)
	return err
}

// CreateInstance implements backend.Backend.
func (b *store) CreateInstance(ctx context.Context, p *backend.CreateInstanceParams) error {
	return b.mutate(func() error { return b.inner.CreateInstance(ctx, p) })
}

// GetInstance implements backend.Backend.
func (b *store) GetInstance(ctx context.Context, id string) (*backend.Instance, error) {
	return b.inner.GetInstance(ctx, id)
}

// ListInstances implements backend.Backend.
func (b *store) ListInstances(ctx context.Context, p *backend.ListInstancesParams) (*backend.InstancePage, error) {
	return b.inner.ListInstances(ctx, p)
}

// GetHistory implements backend.Backend.
func (b *store) GetHistory(ctx context.Context, id string) ([]*backend.Event, error) {
	return b.inner.GetHistory(ctx, id)
}

// EnqueueMessage implements backend.Backend.
func (b *store) EnqueueMessage(ctx context.Context, m *backend.Message) error {
	return b.mutate(func() error { return b.inner.EnqueueMessage(ctx, m) })
}

// RewindInstance implements backend.Backend.
func (b *store) RewindInstance(ctx context.Context, p *backend.RewindParams) error {
	return b.mutate(func() error { return b.inner.RewindInstance(ctx, p) })
}

// PurgeInstance implements backend.Backend.
func (b *store) PurgeInstance(ctx context.Context, id string) error {
	return b.mutate(func() error { return b.inner.PurgeInstance(ctx, id) })
}

// PurgeInstances implements backend.Backend.
func (b *store) PurgeInstances(ctx context.Context, p *backend.PurgeInstancesParams) (int, error) {
	var n int
	err := b.mutate(func() (err error) { n, err = b.inner.PurgeInstances(ctx, p); return err })
	return n, err
}

// ClaimOrchestrationStep implements backend.Backend.
func (b *store) ClaimOrchestrationStep(ctx context.Context, p *backend.ClaimParams) (*backend.OrchestrationWorkItem, error) {
	return rules.First(b.ClaimOrchestrationSteps(ctx, p, 1))
}

// ClaimOrchestrationSteps implements backend.BatchClaimer.
func (b *store) ClaimOrchestrationSteps(ctx context.Context, p *backend.ClaimParams, max int) ([]*backend.OrchestrationWorkItem, error) {
	gen := b.s.begin()
	items, err := b.inner.ClaimOrchestrationSteps(ctx, p, max)
	held := make([]heldItem, 0, len(items))
	for _, wi := range items {
		held = append(held, heldItem{key: stepKey(wi.Instance.ID, wi.Attempt), owner: p.Owner})
	}
	b.s.endClaim(loopSteps, gen, err == nil && len(items) < max, held)
	return items, err
}

// CompleteOrchestrationStep implements backend.Backend.
func (b *store) CompleteOrchestrationStep(ctx context.Context, p *backend.CompleteOrchestrationStepParams) error {
	b.s.begin()
	err := b.inner.CompleteOrchestrationStep(ctx, p)
	b.s.end(true, nil, []finished{{key: stepKey(p.InstanceID, p.Attempt), err: err}})
	return err
}

// CompleteOrchestrationStepClaim implements backend.StepActivityClaimer.
func (b *store) CompleteOrchestrationStepClaim(ctx context.Context, p *backend.CompleteOrchestrationStepParams,
	claim *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	b.s.begin()
	items, err := b.inner.CompleteOrchestrationStepClaim(ctx, p, claim, max)
	items, held := b.s.claimedTasks(items, claim.Owner)
	b.s.end(true, held, []finished{{key: stepKey(p.InstanceID, p.Attempt), err: err}})
	return items, err
}

// RenewOrchestrationLease implements backend.Backend.
func (b *store) RenewOrchestrationLease(ctx context.Context, p *backend.RenewLeaseParams) error {
	return b.about(stepKey(p.ID, p.Attempt), false, false, func() error { return b.inner.RenewOrchestrationLease(ctx, p) })
}

// AbandonOrchestrationStep implements backend.Backend.
func (b *store) AbandonOrchestrationStep(ctx context.Context, p *backend.AbandonParams) error {
	return b.about(stepKey(p.ID, p.Attempt), true, true, func() error { return b.inner.AbandonOrchestrationStep(ctx, p) })
}

// StartOrchestrationStep implements backend.Backend.
func (b *store) StartOrchestrationStep(ctx context.Context, p *backend.StartParams) error {
	return b.about(stepKey(p.ID, p.Attempt), false, false, func() error { return b.inner.StartOrchestrationStep(ctx, p) })
}

// ClaimActivity implements backend.Backend.
func (b *store) ClaimActivity(ctx context.Context, p *backend.ClaimParams) (*backend.ActivityWorkItem, error) {
	return rules.First(b.ClaimActivities(ctx, p, 1))
}

// ClaimActivities implements backend.BatchClaimer.
func (b *store) ClaimActivities(ctx context.Context, p *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	gen := b.s.begin()
	raw, err := b.inner.ClaimActivities(ctx, p, max)
	items, held := b.s.claimedTasks(raw, p.Owner)
	b.s.endClaim(loopTasks, gen, err == nil && len(raw) < max, held)
	return items, err
}

// CompleteActivity implements backend.Backend. A delivery the test
// crashed after its code ran (CrashAfterRun) is told its lease is lost,
// and its result never reaches the store.
func (b *store) CompleteActivity(ctx context.Context, p *backend.CompleteActivityParams) error {
	b.s.begin()
	key := taskKey(p.TaskID, int64(p.Attempt))
	if p.Result != nil && p.Result.Type.KeptLate() && b.s.crashAt(key, crashAfterRun) {
		b.s.end(false, nil, []finished{{key: key, always: true}})
		return errCrashed
	}
	err := b.inner.CompleteActivity(ctx, p)
	b.s.end(true, nil, []finished{{key: key, err: err}})
	return err
}

// CompleteActivityClaim implements backend.ActivityStepClaimer, with the
// crash of CompleteActivity; the step it claims is held like any claim.
func (b *store) CompleteActivityClaim(ctx context.Context, p *backend.CompleteActivityParams,
	claim *backend.ClaimParams) (*backend.OrchestrationWorkItem, error) {
	b.s.begin()
	key := taskKey(p.TaskID, int64(p.Attempt))
	if p.Result != nil && p.Result.Type.KeptLate() && b.s.crashAt(key, crashAfterRun) {
		b.s.end(false, nil, []finished{{key: key, always: true}})
		return nil, errCrashed
	}
	wi, err := b.inner.CompleteActivityClaim(ctx, p, claim)
	var held []heldItem
	if wi != nil {
		held = []heldItem{{key: stepKey(wi.Instance.ID, wi.Attempt), owner: claim.Owner}}
	}
	b.s.end(true, held, []finished{{key: key, err: err}})
	return wi, err
}

// RenewActivityLease implements backend.Backend.
func (b *store) RenewActivityLease(ctx context.Context, p *backend.RenewLeaseParams) error {
	return b.about(taskKey(p.ID, p.Attempt), false, false, func() error { return b.inner.RenewActivityLease(ctx, p) })
}

// AbandonActivity implements backend.Backend.
func (b *store) AbandonActivity(ctx context.Context, p *backend.AbandonParams) error {
	return b.about(taskKey(p.ID, p.Attempt), true, true, func() error { return b.inner.AbandonActivity(ctx, p) })
}

// StartActivity implements backend.Backend. A delivery the test crashed
// after its start mark (CrashAfterStart, at-most-once) marks itself
// started in the store and is then told its lease is lost: its code never
// runs, and the next delivery is a possible duplicate.
func (b *store) StartActivity(ctx context.Context, p *backend.StartParams) error {
	key := taskKey(p.ID, p.Attempt)
	return b.about(key, false, false, func() error {
		err := b.inner.StartActivity(ctx, p)
		if err == nil && b.s.crashAt(key, crashAfterStart) {
			return errCrashed // wraps ErrLeaseLost: the delivery ends
		}
		return err
	})
}

// WorkAvailable implements backend.WorkNotifier: it is closed after each
// change that may have made work claimable, and when the clock moves.
func (b *store) WorkAvailable() <-chan struct{} { return b.s.workAvailable() }

// WatchFinish implements backend.FinishNotifier: the in-memory store's
// watch, which fires when the step that ends the instance commits.
func (b *store) WatchFinish(id string) (<-chan struct{}, func()) { return b.inner.WatchFinish(id) }

// InFlight implements backend.InFlightReader.
func (b *store) InFlight(ctx context.Context, instanceID string) (*backend.InFlight, error) {
	return b.inner.InFlight(ctx, instanceID)
}

// ClaimInstanceStep implements backend.InstanceClaimer.
func (b *store) ClaimInstanceStep(ctx context.Context, instanceID string, p *backend.ClaimParams) (*backend.OrchestrationWorkItem, error) {
	b.s.begin()
	wi, err := b.inner.ClaimInstanceStep(ctx, instanceID, p)
	var held []heldItem
	if wi != nil {
		held = []heldItem{{key: stepKey(wi.Instance.ID, wi.Attempt), owner: p.Owner}}
	}
	b.s.end(false, held, nil)
	return wi, err
}

// ProcessedRequests implements backend.RequestWindow.
func (b *store) ProcessedRequests(ctx context.Context, instanceID string, ids []string) ([]backend.ProcessedRequest, error) {
	return b.inner.ProcessedRequests(ctx, instanceID, ids)
}

// Close implements backend.Backend.
func (b *store) Close() error { return b.inner.Close() }
