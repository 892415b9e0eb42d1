package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

var _ backend.ActivityStepCommitter = (*Backend)(nil)

// errStepWrite marks a failure of the step's writes in completeActivityStep:
// the transaction rolled back, completion included.
var errStepWrite = errors.New("step writes failed")

// CompleteActivityStep implements backend.ActivityStepCommitter. One
// transaction on one connection: the pipeline of CompleteActivityClaim
// behind BEGIN (one round trip), the claimed step's messages and history
// (one round trip, the history cache serving its prefix), run, and the
// step's writes with the COMMIT (one round trip). The claim's UPDATE holds
// the instance's row lock until the commit, so the step needs no fencing
// statement: the attempt it writes is the one this transaction claimed.
//
// It declines the steps that write other instances (messages to them,
// children started or rewound) or continue as new (fusableStep): taking
// other rows' locks after this instance's would break the order in which
// every step locks them. A step that ends its instance is written with
// its clean-up (inbox, tasks, request window), as CompleteOrchestrationStep
// writes it. A failure of the step's writes rolls everything back; the
// completion is then made by CompleteActivityClaim.
func (b *Backend) CompleteActivityStep(ctx context.Context, p *backend.CompleteActivityParams, claim *backend.ClaimParams,
	run func(wi *backend.OrchestrationWorkItem) *backend.StepCommit) (*backend.ActivityStep, error) {
	const op = "complete activity"
	data, err := b.claimingCompletion(op, p, claim)
	if err != nil {
		return nil, err
	}
	for try := 0; ; try++ {
		out, t, committing, err := b.completeActivityStep(ctx, p, data, claim, run)
		switch {
		case err == nil:
			b.signal(t.work, t.wakeAt)
			return out, nil
		case errors.Is(err, errParked):
			return &backend.ActivityStep{}, b.completeLate(ctx, op, p)
		case errors.Is(err, backend.ErrLeaseLost):
			return nil, b.fail(op, err)
		case errors.Is(err, errStepWrite):
			// Nothing committed; complete and claim without the step.
			b.log.Debug("postgres: a step committed with its activity's completion failed; completing alone", "task", p.TaskID, "err", err)
			wi, err := b.CompleteActivityClaim(ctx, p, claim)
			if err != nil {
				return nil, err
			}
			return &backend.ActivityStep{Step: wi}, nil
		}
		if try < maxRetries && ctx.Err() == nil && !b.closed.Load() && retryable(err, committing) {
			continue
		}
		return nil, b.fail(op, err)
	}
}

// fusableStep reports whether CompleteActivityStep writes step p in the
// completion's transaction: p writes no row of another instance (its
// messages all go to its own instance, it starts and rewinds no children;
// a sub-orchestration's last step, which reports to its parent, is not
// one) and does not continue as new, and it carries the worker's time.
func fusableStep(p *backend.CompleteOrchestrationStepParams) bool {
	if p.ContinueAsNew != nil || len(p.StartInstances) > 0 || len(p.RewindInstances) > 0 || p.Now.IsZero() {
		return false
	}
	for _, m := range p.Messages {
		if m.InstanceID != p.InstanceID {
			return false
		}
	}
	return true
}

// completeActivityStep is one try of CompleteActivityStep. committing is
// set when the failure may have come after the commit.
func (b *Backend) completeActivityStep(ctx context.Context, p *backend.CompleteActivityParams, data []byte, claim *backend.ClaimParams,
	run func(wi *backend.OrchestrationWorkItem) *backend.StepCommit) (out *backend.ActivityStep, t *txn, committing bool, err error) {
	out = &backend.ActivityStep{}
	var inserted bool
	var stale *backend.OrchestrationWorkItem
	var committed *backend.CompleteOrchestrationStepParams // the step, once it committed
	t, committing, err = b.tryWrite(ctx, time.Time{}, func(t *txn) error {
		var wis []*backend.OrchestrationWorkItem
		var now int64
		var err error
		// With the task's instance known, its step's data is read in the
		// completion's pipeline, behind the claim.
		var pre *stepRead
		if p.InstanceID != "" {
			pre = b.newStepRead([]*backend.OrchestrationWorkItem{{
				Instance: &backend.Instance{ID: p.InstanceID, ExecutionID: p.ExecutionID}}})
		}
		inserted, wis, now, err = b.completeClaimOn(t.ctx, t.tx, p, data, claim, pre)
		if err != nil || len(wis) == 0 {
			return err
		}
		wi := wis[0]
		if ph := pre.first(); ph != nil && ph.wi.Instance.ID == wi.Instance.ID &&
			ph.wi.Instance.ExecutionID == wi.Instance.ExecutionID && wi.Instance.Status != backend.StatusSuspended {
			wi.Messages, wi.History = ph.wi.Messages, []*backend.Event{}
			ph.wi = wi
			err = pre.finish(t.ctx, t.tx)
		} else {
			err = b.loadStepDataOn(t.ctx, t.tx, wis, now)
		}
		if err != nil {
			return err
		}
		if len(wi.Messages) == 0 {
			// A stale ready summary (see CompleteActivityClaim): the claim
			// commits and is released after.
			stale = wi
			return nil
		}
		out.Step = wi
		sc := run(wi)
		if sc == nil || sc.Params == nil || !fusableStep(sc.Params) || sc.Params.InstanceID != wi.Instance.ID ||
			sc.Params.Attempt != wi.Attempt || rules.ValidateStep(sc.Params, sc.ActivityClaim, sc.MaxActivities) != nil {
			return nil // declined: the completion and the claim commit alone
		}
		sp := sc.Params
		max := sc.MaxActivities
		if sc.ActivityClaim == nil || sp.Status.IsTerminal() {
			max = 0 // a step that ends its instance claims nothing
		}
		ec := eagerClaim{claim: sc.ActivityClaim, max: max}
		t.now = rules.Nanos(sp.Now)
		if simpleStep(sp) {
			// One round trip with the COMMIT, as oneTripStep's.
			if err := t.applyStep(sp, stepWrite{flush: true, final: true}, sp.Messages, &ec); err != nil {
				if _, committing := t.tx.finalOutcome(err); committing {
					return err
				}
				return fmt.Errorf("%w: %w", errStepWrite, err)
			}
		} else {
			// A step that ends its instance: its writes, then the
			// clean-up of its inbox and tasks (rules.StepRelations), the
			// ready summary with the COMMIT.
			if err := t.applyStep(sp, stepWrite{}, nil, &ec); err != nil {
				return fmt.Errorf("%w: %w", errStepWrite, err)
			}
			if err := rules.StepRelations(t, sp, func(_ int, m *backend.Message) error { return t.deliver(m) }); err != nil {
				return fmt.Errorf("%w: %w", errStepWrite, err)
			}
		}
		out.Committed, out.Activities, committed = true, ec.claimed, sp
		return nil
	})
	if err != nil {
		return nil, t, committing, err
	}
	if committed != nil {
		b.stepCommitted(committed)
	}
	switch {
	case stale != nil:
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		b.releaseStale(lctx, stale)
	case out.Step == nil:
		b.signal(inserted, nil)
	}
	return out, t, false, nil
}
