package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

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
	if p.InstanceID == "" {
		// The claim must lock the instance before the completion locks the
		// task (directClaimQuery), which takes the instance's ID.
		if p, err = b.withTaskInstance(ctx, p); err != nil {
			return nil, b.fail(op, err)
		}
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

// withTaskInstance returns p naming the instance and execution of its task,
// read from the task's row; p itself if the task is gone (the completion
// is then refused, and nothing is claimed).
func (b *Backend) withTaskInstance(ctx context.Context, p *backend.CompleteActivityParams) (*backend.CompleteActivityParams, error) {
	c := *p
	err := b.pool.QueryRow(ctx, b.q(`SELECT instance_id, execution_id FROM {s}.activity_tasks WHERE id = $1`), p.TaskID).
		Scan(&c.InstanceID, &c.ExecutionID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return p, nil
	case err != nil:
		return nil, err
	}
	return &c, nil
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
		var direct *backend.Message // the result, if the step takes it directly
		if pre != nil {
			inserted, wis, now, direct, err = b.directClaimOn(t, p, data, claim, pre)
		} else {
			inserted, wis, now, err = b.completeClaimOn(t.ctx, t.tx, p, data, claim, nil)
		}
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
		if direct != nil {
			wi.Messages = append(wi.Messages, direct)
		}
		if len(wi.Messages) == 0 {
			// A stale ready summary (see CompleteActivityClaim): the claim
			// commits and is released after.
			stale = wi
			return nil
		}
		out.Step = wi
		committed, err = t.runStep(wi, now, direct, run, out)
		return err
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

// runStep runs wi, claimed at now in t, through run, and writes the step
// run returns in t: the rest of a fused transaction (CompleteActivityStep,
// CreateInstanceStep). direct is the message the step got without an
// inbox row (the result, the start), nil if none: recorded as consumed if
// the step consumed it, written to the inbox otherwise. It returns the
// step it wrote (out then records it: Committed, Activities), or nil with
// the step declined (run returned none, or one that is not fusableStep or
// not valid for wi): the claim then commits alone. A failure of the
// step's writes wraps errStepWrite unless the commit may have happened.
func (t *txn) runStep(wi *backend.OrchestrationWorkItem, now int64, direct *backend.Message,
	run func(wi *backend.OrchestrationWorkItem) *backend.StepCommit, out *backend.ActivityStep) (*backend.CompleteOrchestrationStepParams, error) {
	sc := run(wi)
	if sc == nil || sc.Params == nil || !fusableStep(sc.Params) || sc.Params.InstanceID != wi.Instance.ID ||
		sc.Params.Attempt != wi.Attempt || rules.ValidateStep(sc.Params, sc.ActivityClaim, sc.MaxActivities) != nil {
		// Declined: the claim commits alone, the direct message in the
		// inbox, where the step's own commit consumes it.
		if direct != nil {
			t.now = now
			return nil, t.deliver(direct)
		}
		return nil, nil
	}
	sp := sc.Params
	max := sc.MaxActivities
	if sc.ActivityClaim == nil || sp.Status.IsTerminal() {
		max = 0 // a step that ends its instance claims nothing
	}
	ec := eagerClaim{claim: sc.ActivityClaim, max: max}
	t.now = rules.Nanos(sp.Now)
	// The direct message, consumed, is recorded as consumed; left
	// unconsumed it goes to the inbox with the step's messages (and with
	// the inbox, if the step ends the instance).
	var directIDs []string
	msgs := sp.Messages
	if direct != nil {
		if slices.Contains(sp.ConsumedMessageIDs, direct.ID) {
			directIDs = []string{direct.ID}
		} else {
			msgs = append(slices.Clip(msgs), direct)
		}
	}
	if simpleStep(sp) {
		// One round trip with the COMMIT, as oneTripStep's.
		if err := t.applyStep(sp, stepWrite{flush: true, final: true, direct: directIDs}, msgs, &ec); err != nil {
			if _, committing := t.tx.finalOutcome(err); committing {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", errStepWrite, err)
		}
	} else {
		// A step that ends its instance: its writes, then the clean-up of
		// its inbox and tasks (rules.StepRelations), the ready summary
		// with the COMMIT.
		if err := t.applyStep(sp, stepWrite{direct: directIDs}, nil, &ec); err != nil {
			return nil, fmt.Errorf("%w: %w", errStepWrite, err)
		}
		if err := rules.StepRelations(t, sp, func(_ int, m *backend.Message) error { return t.deliver(m) }); err != nil {
			return nil, fmt.Errorf("%w: %w", errStepWrite, err)
		}
	}
	out.Committed, out.Activities = true, ec.claimed
	return sp, nil
}

// directClaimQuery claims, for the completion of task $1 at attempt $2, the
// step of the task's instance before the completion is written, so that
// the result can go to the step without passing through the inbox. It
// claims only what fusedClaimQuery would claim once the result was in the
// inbox: the current execution of a live, unsuspended instance whose lease
// is free, the completion valid (the attempt the task holds, not parked),
// the task the instance's last one and its result ($6) not consumed. It
// takes the row before the completion locks the task (instance, then
// task, the order of every step), SKIP LOCKED as every claim, but FOR
// UPDATE, as a step locks its instance, not FOR NO KEY UPDATE as other
// claims: the step is written in this transaction, so the row lock must
// keep out completions of the instance's other deliveries (KEY SHARE), as
// it does for any step. Held FOR NO KEY UPDATE, a stale delivery's
// completion of the same task took the row in KEY SHARE mode and waited
// for the task's row, which this transaction held, while this
// transaction's inbox writes (deliverQuery, FOR UPDATE) waited for that
// KEY SHARE: a deadlock (TestFusedStepAndAStaleCompletion). The claimed
// instance is recorded in fusedClaimedSetting, which
// keeps directCompleteQuery from writing the result to the inbox and gates
// the reads that follow.
var directClaimQuery = `WITH task AS (
	SELECT instance_id, execution_id FROM {s}.activity_tasks
	 WHERE id = $1 AND attempt = $2 AND attempt >= 1 AND claimed_at <> 0 AND visible_at <> ` + parkedSQL + `
), pick AS (
	SELECT i.id AS cid FROM {s}.instances i, task
	 WHERE i.id = task.instance_id AND i.execution_id = task.execution_id AND i.status IN ('Pending', 'Running')
	 AND i.lock_expires_at <= ` + clock("$3") + `
	 AND NOT EXISTS (SELECT 1 FROM {s}.activity_tasks t WHERE t.instance_id = i.id AND t.id <> $1)
	 AND NOT EXISTS (SELECT 1 FROM {s}.inbox_consumed c WHERE c.instance_id = i.id AND c.id = $6)
	 FOR UPDATE OF i SKIP LOCKED
)` + fusedClaimTail("$3", "$4", "$5")

// directCompleteQuery is completeActivityQuery that leaves the result out
// of the inbox of the instance directClaimQuery claimed: the claimed step
// consumes it, or the transaction writes it to the inbox later (spill).
var directCompleteQuery = strings.Replace(completeActivityQuery,
	`WHERE st.status NOT IN ('Completed', 'Failed', 'Terminated')`,
	`WHERE st.status NOT IN ('Completed', 'Failed', 'Terminated')
		AND d.instance_id IS DISTINCT FROM current_setting(`+fusedClaimedSetting+`, true)`, 1)

// directClaimOn is completeClaimOn for CompleteActivityStep with the
// task's instance known (pre): the pipeline claims the instance's step
// first (directClaimQuery), then completes the task as
// CompleteActivityClaim does, without writing the result to the inbox of
// the instance it claimed, and reads the claimed step's messages and
// history. It returns, with the claim, the result as the message the step
// consumes (direct): the last of the step's messages. When the inbox holds
// as many messages as a step takes, the result is written to the inbox
// behind them instead (nil direct).
func (b *Backend) directClaimOn(t *txn, p *backend.CompleteActivityParams, data []byte,
	claim *backend.ClaimParams, pre *stepRead) (inserted bool, wis []*backend.OrchestrationWorkItem, now int64, direct *backend.Message, err error) {
	h := pre.hs[0]
	resultID := backend.ResultMessageID(p.TaskID)
	batch := &pgx.Batch{}
	batch.Queue(b.q(directClaimQuery), p.TaskID, int64(p.Attempt), rules.Nanos(claim.Now), claim.Owner, int64(claim.LeaseDuration), resultID)
	batch.Queue(b.q(lockTaskQuery), p.TaskID)
	batch.Queue(b.q(directCompleteQuery), p.TaskID, int64(p.Attempt), resultID,
		data, p.Result.Type.IsControl(), rules.Nanos(p.Now))
	batch.Queue(b.q(fusedMessagesQuery), h.wi.Instance.ID, rules.Nanos(claim.Now), b.maxStepMessages)
	batch.Queue(b.q(fusedHistoryQuery), h.wi.Instance.ID, int32(len(h.prefix)))
	br := t.tx.SendBatch(t.ctx, batch)
	defer func() { _ = br.Close() }()
	rows, err := br.Query()
	if err != nil {
		return false, nil, 0, nil, err
	}
	wis, now, err = scanClaimedSteps(rows)
	if err != nil {
		return false, nil, 0, nil, err
	}
	var current, claimedAt, visible int64
	found := true
	if err := br.QueryRow().Scan(&current, &claimedAt, &visible); errors.Is(err, pgx.ErrNoRows) {
		found = false
	} else if err != nil {
		return false, nil, 0, nil, err
	}
	var deleted, ins int64
	if err := br.QueryRow().Scan(&deleted, &ins); err != nil {
		return false, nil, 0, nil, err
	}
	if err := pre.scan(br); err != nil {
		return false, nil, 0, nil, err
	}
	if err := br.Close(); err != nil {
		return false, nil, 0, nil, err
	}
	if deleted == 0 {
		// The task changed between the claim's read and the delete's lock
		// (or the completion is stale): the error rolls back the claim
		// with the rest, so no claim a stale completion made is handed out.
		return false, nil, 0, nil, completionRefused(p, found, current, claimedAt, visible)
	}
	if len(wis) == 0 {
		return ins > 0, nil, now, nil, nil
	}
	wi := wis[0]
	direct, err = storedMessage(&backend.Message{ID: resultID, InstanceID: wi.Instance.ID, ExecutionID: wi.Instance.ExecutionID}, data)
	if err != nil {
		return false, nil, 0, nil, err
	}
	if len(h.wi.Messages) >= b.maxStepMessages {
		// Messages may wait behind the ones read: the result goes behind
		// them, in the inbox, as it would have without the claim.
		t.now = now
		if err := t.deliver(direct); err != nil {
			return false, nil, 0, nil, err
		}
		return true, wis, now, nil, nil
	}
	return false, wis, now, direct, nil
}
