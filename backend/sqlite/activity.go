package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
	"github.com/durohq/duro/internal/fault"
)

// ClaimActivities implements backend.BatchClaimer: ClaimActivity up to max
// times in one transaction, oldest task first. Each task gets its own
// attempt increment and lease; all commit together before it returns.
func (b *Backend) ClaimActivities(ctx context.Context, p *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	return b.claimActivities(ctx, "claim activities", p, max)
}

func (b *Backend) claimActivities(ctx context.Context, op string, p *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	if err := p.Validate(); err != nil {
		return nil, b.fail(op, err)
	}
	if max <= 0 {
		return nil, nil
	}
	var (
		wis   []*backend.ActivityWorkItem
		opts  []string
		claim = activityClaim{owner: p.Owner, lease: p.LeaseDuration}
	)
	if p.ActivityNames != nil {
		if len(p.ActivityNames) == 0 {
			return nil, nil
		}
		names, err := json.Marshal(p.ActivityNames)
		if err != nil {
			return nil, b.fail(op, err)
		}
		claim.names = string(names)
	}
	err := b.write(ctx, op, p.Now, 0, func(t *txn) error {
		wis, opts = wis[:0], opts[:0]
		return claim.run(t, max, func(wi *backend.ActivityWorkItem, o string) {
			wis = append(wis, wi)
			opts = append(opts, o)
		})
	})
	if err != nil {
		return nil, err
	}
	for i, wi := range wis {
		if err := json.Unmarshal([]byte(opts[i]), &wi.Task.Options); err != nil {
			// Stored options are always valid JSON; the task is leased, so
			// it is retried after the lease.
			return nil, b.fail(op, fmt.Errorf("activity task %q: options: %w", wi.Task.ID, err))
		}
	}
	// With synchronous=NORMAL the commit above may not be on disk yet.
	// That is fine for every claim: a worker marks an at-most-once
	// delivery started (StartActivity, which syncs) before its code runs,
	// and that sync makes the claim durable too (A1).
	return wis, nil
}

// activityClaim claims activity tasks inside a write operation.
type activityClaim struct {
	owner string
	lease time.Duration
	// names, when set, is the JSON array of the activity names to claim.
	names string
}

// run claims up to max tasks, calling found for each with its options'
// JSON (decoded by the caller, outside the writer).
func (c activityClaim) run(t *txn, max int, found func(wi *backend.ActivityWorkItem, opts string)) error {
	n := t.now.UnixNano()
	expires := t.now.Add(c.lease)
	q, args := claimActivitiesQuery, []any{n, max}
	if c.names != "" {
		q, args = claimNamedActivitiesQuery, append(args, c.names)
	}
	rows, err := t.query(q, args...)
	if err != nil {
		return err
	}
	type cand struct {
		task              backend.ActivityTask
		opts              string
		prevClaim, schedd int64
		details           []byte
		started, released int
	}
	var cands []*cand
	for rows.Next() {
		c := &cand{}
		if err := rows.Scan(&c.task.ID, &c.task.InstanceID, &c.task.ExecutionID, &c.task.TaskID, &c.task.Name,
			&c.task.Input, &c.opts, &c.prevClaim, &c.schedd, &c.details, &c.task.PriorAttempts,
			&c.started, &c.released); err != nil {
			_ = rows.Close()
			return err
		}
		cands = append(cands, c)
	}
	if err := closeRows(rows); err != nil {
		return err
	}
	for _, cd := range cands {
		var attempt int
		if err := t.queryRow(`UPDATE activity_tasks SET attempt = attempt + 1, lease_owner = ?,
			lease_expires_at = ?, claimed_at = ? WHERE id = ? RETURNING attempt`,
			c.owner, expires.UnixNano(), n, cd.task.ID).Scan(&attempt); err != nil {
			return err
		}
		found(&backend.ActivityWorkItem{
			Task:               &cd.task,
			Attempt:            attempt,
			PreviousDeliveryAt: rules.FromNanos(cd.prevClaim),
			ScheduledAt:        rules.FromNanos(cd.schedd),
			LeaseExpiresAt:     expires,
			HeartbeatDetails:   cd.details,
			StartedAttempt:     cd.started,
			Released:           cd.released,
		}, cd.opts)
		fault.Point(fault.ActivityClaimBeforeCommit)
	}
	return nil
}

// claimActivitiesQuery picks up to ?2 tasks to claim at ?1, oldest first:
// the first free tasks visible at once (visible_at = 0, oldest first) and
// the first free tasks whose retry time has come. Both halves are index
// range scans that skip only live leases. The limits read "?2+0": SQLite
// plans with the value of a bare "LIMIT ?" and re-prepares the statement
// whenever it changes, which costs more than the claim.
const claimActivitiesQuery = `SELECT id, instance_id, execution_id, task_id, name, input, options, claimed_at,
	created_at, heartbeat_details, prior_attempts, started_attempt, released FROM activity_tasks WHERE rowid IN (` + claimActivityRowids + `)
	ORDER BY created_at, rowid`

