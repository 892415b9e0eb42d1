package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// ClaimOrchestrationSteps implements backend.BatchClaimer:
// ClaimOrchestrationStep up to max times in one transaction, each of a
// different instance, in claim order. All claims commit before it returns.
func (b *Backend) ClaimOrchestrationSteps(ctx context.Context, p *backend.ClaimParams, max int) ([]*backend.OrchestrationWorkItem, error) {
	return b.claimSteps(ctx, "claim orchestration steps", p, max)
}

// claimedStep is a claimed step whose events are still encoded: they are
// decoded after the commit, outside the writer.
type claimedStep struct {
	wi *backend.OrchestrationWorkItem
	// prefix is the cached start of the history (epoch: the cache's epoch
	// when read), history the encoded events after it.
	prefix  []*backend.Event
	epoch   uint64
	history [][]byte
	msgs    [][]byte
}

func (b *Backend) claimSteps(ctx context.Context, op string, p *backend.ClaimParams, max int) ([]*backend.OrchestrationWorkItem, error) {
	return b.claimStepsOf(ctx, op, p, max, "")
}

// claimStepsOf claims up to max steps, or, when only is set, the step of
// that instance alone (ClaimInstanceStep).
func (b *Backend) claimStepsOf(ctx context.Context, op string, p *backend.ClaimParams, max int, only string) ([]*backend.OrchestrationWorkItem, error) {
	if err := p.Validate(); err != nil {
		return nil, b.fail(op, err)
	}
	if max <= 0 {
		return nil, nil
	}
	var claimed []claimedStep
	err := b.write(ctx, op, p.Now, 0, func(t *txn) error {
		claimed = claimed[:0]
		return b.claimStepsTx(t, p, t.now, max, only, &claimed)
	})
	if err != nil {
		return nil, err
	}
	return b.decodeClaims(op, claimed)
}

// claimStepsTx claims, inside a write operation, up to max steps at time
// at for p.Owner, or only the step of instance only when it is set,
// appending them to claimed.
func (b *Backend) claimStepsTx(t *txn, p *backend.ClaimParams, at time.Time, max int, only string, claimed *[]claimedStep) error {
	n := at.UnixNano()
	expires := at.Add(p.LeaseDuration)
	// The ready columns are kept exact, so a candidate always has a
	// visible message; stale only guards against a stale summary.
	for stale := 0; len(*claimed) < max && stale < 3; {
		var attempt, completed, started int64
		q, args := claimStepUpdate, []any{n, p.Owner, expires.UnixNano()}
		if only != "" {
			q, args = claimInstanceStepUpdate, append(args, only)
		}
		in, err := rules.ScanInstance(t.queryRow(q, args...), &attempt, &completed, &started)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		id := in.ID
		ids, msgs, err := t.visibleMessagesAt(id, n, b.maxStepMessages, in.Status == backend.StatusSuspended)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			// Undo the claim, which nobody has seen (a lapsed lease
			// and no lease are the same to every claim), and repair
			// the summary.
			b.log.Warn("sqlite: instance had a stale ready summary", "instance", id)
			stale++
			if _, err := t.exec(`UPDATE instances SET step_attempt = step_attempt - 1, lock_owner = '',
				lock_expires_at = 0 WHERE id = ?`, id); err != nil {
				return err
			}
			t.touched[id] = struct{}{}
			if err := t.flush(); err != nil {
				return err
			}
			continue
		}
		prefix, epoch := b.hist.get(id, in.ExecutionID)
		h, err := t.loadHistorySince(id, len(prefix))
		if err != nil {
			return err
		}
		*claimed = append(*claimed, claimedStep{
			wi: &backend.OrchestrationWorkItem{Instance: in, Messages: ids, Attempt: attempt,
				Deliveries: int(attempt - completed), LeaseExpiresAt: expires, StartedAttempt: startedSince(started, completed)},
			prefix: prefix, epoch: epoch, history: h, msgs: msgs,
		})
	}
	return nil
}

// decodeClaims decodes the events of committed claims, outside the writer.
func (b *Backend) decodeClaims(op string, claimed []claimedStep) ([]*backend.OrchestrationWorkItem, error) {
	wis := make([]*backend.OrchestrationWorkItem, len(claimed))
	for i, c := range claimed {
		// Stored events were checked when they were written, so this does
		// not fail; if it did, the instance would stay leased until the
		// lease lapses and be retried then.
		in := c.wi.Instance
		h, err := decodeHistory(in.ID, len(c.prefix), c.history)
		if err != nil {
			return nil, b.fail(op, err)
		}
		c.wi.History = append(append(make([]*backend.Event, 0, len(c.prefix)+len(h)), c.prefix...), h...)
		if len(h) > 0 && !in.Status.IsTerminal() {
			b.hist.fill(in.ID, in.ExecutionID, slices.Clone(c.wi.History), c.epoch)
		}
		for j, m := range c.wi.Messages {
			if m.Event, err = backend.DecodeEvent(c.msgs[j]); err != nil {
				return nil, b.fail(op, fmt.Errorf("message %q: %w", m.ID, err))
			}
		}
		wis[i] = c.wi
	}
	return wis, nil
}

