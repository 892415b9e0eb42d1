package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

var _ backend.StartStepCommitter = (*Backend)(nil)

// errPlainCreate sends CreateInstanceStep to CreateInstance: the
// creation met an existing row or a consumed start message, which
// CreateInstance reports or handles.
var errPlainCreate = errors.New("create without the step")

// createClaimQuery creates instance $1 as createQuery does, claimed for
// its first step: attempt 1, leased to $10 for $11 from the creation's
// time ($6, 0: the database clock), with no message in its inbox (the step
// gets its start message, $12, directly; nothing is ready, so the ready
// summary is empty). It creates nothing, and returns no row, when a row of
// the ID exists or the start message was consumed before; CreateInstance
// then sorts that out. The row it returns is a claim's
// (scanClaimedSteps), whose time is the creation's.
var createClaimQuery = `WITH at AS (
	SELECT ` + clock("$6") + ` AS t
), cur AS (
	SELECT status FROM {s}.instances WHERE id = $1 FOR UPDATE
), ins AS (
	INSERT INTO {s}.instances (id, name, execution_id, status, input, created_at, updated_at,
		parent_instance_id, parent_execution_id, parent_task_id, step_attempt, lock_owner, lock_expires_at)
	SELECT $1, $2, $3, $4, $5, at.t, at.t, $7, $8, $9, 1, $10, at.t + $11::bigint FROM at
	WHERE NOT EXISTS (SELECT 1 FROM cur)
		AND NOT EXISTS (SELECT 1 FROM {s}.inbox_consumed c WHERE c.instance_id = $1 AND c.id = $12)
	ON CONFLICT (id) DO NOTHING
	RETURNING created_at AS claimed_at, step_attempt, completed_attempt, step_started, lock_expires_at, ` + rules.InstanceColumns + `
)
SELECT * FROM ins`

// CreateInstanceStep implements backend.StartStepCommitter. One
// transaction: BEGIN with the creation claimed (createClaimQuery, at the
// database clock unless p.Now is set), run, and the step's writes with the
// COMMIT (runStep): two round trips for what takes a creation, a claim,
// the claim's reads and a step's commit otherwise. The start message,
// made once the creation's time is known, never enters the inbox unless
// the step leaves it unconsumed or is declined.
func (b *Backend) CreateInstanceStep(ctx context.Context, p *backend.CreateInstanceParams, claim *backend.ClaimParams,
	run func(wi *backend.OrchestrationWorkItem) *backend.StepCommit) (*backend.ActivityStep, error) {
	const op = "create instance"
	if p.IfExists != backend.IfExistsFail || !p.StartAt.IsZero() {
		return &backend.ActivityStep{}, b.CreateInstance(ctx, p)
	}
	if err := p.Validate(); err != nil {
		return nil, b.fail(op, err)
	}
	if err := claim.Validate(); err != nil {
		return nil, b.fail(op, err)
	}
	if b.closed.Load() {
		return nil, b.fail(op, errClosed)
	}
	for try := 0; ; try++ {
		out, t, committing, err := b.createInstanceStep(ctx, p, claim, run)
		switch {
		case err == nil:
			b.signal(t.work, t.wakeAt)
			return out, nil
		case errors.Is(err, errPlainCreate):
			return &backend.ActivityStep{}, b.CreateInstance(ctx, p)
		case errors.Is(err, errStepWrite):
			b.log.Debug("postgres: a first step committed with its creation failed; creating alone", "instance", p.ID, "err", err)
			return &backend.ActivityStep{}, b.CreateInstance(ctx, p)
		}
		if try < maxRetries && ctx.Err() == nil && !b.closed.Load() && retryable(err, committing) {
			continue
		}
		return nil, b.fail(op, err)
	}
}

// createInstanceStep is one try of CreateInstanceStep.
func (b *Backend) createInstanceStep(ctx context.Context, p *backend.CreateInstanceParams, claim *backend.ClaimParams,
	run func(wi *backend.OrchestrationWorkItem) *backend.StepCommit) (out *backend.ActivityStep, t *txn, committing bool, err error) {
	out = &backend.ActivityStep{}
	var committed *backend.CompleteOrchestrationStepParams
	t, committing, err = b.tryWrite(ctx, p.Now, func(t *txn) error {
		pid, pexec, ptask := parentColumns(p.Parent)
		rows, err := t.tx.Query(t.ctx, b.q(createClaimQuery), p.ID, p.Name, p.ExecutionID, backend.StatusPending, p.Input,
			rules.Nanos(p.Now), pid, pexec, ptask, claim.Owner, int64(claim.LeaseDuration), backend.StartMessageID(p.ID, p.ExecutionID))
		if err != nil {
			return err
		}
		wis, now, err := scanClaimedSteps(rows)
		if err != nil {
			return err
		}
		if len(wis) == 0 {
			return errPlainCreate
		}
		wi := wis[0]
		start, err := asStored(rules.StartMessage(p, wi.Instance.CreatedAt))
		if err != nil {
			return err
		}
		wi.Messages = []*backend.Message{start}
		out.Step = wi
		committed, err = t.runStep(wi, now, start, run, out)
		return err
	})
	if err != nil {
		return nil, t, committing, err
	}
	if committed != nil {
		b.stepCommitted(committed)
	}
	return out, t, false, nil
}

// asStored returns m with its event as a step reads it from the store
// (encoded and decoded), so that a step given m directly sees what its
// replays will see in its history.
func asStored(m *backend.Message) (*backend.Message, error) {
	data, err := backend.EncodeEvent(m.Event)
	if err != nil {
		return nil, fmt.Errorf("message %q: %w", m.ID, err)
	}
	return storedMessage(m, data)
}

// storedMessage returns m with its event decoded from data, its encoding.
func storedMessage(m *backend.Message, data []byte) (*backend.Message, error) {
	ev, err := backend.DecodeEvent(data)
	if err != nil {
		return nil, fmt.Errorf("message %q: %w", m.ID, err)
	}
	c := *m
	c.Event = ev
	return &c, nil
}
