package rules

import (
	"context"
	"time"

	"github.com/durohq/duro/backend"
)

// Store is what Methods builds on: a SQL backend's write transaction and
// its way of reporting errors.
type Store interface {
	// OpTime is the time an operation given now runs at, as far as it is
	// known before its transaction: now itself, the store's clock when now
	// is zero and the store keeps time in the process, or zero when the
	// store reads its clock inside the transaction.
	OpTime(now time.Time) time.Time
	// Write runs fn as one write transaction of op at now (zero: the
	// store's clock) and returns once it has committed or failed. pre,
	// when not nil, is the one message fn inserts, as the rules will build
	// it (at a non-zero now): a store may encode it before the
	// transaction.
	Write(ctx context.Context, op string, now time.Time, pre *backend.Message, fn func(Tx) error) error
	// Fail wraps err, a failure of op that no transaction ran for, as the
	// store's errors are wrapped.
	Fail(op string, err error) error
}

// Methods gives a SQL backend the methods of backend.Backend (and of its
// capabilities) that are one rule in one transaction: the checks of their
// parameters and the rule, with the store's Write around it. A backend
// embeds it, pointing S at itself.
type Methods struct {
	S Store
}

// CreateInstance implements backend.Backend. Of concurrent creates of one
// ID exactly one creates the instance (or replaces a finished one); the
// others get ErrInstanceExists.
func (m Methods) CreateInstance(ctx context.Context, p *backend.CreateInstanceParams) error {
	const op = "create instance"
	if err := p.Validate(); err != nil {
		return m.S.Fail(op, err)
	}
	at := m.S.OpTime(p.Now)
	var start *backend.Message
	if !at.IsZero() {
		start = StartMessage(p, at)
	}
	return m.S.Write(ctx, op, at, start, func(tx Tx) error {
		return CreateInstance(tx, p, p.IfExists == backend.IfExistsReplaceFinished)
	})
}

// EnqueueMessage implements backend.Backend. A zero VisibleAt makes the
// message visible to every claim, whatever clock the claim passes.
func (m Methods) EnqueueMessage(ctx context.Context, msg *backend.Message) error {
	const op = "enqueue message"
	if err := msg.Validate(); err != nil {
		return m.S.Fail(op, err)
	}
	return m.S.Write(ctx, op, time.Time{}, msg, func(tx Tx) error { return Enqueue(tx, msg) })
}

// RewindInstance implements backend.Backend. The ExecutionRewound message
// is addressed to the instance's current execution and visible at once;
// like any message, it is ignored if its ID is in an inbox or was consumed
// by the current execution.
func (m Methods) RewindInstance(ctx context.Context, p *backend.RewindParams) error {
	const op = "rewind instance"
	if err := p.Validate(); err != nil {
		return m.S.Fail(op, err)
	}
	return m.S.Write(ctx, op, p.Now, nil, func(tx Tx) error {
		return Rewind(tx, p.InstanceID, p.MessageID, p.Reason)
	})
}

// PurgeInstance implements backend.Backend: a finished instance is deleted
// with everything it owns; a live one is refused with
// ErrInstanceNotFinished.
func (m Methods) PurgeInstance(ctx context.Context, id string) error {
	return m.S.Write(ctx, "purge instance", time.Time{}, nil, func(tx Tx) error { return PurgeInstance(tx, id) })
}

// PruneWorkers implements backend.WorkerRegistry.
func (m Methods) PruneWorkers(ctx context.Context, p *backend.PruneWorkersParams) (int, error) {
	const op = "prune workers"
	if err := p.Validate(); err != nil {
		return 0, m.S.Fail(op, err)
	}
	var n int
	err := m.S.Write(ctx, op, time.Time{}, nil, func(tx Tx) error {
		var err error
		n, err = tx.DeleteWorkers(p.Before)
		return err
	})
	return n, err
}

// Backend is what a SQL backend built on this package implements:
// backend.Backend and every capability the engine uses when a backend has
// it. Each SQL backend asserts it once, so a capability missing from one of
// them is a compile error rather than a feature that quietly goes away.
type Backend interface {
	backend.Backend
	backend.WorkNotifier
	backend.BatchClaimer
	backend.StepActivityClaimer
	backend.ActivityStepClaimer
	backend.RequestWindow
	backend.InFlightReader
	backend.InstanceClaimer
	backend.WorkerRegistry
	backend.FinishNotifier
}