// claimNamedActivitiesQuery is claimActivitiesQuery for the tasks of the
// activities named by the JSON array ?3 only (ClaimParams.ActivityNames).
var claimNamedActivitiesQuery = strings.ReplaceAll(claimActivitiesQuery, "lease_expires_at <= ?1 ORDER BY",
	"lease_expires_at <= ?1 AND name IN (SELECT value FROM json_each(?3)) ORDER BY")

const claimActivityRowids = `SELECT r FROM (
	SELECT * FROM (SELECT rowid AS r, created_at FROM activity_tasks INDEXED BY activity_tasks_claim
		WHERE visible_at = 0 AND lease_expires_at <= ?1 ORDER BY created_at LIMIT ?2+0)
	UNION ALL
	SELECT * FROM (SELECT rowid AS r, created_at FROM activity_tasks INDEXED BY activity_tasks_claim
		WHERE visible_at > 0 AND visible_at <= ?1 AND lease_expires_at <= ?1 ORDER BY visible_at LIMIT ?2+0)
) ORDER BY created_at LIMIT ?2+0`

// CompleteActivity implements backend.Backend. The result goes to the
// task's instance and execution as message ResultMessageID(TaskID); it is
// dropped if the instance is gone. A task parked because its instance
// finished while this delivery ran has its TaskCompleted or TaskFailed
// result appended to the instance's history as a LateResult event, and
// the call then returns ErrInstanceFinished.
func (b *Backend) CompleteActivity(ctx context.Context, p *backend.CompleteActivityParams) error {
	const op = "complete activity"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	msgID := backend.ResultMessageID(p.TaskID)
	data, err := backend.EncodeEvent(p.Result)
	if err != nil {
		return b.fail(op, fmt.Errorf("message %q: %w", msgID, err))
	}
	var c activityCompletion
	err = b.write(ctx, op, p.Now, len(data)+smallOp, func(t *txn) error {
		return c.run(t, p, msgID, data)
	})
	if err == nil && c.ended != "" {
		err = b.fail(op, rules.LateError(p.TaskID, c.inst, c.ended))
	}
	return err
}

// activityCompletion completes an activity delivery inside a write
// operation.
type activityCompletion struct {
	// inst is the task's instance; ended is set when the instance had
	// finished (the result went to its history); delivered when the result
	// went to its inbox (or was found there).
	inst      string
	ended     backend.Status
	delivered bool
}

// run deletes the task, fenced by p.Attempt, and delivers its result
// (message msgID, encoded as data) or keeps it late.
func (c *activityCompletion) run(t *txn, p *backend.CompleteActivityParams, msgID string, data []byte) error {
	*c = activityCompletion{}
	// The delete is the fence: it removes the task only if attempt is
	// its newest delivery.
	var exec, name string
	var visible int64
	err := t.queryRow(`DELETE FROM activity_tasks WHERE id = ? AND attempt = ? AND claimed_at <> 0
		RETURNING instance_id, execution_id, name, visible_at`, p.TaskID, p.Attempt).Scan(&c.inst, &exec, &name, &visible)
	if errors.Is(err, sql.ErrNoRows) {
		_, _, err = t.fenceTask(p.TaskID, int64(p.Attempt))
		if err == nil {
			err = fmt.Errorf("activity task %q: attempt %d not deleted", p.TaskID, p.Attempt)
		}
	}
	if err != nil {
		return err
	}
	if visible == parkedAt {
		c.ended, err = rules.KeepLate(t, c.inst, name, p.Result)
		return err
	}
	err = t.deliver(&backend.Message{ID: msgID, InstanceID: c.inst, ExecutionID: exec, Event: p.Result}, data)
	if err != nil && !rules.Undeliverable(err) {
		return err
	}
	c.delivered = err == nil
	return nil
}

