package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"duro/backend"
	"duro/internal/fault"
)

// ClaimActivity implements backend.Backend. It picks the oldest task (by
// creation time) that is visible and whose lease is free or lapsed, increments its attempt number and takes the lease, and
// commits that before returning.
func (b *Backend) ClaimActivity(ctx context.Context, p *backend.ClaimParams) (*backend.ActivityWorkItem, error) {
	const op = "claim activity"
	if err := validateClaim(p); err != nil {
		return nil, b.fail(op, err)
	}
	var wi *backend.ActivityWorkItem
	err := b.write(ctx, op, func(tx *sql.Tx) error {
		t := newTxn(ctx, tx, now(p.Now))
		n := t.now.UnixNano()
		var (
			task              backend.ActivityTask
			opts              string
			prevClaim, schedd int64
			details           []byte
		)
		err := t.queryRow(`SELECT id, instance_id, execution_id, task_id, name, input, options, claimed_at, created_at,
			heartbeat_details FROM activity_tasks WHERE rowid = (`+claimActivityQuery+`)`, n).
			Scan(&task.ID, &task.InstanceID, &task.ExecutionID, &task.TaskID, &task.Name, &task.Input, &opts,
				&prevClaim, &schedd, &details)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(opts), &task.Options); err != nil {
			return fmt.Errorf("activity task %q: options: %w", task.ID, err)
		}
		expires := t.now.Add(p.LeaseDuration)
		var attempt int
		if err := t.queryRow(`UPDATE activity_tasks SET attempt = attempt + 1, lease_owner = ?,
			lease_expires_at = ?, claimed_at = ? WHERE id = ? RETURNING attempt`,
			p.Owner, expires.UnixNano(), n, task.ID).Scan(&attempt); err != nil {
			return err
		}
		wi = &backend.ActivityWorkItem{
			Task:               &task,
			Attempt:            attempt,
			PreviousDeliveryAt: fromNanos(prevClaim),
			ScheduledAt:        fromNanos(schedd),
			LeaseExpiresAt:     expires,
			HeartbeatDetails:   details,
		}
		fault.Point(fault.ActivityClaimBeforeCommit)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if wi != nil && wi.Task.Options.AtMostOnce && b.syncWAL != nil {
		// With synchronous=NORMAL the commit above is not on disk yet: a
		// power loss could forget the attempt and run the code again as
		// attempt 1. An at-most-once claim must be durable before its code
		// runs, so sync the WAL now (A1).
		if err := b.syncWAL(); err != nil {
			return nil, b.fail(op, fmt.Errorf("sync WAL for at-most-once claim of %q: %w", wi.Task.ID, err))
		}
	}
	return wi, nil
}

// claimActivityQuery picks the rowid of the task to claim at ?1: the older of
// the first free task visible at once (visible_at = 0, oldest first) and the
// first free task whose retry time has come. Both halves are index range
// scans that skip only live leases.
const claimActivityQuery = `SELECT r FROM (
	SELECT * FROM (SELECT rowid AS r, created_at FROM activity_tasks INDEXED BY activity_tasks_claim
		WHERE visible_at = 0 AND lease_expires_at <= ?1 ORDER BY created_at LIMIT 1)
	UNION ALL
	SELECT * FROM (SELECT rowid AS r, created_at FROM activity_tasks INDEXED BY activity_tasks_claim
		WHERE visible_at > 0 AND visible_at <= ?1 AND lease_expires_at <= ?1 ORDER BY visible_at LIMIT 1)
) ORDER BY created_at LIMIT 1`

// taskFence checks that attempt is the newest delivery of an existing task
// and returns the task's instance and execution; otherwise ErrLeaseLost.
func (t *txn) taskFence(id string, attempt int64) (instanceID, executionID string, err error) {
	var current, claimedAt int64
	err = t.queryRow(`SELECT attempt, claimed_at, instance_id, execution_id FROM activity_tasks WHERE id = ?`, id).
		Scan(&current, &claimedAt, &instanceID, &executionID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", "", fmt.Errorf("activity task %q is gone: %w", id, backend.ErrLeaseLost)
	case err != nil:
		return "", "", err
	case claimedAt == 0:
		// Not delivered yet: its attempt number is PriorAttempts, which
		// belongs to deliveries of an earlier task.
		return "", "", fmt.Errorf("activity task %q has not been delivered: %w", id, backend.ErrLeaseLost)
	case attempt < 1 || attempt != current:
		return "", "", fmt.Errorf("activity task %q: attempt %d, newest delivery is %d: %w",
			id, attempt, current, backend.ErrLeaseLost)
	}
	return instanceID, executionID, nil
}

// CompleteActivity implements backend.Backend. The result goes to the
// task's instance and execution as message ResultMessageID(TaskID); it is
// dropped if the instance is gone or has finished.
func (b *Backend) CompleteActivity(ctx context.Context, p *backend.CompleteActivityParams) error {
	const op = "complete activity"
	switch {
	case p == nil:
		return b.fail(op, errors.New("nil params"))
	case p.TaskID == "":
		return b.fail(op, errors.New("empty task ID"))
	case p.Result == nil:
		return b.fail(op, fmt.Errorf("activity task %q: nil result", p.TaskID))
	}
	work := false
	err := b.write(ctx, op, func(tx *sql.Tx) error {
		t := newTxn(ctx, tx, now(p.Now))
		inst, exec, err := t.taskFence(p.TaskID, int64(p.Attempt))
		if err != nil {
			return err
		}
		if _, err := t.exec(`DELETE FROM activity_tasks WHERE id = ?`, p.TaskID); err != nil {
			return err
		}
		err = t.deliver(&backend.Message{
			ID:          backend.ResultMessageID(p.TaskID),
			InstanceID:  inst,
			ExecutionID: exec,
			Event:       p.Result,
		})
		if err != nil && !isUndeliverable(err) {
			return err
		}
		work = t.work
		return t.flush()
	})
	if err == nil && work {
		b.work.notify()
	}
	return err
}

// RenewActivityLease implements backend.Backend. A lapsed lease that nobody
// claimed since may be renewed.
func (b *Backend) RenewActivityLease(ctx context.Context, p *backend.RenewLeaseParams) error {
	const op = "renew activity lease"
	if err := validateRenew(p); err != nil {
		return b.fail(op, err)
	}
	return b.write(ctx, op, func(tx *sql.Tx) error {
		t := newTxn(ctx, tx, now(p.Now))
		if _, _, err := t.taskFence(p.ID, p.Attempt); err != nil {
			return err
		}
		if p.Details != nil {
			_, err := t.exec(`UPDATE activity_tasks SET lease_expires_at = ?, heartbeat_details = ? WHERE id = ?`,
				t.now.Add(p.LeaseDuration).UnixNano(), p.Details, p.ID)
			return err
		}
		_, err := t.exec(`UPDATE activity_tasks SET lease_expires_at = ? WHERE id = ?`,
			t.now.Add(p.LeaseDuration).UnixNano(), p.ID)
		return err
	})
}

// AbandonActivity implements backend.Backend. The task is claimable again
// at p.RetryAt (at once when zero), with Attempt+1.
func (b *Backend) AbandonActivity(ctx context.Context, p *backend.AbandonParams) error {
	const op = "abandon activity"
	if err := validateAbandon(p); err != nil {
		return b.fail(op, err)
	}
	err := b.write(ctx, op, func(tx *sql.Tx) error {
		t := newTxn(ctx, tx, time.Time{})
		if _, _, err := t.taskFence(p.ID, p.Attempt); err != nil {
			return err
		}
		_, err := t.exec(`UPDATE activity_tasks SET lease_owner = '', lease_expires_at = 0, visible_at = ?
			WHERE id = ?`, nanos(p.RetryAt), p.ID)
		return err
	})
	if err == nil {
		b.work.notify()
	}
	return err
}

func encodeActivityOptions(o backend.ActivityOptions) (string, error) {
	data, err := json.Marshal(o)
	return string(data), err
}