// claimStepUpdate claims the instance claimStepQuery picks at ?1 for owner
// ?2 until ?3, in one statement that returns the instance, its step
// attempt and its completed attempt.
const claimStepUpdate = `UPDATE instances SET step_attempt = step_attempt + 1, lock_owner = ?2, lock_expires_at = ?3
	WHERE id = (` + claimStepQuery + `) RETURNING ` + rules.InstanceColumns + `, step_attempt, completed_attempt, step_started`

// startedSince is a step's start mark, step_started, if it was made since
// the last committed step (completed_attempt), else 0.
func startedSince(started, completed int64) int64 {
	if started > completed {
		return started
	}
	return 0
}

// claimInstanceStepUpdate is claimStepUpdate for instance ?4 alone, if it
// has a visible message and no live lease at ?1.
const claimInstanceStepUpdate = `UPDATE instances SET step_attempt = step_attempt + 1, lock_owner = ?2, lock_expires_at = ?3
	WHERE id = ?4 AND ready_at IS NOT NULL AND ready_at <= ?1 AND lock_expires_at <= ?1
	RETURNING ` + rules.InstanceColumns + `, step_attempt, completed_attempt, step_started`

// claimStepQuery picks the instance to claim at ?1: the better of the first
// free instance with a message visible at once (ready_at = 0, in ready_key
// order) and the first free one whose earliest timer is due (in ready_at
// order, which is ready_key's for instances with only timers written before
// they were due). Both halves are index range scans that skip only live
// leases.
const claimStepQuery = `SELECT id FROM (
	SELECT * FROM (SELECT id, ready_key FROM instances INDEXED BY instances_claim
		WHERE ready_at = 0 AND lock_expires_at <= ?1 ORDER BY ready_key LIMIT 1)
	UNION ALL
	SELECT * FROM (SELECT id, ready_key FROM instances INDEXED BY instances_claim
		WHERE ready_at > 0 AND ready_at <= ?1 AND lock_expires_at <= ?1 ORDER BY ready_at LIMIT 1)
) ORDER BY ready_key LIMIT 1`

// visibleMessagesAt returns up to limit messages of an instance visible at now (Unix ns) in
// the order they became visible (sort_at, then seq: at the same instant, the
// message written first), their events still encoded; only its control
// messages if controlOnly. The inbox_instance_sort and inbox_control_sort
// indexes (instance_id, sort_at, and the rowid seq) give that order.
func (t *txn) visibleMessagesAt(id string, now int64, limit int, controlOnly bool) ([]*backend.Message, [][]byte, error) {
	q := visibleMessagesQuery
	if controlOnly {
		q = visibleControlMessagesQuery
	}
	rows, err := t.query(q, id, now, limit)
	if err != nil {
		return nil, nil, err
	}
	var msgs []*backend.Message
	var data [][]byte
	for rows.Next() {
		m := &backend.Message{InstanceID: id}
		var d []byte
		var visible int64
		if err := rows.Scan(&m.ID, &m.ExecutionID, &d, &visible); err != nil {
			_ = rows.Close()
			return nil, nil, err
		}
		m.VisibleAt = rules.FromNanos(visible)
		msgs = append(msgs, m)
		data = append(data, d)
	}
	return msgs, data, closeRows(rows)
}

const (
	visibleMessagesQuery = `SELECT id, execution_id, event, visible_at FROM inbox INDEXED BY inbox_instance_sort
		WHERE instance_id = ?1 AND visible_at <= ?2 ORDER BY sort_at, seq LIMIT ?3`
	visibleControlMessagesQuery = `SELECT id, execution_id, event, visible_at FROM inbox INDEXED BY inbox_control_sort
		WHERE instance_id = ?1 AND control = 1 AND visible_at <= ?2 ORDER BY sort_at, seq LIMIT ?3`
)

// StartOrchestrationStep implements backend.Backend: it records the
// delivery as the step's newest started one and, with
// synchronous=NORMAL, syncs the WAL before returning.
func (b *Backend) StartOrchestrationStep(ctx context.Context, p *backend.StartParams) error {
	const op = "start orchestration step"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	seq, err := b.writeSeq(ctx, op, time.Time{}, 0, func(t *txn) error {
		if err := t.fence(p.ID, p.ExecutionID, p.Attempt); err != nil {
			return err
		}
		_, err := t.exec(`UPDATE instances SET step_started = step_attempt WHERE id = ?`, p.ID)
		return err
	})
	if err != nil {
		return err
	}
	return b.syncStart(op, seq, p.ID)
}