// CompleteActivityClaim implements backend.ActivityStepClaimer: in one
// write operation (one transaction, shared by the group commit) it runs
// CompleteActivity's completion and then, if the result reached the
// inbox and the instance has no other activity task, ClaimInstanceStep's
// claim of the task's instance at claim.Now (zero: the store's clock).
func (b *Backend) CompleteActivityClaim(ctx context.Context, p *backend.CompleteActivityParams, claim *backend.ClaimParams) (*backend.OrchestrationWorkItem, error) {
	const op = "complete activity"
	if err := p.Validate(); err != nil {
		return nil, b.fail(op, err)
	}
	if err := claim.Validate(); err != nil {
		return nil, b.fail(op, err)
	}
	msgID := backend.ResultMessageID(p.TaskID)
	data, err := backend.EncodeEvent(p.Result)
	if err != nil {
		return nil, b.fail(op, fmt.Errorf("message %q: %w", msgID, err))
	}
	var c activityCompletion
	var claimed []claimedStep
	err = b.write(ctx, op, p.Now, len(data)+smallOp, func(t *txn) error {
		claimed = claimed[:0]
		if err := c.run(t, p, msgID, data); err != nil || !c.delivered {
			return err
		}
		// While other tasks of the instance are in flight (a fan-out),
		// their results are left to collect for one step.
		var busy int
		if err := t.queryRow(`SELECT EXISTS (SELECT 1 FROM activity_tasks WHERE instance_id = ?)`, c.inst).Scan(&busy); err != nil || busy != 0 {
			return err
		}
		// The claim reads the ready summary the delivery changed.
		if err := t.flush(); err != nil {
			return err
		}
		if err := b.claimStepsTx(t, claim, nowOr(t.clock, claim.Now), 1, c.inst, &claimed); err != nil {
			return err
		}
		if len(claimed) > 0 {
			// The result is the claimed step's to process: nothing for
			// the orchestration loops to wake up for.
			t.work &^= workSteps
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if c.ended != "" {
		return nil, b.fail(op, rules.LateError(p.TaskID, c.inst, c.ended))
	}
	wis, err := b.decodeClaims(op, claimed)
	if err != nil || len(wis) == 0 {
		return nil, err
	}
	// With synchronous=NORMAL the claim may not be on disk yet, as for any
	// claim: a delivery marks itself started (which syncs) before it runs
	// code that must run at most once.
	return wis[0], nil
}

// RenewActivityLease implements backend.Backend. A lapsed lease that nobody
// claimed since may be renewed.
func (b *Backend) RenewActivityLease(ctx context.Context, p *backend.RenewLeaseParams) error {
	const op = "renew activity lease"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	return b.write(ctx, op, p.Now, len(p.Details)+smallOp, func(t *txn) error {
		if _, _, err := t.fenceTask(p.ID, p.Attempt); err != nil {
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
// p.RetryAfter after the abandon by the store's clock when it is positive,
// else at p.RetryAt (at once when zero), with Attempt+1; a parked task (its
// instance finished) is deleted instead. With p.Unstarted, a delivery that
// did not mark itself started is counted in the task's released
// deliveries.
func (b *Backend) AbandonActivity(ctx context.Context, p *backend.AbandonParams) error {
	const op = "abandon activity"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	return b.write(ctx, op, time.Time{}, 0, func(t *txn) error {
		if _, _, err := t.fenceTask(p.ID, p.Attempt); err != nil {
			return err
		}
		// A parked task's instance has finished: nothing delivers it again.
		res, err := t.exec(`DELETE FROM activity_tasks WHERE id = ? AND visible_at = ?`, p.ID, int64(parkedAt))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		t.work |= workTasks
		_, err = t.exec(`UPDATE activity_tasks SET lease_owner = '', lease_expires_at = 0, visible_at = ?1,
			released = released + (?2 AND started_attempt <> attempt) WHERE id = ?3`, rules.Nanos(retryAt(t, p)), p.Unstarted, p.ID)
		return err
	})
}

// StartActivity implements backend.Backend: it records the delivery as
// the task's newest started one and, with synchronous=NORMAL, syncs the
// WAL before returning (one fsync for every start and claim committed by
// then: concurrent starts share it).
func (b *Backend) StartActivity(ctx context.Context, p *backend.StartParams) error {
	const op = "start activity"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	seq, err := b.writeSeq(ctx, op, time.Time{}, 0, func(t *txn) error {
		// The update is the fence; fenceTask says why it wrote nothing.
		res, err := t.exec(`UPDATE activity_tasks SET started_attempt = attempt
			WHERE id = ? AND attempt = ? AND claimed_at <> 0`, p.ID, p.Attempt)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		_, _, err = t.fenceTask(p.ID, p.Attempt)
		if err == nil {
			err = fmt.Errorf("activity task %q: attempt %d not marked started", p.ID, p.Attempt)
		}
		return err
	})
	if err != nil {
		return err
	}
	return b.syncStart(op, seq, p.ID)
}

// syncStart makes the start mark committed in commit seq durable.
func (b *Backend) syncStart(op string, seq uint64, id string) error {
	if b.syncWAL == nil {
		return nil
	}
	if err := b.syncCommit(seq); err != nil {
		return b.fail(op, fmt.Errorf("sync WAL for the start of %q: %w", id, err))
	}
	return nil
}
