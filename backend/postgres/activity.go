package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// claimActivitiesQuery leases up to $2 activity tasks at time $1 (0: the
// database clock) for owner $3 for $4 ns, in one statement (one
// transaction, committed before it returns): the oldest tasks that are
// visible and whose lease is free or lapsed, skipping the rows other
// claimers hold (FOR UPDATE SKIP LOCKED). It increments their attempt
// numbers and returns each with the time of its previous delivery.
var claimActivitiesQuery = `WITH now_ready AS MATERIALIZED (
	SELECT id AS cid, created_at AS cc, seq AS cs, claimed_at AS prev FROM {s}.activity_tasks
	 WHERE visible_at = 0 AND lease_expires_at <= ` + clock("$1") + `
	 ORDER BY created_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED
), later_ready AS MATERIALIZED (
	SELECT id, created_at, seq, claimed_at FROM {s}.activity_tasks
	 WHERE visible_at > 0 AND visible_at <= ` + clock("$1") + ` AND lease_expires_at <= ` + clock("$1") + `
	 ORDER BY visible_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED
), cand AS (
	SELECT * FROM now_ready UNION ALL SELECT * FROM later_ready
), pick AS (
	SELECT cid, prev FROM cand ORDER BY cc, cs LIMIT $2
)
UPDATE {s}.activity_tasks SET attempt = attempt + 1, lease_owner = $3,
	lease_expires_at = ` + clock("$1") + ` + $4, claimed_at = ` + clock("$1") + `
FROM pick WHERE id = pick.cid
RETURNING id, instance_id, execution_id, task_id, name, input, options, attempt, pick.prev, created_at, seq,
	lease_expires_at, heartbeat_details, prior_attempts, started_attempt, released`

// claimNamedActivitiesQuery is claimActivitiesQuery for the tasks of the
// activities named by the array $5 only (ClaimParams.ActivityNames).
var claimNamedActivitiesQuery = strings.ReplaceAll(claimActivitiesQuery, "lease_expires_at <= "+clock("$1")+"\n\t ORDER BY",
	"lease_expires_at <= "+clock("$1")+" AND name = ANY($5::text[])\n\t ORDER BY")

// ClaimActivities leases up to max activity tasks in one round trip: it is
// ClaimActivity for several tasks at once, with the same rules for each
// (the claim commits, with every attempt number, before the work items
// are returned). It returns an empty slice when there is nothing to claim.
// The work items are oldest first. Concurrent claimers never get the same
// delivery: each task is leased to one of them, with its own attempt.
func (b *Backend) ClaimActivities(ctx context.Context, p *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	return b.claimActivities(ctx, "claim activities", p, max)
}

func (b *Backend) claimActivities(ctx context.Context, op string, p *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	if err := p.Validate(); err != nil {
		return nil, b.fail(op, err)
	}
	if b.closed.Load() {
		return nil, b.fail(op, errClosed)
	}
	if max < 1 {
		return []*backend.ActivityWorkItem{}, nil
	}
	q, args := claimActivitiesQuery, []any{rules.Nanos(p.Now), max, p.Owner, int64(p.LeaseDuration)}
	if p.ActivityNames != nil {
		if len(p.ActivityNames) == 0 {
			return []*backend.ActivityWorkItem{}, nil
		}
		q, args = claimNamedActivitiesQuery, append(args, p.ActivityNames)
	}
	for try := 0; ; try++ {
		rows, err := b.pool.Query(ctx, b.q(q), args...)
		var wis []*backend.ActivityWorkItem
		if err == nil {
			wis, err = scanClaimedActivities(rows)
		}
		if err == nil {
			return wis, nil
		}
		if try < 2 && ctx.Err() == nil && !b.closed.Load() && isSafeToRetry(err) {
			continue
		}
		return nil, b.fail(op, err)
	}
}

func scanClaimedActivities(rows pgx.Rows) ([]*backend.ActivityWorkItem, error) {
	defer rows.Close()
	type claimed struct {
		wi      *backend.ActivityWorkItem
		created int64
		seq     int64
	}
	var cs []claimed
	for rows.Next() {
		var (
			task                             backend.ActivityTask
			taskID                           int64
			opts                             string
			attempt, prev, created, seq, exp int64
			prior, started, released         int64
			details                          []byte
		)
		if err := rows.Scan(&task.ID, &task.InstanceID, &task.ExecutionID, &taskID, &task.Name, &task.Input, &opts,
			&attempt, &prev, &created, &seq, &exp, &details, &prior, &started, &released); err != nil {
			return nil, err
		}
		task.TaskID, task.PriorAttempts = int(taskID), int(prior)
		if err := json.Unmarshal([]byte(opts), &task.Options); err != nil {
			return nil, fmt.Errorf("activity task %q: options: %w", task.ID, err)
		}
		cs = append(cs, claimed{wi: &backend.ActivityWorkItem{
			Task:               &task,
			Attempt:            int(attempt),
			PreviousDeliveryAt: rules.FromNanos(prev),
			ScheduledAt:        rules.FromNanos(created),
			LeaseExpiresAt:     rules.FromNanos(exp),
			HeartbeatDetails:   details,
			StartedAttempt:     int(started),
			Released:           int(released),
		}, created: created, seq: seq})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].created != cs[j].created {
			return cs[i].created < cs[j].created
		}
		return cs[i].seq < cs[j].seq
	})
	wis := make([]*backend.ActivityWorkItem, len(cs))
	for i, c := range cs {
		wis[i] = c.wi
	}
	return wis, nil
}

// completeActivityQuery deletes task $1 if delivery $2 is its newest, and
// delivers result $4 (message ID $3, control flag $5) to the task's
// instance and execution, at time $6 (0: the database clock), unless the
// instance has finished or the ID was used; it updates the instance's
// ready summary if the new message changes it. The statement before it
// holds the instance's row in KEY SHARE mode (see CompleteActivity).
var completeActivityQuery = `WITH d AS (
	DELETE FROM {s}.activity_tasks WHERE id = $1 AND attempt = $2 AND attempt >= 1 AND claimed_at <> 0
		AND visible_at <> ` + parkedSQL + `
	RETURNING instance_id, execution_id
), st AS (
	SELECT i.status FROM {s}.instances i JOIN d ON i.id = d.instance_id
), ins AS (
	INSERT INTO {s}.inbox (id, instance_id, execution_id, event, control, visible_at, sort_at, created_at)
	SELECT $3, d.instance_id, d.execution_id, $4, $5, 0, ` + clock("$6") + `, ` + clock("$6") + `
	FROM d, st
	WHERE st.status NOT IN ('Completed', 'Failed', 'Terminated')
		AND NOT EXISTS (SELECT 1 FROM {s}.inbox_consumed c WHERE c.instance_id = d.instance_id AND c.id = $3)
	ON CONFLICT (id) DO NOTHING
	RETURNING instance_id, control, sort_at
), upd AS (
	UPDATE {s}.instances i SET ready_at = 0, ready_key = LEAST(i.ready_key, ins.sort_at)
	FROM ins WHERE i.id = ins.instance_id AND (i.status <> 'Suspended' OR ins.control)
		AND (i.ready_at IS DISTINCT FROM 0 OR i.ready_key IS NULL OR i.ready_key > ins.sort_at)
	RETURNING 1
)
SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM ins)`

// CompleteActivity implements backend.Backend. The result goes to the
// task's instance and execution as message ResultMessageID(TaskID); it is
// dropped if the instance is gone. A task parked because its instance
// finished while this delivery ran is completed by completeLate instead,
// which keeps the result in the instance's history. The whole completion is
// one round trip: a pipeline of two statements that PostgreSQL runs as
// one implicit transaction (lock the instance's row, then lock and read
// the task: lockTaskQuery; delete it and deliver the result, fenced by the
// attempt).
//
// The instance's row is locked in KEY SHARE mode, which completions of
// the same instance share: the results of a fan-out commit in parallel
// instead of queueing for the row through each other's WAL flush. The
// lock still excludes a step of the instance (which locks FOR UPDATE), so
// a step's recomputed ready summary never misses a result committed
// beside it; and a completion writes the summary only when its message
// changes it (the first result after the inbox was drained).
func (b *Backend) CompleteActivity(ctx context.Context, p *backend.CompleteActivityParams) error {
	const op = "complete activity"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	data, err := backend.EncodeEvent(p.Result)
	if err != nil {
		return b.fail(op, fmt.Errorf("activity task %q: result: %w", p.TaskID, err))
	}
	if b.closed.Load() {
		return b.fail(op, errClosed)
	}
	for try := 0; ; try++ {
		inserted, err := b.completeActivity(ctx, p, data)
		if errors.Is(err, errParked) {
			return b.completeLate(ctx, op, p)
		}
		if err == nil {
			b.signal(inserted, nil)
			return nil
		}
		if errors.Is(err, backend.ErrLeaseLost) {
			return b.fail(op, err)
		}
		if try < maxRetries && ctx.Err() == nil && !b.closed.Load() && (isSafeToRetry(err) || retryable(err, true)) {
			continue
		}
		return b.fail(op, err)
	}
}

func (b *Backend) completeActivity(ctx context.Context, p *backend.CompleteActivityParams, data []byte) (bool, error) {
	batch := &pgx.Batch{}
	batch.Queue(b.q(lockTaskQuery), p.TaskID)
	batch.Queue(b.q(completeActivityQuery), p.TaskID, int64(p.Attempt), backend.ResultMessageID(p.TaskID),
		data, p.Result.Type.IsControl(), rules.Nanos(p.Now))
	br := b.pool.SendBatch(ctx, batch)
	defer func() { _ = br.Close() }()
	var current, claimedAt, visible int64
	found := true
	if err := br.QueryRow().Scan(&current, &claimedAt, &visible); errors.Is(err, pgx.ErrNoRows) {
		found = false
	} else if err != nil {
		return false, err
	}
	var deleted, inserted int64
	if err := br.QueryRow().Scan(&deleted, &inserted); err != nil {
		return false, err
	}
	if err := br.Close(); err != nil {
		return false, err
	}
	if deleted == 0 {
		return false, completionRefused(p, found, current, claimedAt, visible)
	}
	return inserted > 0, nil
}

// lockTaskQuery takes a completion's locks in one statement, in the order
// every step takes them: the row of task $1's instance in KEY SHARE mode
// (in the scan's filter, before the task's row is locked), then the task's
// row; and reads the task's attempt, claimed_at and visible_at. The
// instance's lock, which completions of the same instance share, keeps a
// step of the instance (which locks it FOR UPDATE) from missing the result
// in its ready summary. The filter is always true: a task without an
// instance row is still read.
const lockTaskQuery = `SELECT t.attempt, t.claimed_at, t.visible_at FROM {s}.activity_tasks t
	WHERE t.id = $1
		AND (SELECT count(*) FROM (SELECT 1 FROM {s}.instances i WHERE i.id = t.instance_id FOR KEY SHARE) k) >= 0
	FOR UPDATE OF t`

// errParked says that the task of a completion is parked: its instance
// finished while the delivery ran.
var errParked = errors.New("the task's instance has finished")

// parkedSQL is parkedAt in SQL text.
var parkedSQL = strconv.FormatInt(parkedAt, 10)

// completeLate completes a parked task, in one transaction holding its
// instance's row: it deletes the task, fenced by the attempt, and appends
// a TaskCompleted or TaskFailed result to the instance's history as a
// LateResult event (other results are dropped). It returns an error
// wrapping ErrInstanceFinished once the task is deleted.
func (b *Backend) completeLate(ctx context.Context, op string, p *backend.CompleteActivityParams) error {
	var inst string
	var ended backend.Status
	err := b.write(ctx, op, p.Now, func(t *txn) error {
		ended = ""
		if err := t.queryRow(`SELECT instance_id FROM {s}.activity_tasks WHERE id = $1`, p.TaskID).Scan(&inst); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("activity task %q is gone: %w", p.TaskID, backend.ErrLeaseLost)
			}
			return err
		}
		st, err := t.lock(inst)
		if err != nil {
			return err
		}
		var name string
		err = t.queryRow(`DELETE FROM {s}.activity_tasks WHERE id = $1 AND attempt = $2 AND attempt >= 1
			AND claimed_at <> 0 RETURNING name`, p.TaskID, int64(p.Attempt)).Scan(&name)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("activity task %q: attempt %d is not its newest delivery, or it is gone: %w",
				p.TaskID, p.Attempt, backend.ErrLeaseLost)
		}
		if err != nil {
			return err
		}
		if _, ok := st[inst]; !ok {
			return nil // gone with its history: nowhere to keep the result
		}
		ended, err = rules.KeepLate(t, inst, name, p.Result)
		return err
	})
	if err == nil && ended != "" {
		err = b.fail(op, rules.LateError(p.TaskID, inst, ended))
	}
	return err
}

// fencedTaskUpdate runs a single-statement update of task id fenced by
// attempt ($2), and if it changed nothing, reads the task to say why:
// ErrLeaseLost.
func (b *Backend) fencedTaskUpdate(ctx context.Context, op, id string, attempt int64, set string, args ...any) error {
	return b.fencedTaskWrite(ctx, op, id, attempt, `UPDATE {s}.activity_tasks SET `+set+` WHERE id = $1 AND attempt = $2
		AND attempt >= 1 AND claimed_at <> 0`, args...)
}

// fencedTaskWrite is fencedTaskUpdate for a whole statement, which must
// write (or return) one row when delivery $2 of task $1 is the newest.
func (b *Backend) fencedTaskWrite(ctx context.Context, op, id string, attempt int64, query string, args ...any) error {
	if b.closed.Load() {
		return b.fail(op, errClosed)
	}
	query = b.q(query)
	args = append([]any{id, attempt}, args...)
	var n int64
	for try := 0; ; try++ {
		tag, err := b.pool.Exec(ctx, query, args...)
		if err == nil {
			n = tag.RowsAffected()
			break
		}
		if try < 2 && ctx.Err() == nil && !b.closed.Load() && isSafeToRetry(err) {
			continue
		}
		return b.fail(op, err)
	}
	if n == 1 {
		return nil
	}
	var current, claimedAt int64
	found := true
	err := b.read(ctx, op, func(q querier) error {
		err := q.QueryRow(ctx, b.q(`SELECT attempt, claimed_at FROM {s}.activity_tasks WHERE id = $1`), id).
			Scan(&current, &claimedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := rules.FenceTask(id, attempt, found, current, claimedAt); err != nil {
		return b.fail(op, err)
	}
	return b.fail(op, fmt.Errorf("activity task %q: attempt %d lost its lease concurrently: %w", id, attempt, backend.ErrLeaseLost))
}

// RenewActivityLease implements backend.Backend. A lapsed lease that nobody
// claimed since may be renewed; non-nil Details replace the stored
// heartbeat details.
func (b *Backend) RenewActivityLease(ctx context.Context, p *backend.RenewLeaseParams) error {
	const op = "renew activity lease"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	return b.fencedTaskUpdate(ctx, op, p.ID, p.Attempt,
		`lease_expires_at = `+clock("$3")+` + $4, heartbeat_details = COALESCE($5, heartbeat_details)`,
		rules.Nanos(p.Now), int64(p.LeaseDuration), p.Details)
}

// abandonActivityQuery releases delivery $2 of task $1, visible again $4
// ns after now by the database clock when $4 > 0, else at $3, or deletes the task if it is parked (its instance finished: nothing
// delivers it again). Both halves see the same row version, so a task
// parked concurrently is never made claimable again.
var abandonActivityQuery = `WITH del AS (
	DELETE FROM {s}.activity_tasks WHERE id = $1 AND attempt = $2 AND attempt >= 1 AND claimed_at <> 0
		AND visible_at = ` + parkedSQL + ` RETURNING id
), upd AS (
	UPDATE {s}.activity_tasks SET lease_owner = '', lease_expires_at = 0, visible_at = ` + retryAt("$3", "$4") + `,
		released = released + CASE WHEN $5 AND started_attempt <> attempt THEN 1 ELSE 0 END
	WHERE id = $1 AND attempt = $2 AND attempt >= 1 AND claimed_at <> 0 AND visible_at <> ` + parkedSQL + `
	RETURNING id
)
SELECT id FROM del UNION ALL SELECT id FROM upd`

// AbandonActivity implements backend.Backend. The task is claimable again
// p.RetryAfter after the abandon by the database clock when it is
// positive, else at p.RetryAt (at once when zero), with Attempt+1; a
// parked task (its instance finished) is deleted instead. With
// p.Unstarted, a delivery that did not mark itself started is counted in
// the task's released deliveries.
func (b *Backend) AbandonActivity(ctx context.Context, p *backend.AbandonParams) error {
	const op = "abandon activity"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	if err := b.fencedTaskWrite(ctx, op, p.ID, p.Attempt, abandonActivityQuery, rules.Nanos(p.RetryAt), int64(p.RetryAfter), p.Unstarted); err != nil {
		return err
	}
	b.signalRetry(p)
	return nil
}

// StartActivity implements backend.Backend: it records the delivery as the
// task's newest started one, in one fenced statement (durable on return
// with synchronous_commit on, PostgreSQL's default).
func (b *Backend) StartActivity(ctx context.Context, p *backend.StartParams) error {
	const op = "start activity"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	return b.fencedTaskUpdate(ctx, op, p.ID, p.Attempt, `started_attempt = attempt`)
}

// fusedInstanceSetting is the transaction-local setting through which the
// completion of CompleteActivityClaim names the task's instance to the
// claim that follows it in the same pipeline: set only when the completion
// deleted the task (its delivery was the newest), so a stale completion
// claims nothing.
const fusedInstanceSetting = `'duro.fused_instance'`

// completeActivityClaimQuery is completeActivityQuery that also records
// the task's instance in fusedInstanceSetting when it deleted the task.
var completeActivityClaimQuery = strings.Replace(completeActivityQuery,
	`SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM ins)`,
	`SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM ins),
	set_config(`+fusedInstanceSetting+`, COALESCE((SELECT instance_id FROM d), ''), true)`, 1)

// fusedClaimedSetting is the transaction-local setting through which the
// claim of CompleteActivityClaim names the instance it claimed to the reads
// that follow it in the pipeline.
const fusedClaimedSetting = `'duro.fused_claimed'`

// fusedMessagesQuery is stepMessagesOneQuery gated by the fused claim:
// the messages of instance $1 visible at the claim's time ($2, 0: the
// database clock), at most $3, if the claim before it in the pipeline
// claimed $1 (nothing otherwise).
var fusedMessagesQuery = `SELECT m.instance_id, m.id, m.execution_id, m.event, m.visible_at FROM {s}.inbox m
	WHERE m.instance_id = $1 AND $1 = current_setting(` + fusedClaimedSetting + `, true)
		AND m.visible_at <= ` + clock("$2") + `
	ORDER BY m.sort_at, m.seq LIMIT $3`

// fusedHistoryQuery is stepHistoryOneQuery gated by the fused claim, as
// fusedMessagesQuery.
const fusedHistoryQuery = `SELECT $1::text, h.seq, h.event, h.xmin::text::bigint FROM {s}.history h
	WHERE h.instance_id = $1 AND $1 = current_setting(` + fusedClaimedSetting + `, true) AND h.seq >= $2
	ORDER BY h.seq`

// fusedClaimQuery is claimInstanceStepQuery for the instance
// completeActivityClaimQuery recorded, if any, and only if it has no other
// activity task (one whose completion has not committed counts); it
// records the instance it claims in fusedClaimedSetting.
var fusedClaimQuery = `WITH pick AS (
	SELECT id AS cid FROM {s}.instances
	 WHERE id = NULLIF(current_setting(` + fusedInstanceSetting + `, true), '')
	 AND NOT EXISTS (SELECT 1 FROM {s}.activity_tasks t WHERE t.instance_id = {s}.instances.id)
	 AND ready_at IS NOT NULL AND ready_at <= ` + clock("$1") + ` AND lock_expires_at <= ` + clock("$1") + `
	 FOR NO KEY UPDATE SKIP LOCKED
)` + fusedClaimTail("$1", "$2", "$3")

// fusedClaimTail ends a fused claim whose CTE pick names the instance to
// claim: it leases the instance to owner for lease from now (the
// statement's parameters) and records it in fusedClaimedSetting.
func fusedClaimTail(now, owner, lease string) string {
	return `, c AS (
	UPDATE {s}.instances SET step_attempt = step_attempt + 1, lock_owner = ` + owner + `,
		lock_expires_at = ` + clock(now) + ` + ` + lease + `
	FROM pick WHERE id = pick.cid
	RETURNING ` + clock(now) + ` AS claimed_at, step_attempt, completed_attempt, step_started, lock_expires_at, ` + rules.InstanceColumns + `
)
SELECT * FROM c WHERE set_config(` + fusedClaimedSetting + `, c.id, true) <> ''`
}

// CompleteActivityClaim implements backend.ActivityStepClaimer. The
// completion and the claim are one round trip: the pipeline of
// CompleteActivity (lock the instance's row in KEY SHARE mode and the
// task's, delete it and deliver the result) followed by the claim
// of the task's instance, all in one implicit transaction. The claim takes
// the row FOR NO KEY UPDATE SKIP LOCKED, as every claim does, so of
// concurrent completions of one instance at most one claims its step, and
// a claim or step of another worker in progress makes it claim nothing.
// The claimed step's messages and history are read after the commit, as
// every claim's are (loadStepData), so that the history cache serves its
// prefix: one more round trip, but a step's cost does not grow with its
// history, as it did while the pipeline read the whole history.
func (b *Backend) CompleteActivityClaim(ctx context.Context, p *backend.CompleteActivityParams, claim *backend.ClaimParams) (*backend.OrchestrationWorkItem, error) {
	const op = "complete activity"
	data, err := b.claimingCompletion(op, p, claim)
	if err != nil {
		return nil, err
	}
	for try := 0; ; try++ {
		inserted, wi, err := b.completeActivityClaim(ctx, p, data, claim)
		if errors.Is(err, errParked) {
			return nil, b.completeLate(ctx, op, p)
		}
		if err == nil {
			if wi == nil {
				b.signal(inserted, nil)
				return nil, nil
			}
			if len(wi.Messages) == 0 {
				// A stale ready summary, which the transactions keep
				// from happening.
				lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				b.releaseStale(lctx, wi)
				return nil, nil
			}
			return wi, nil
		}
		if errors.Is(err, backend.ErrLeaseLost) {
			return nil, b.fail(op, err)
		}
		if try < maxRetries && ctx.Err() == nil && !b.closed.Load() && (isSafeToRetry(err) || retryable(err, true)) {
			continue
		}
		return nil, b.fail(op, err)
	}
}

// claimingCompletion checks a completion that also claims (p and claim)
// and returns its encoded result, or the error to return.
func (b *Backend) claimingCompletion(op string, p *backend.CompleteActivityParams, claim *backend.ClaimParams) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, b.fail(op, err)
	}
	if err := claim.Validate(); err != nil {
		return nil, b.fail(op, err)
	}
	data, err := backend.EncodeEvent(p.Result)
	if err != nil {
		return nil, b.fail(op, fmt.Errorf("activity task %q: result: %w", p.TaskID, err))
	}
	if b.closed.Load() {
		return nil, b.fail(op, errClosed)
	}
	return data, nil
}

func (b *Backend) completeActivityClaim(ctx context.Context, p *backend.CompleteActivityParams, data []byte,
	claim *backend.ClaimParams) (bool, *backend.OrchestrationWorkItem, error) {
	inserted, wis, now, err := b.completeClaimOn(ctx, b.pool, p, data, claim, nil)
	if err != nil || len(wis) == 0 {
		return inserted, nil, err
	}
	// The claim has committed: read its data even if ctx is done now,
	// rather than leave it leased to nobody.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := b.loadStepData(lctx, wis, now); err != nil {
		// The completion stands, and so does the claim: its lease lapses
		// and the step is claimed again with the next attempt number.
		b.log.Warn("duro: postgres: read of a fused step failed; it is claimed again after its lease", "instance", wis[0].Instance.ID, "err", err)
		return inserted, nil, nil
	}
	return inserted, wis[0], nil
}

// completeClaimOn sends the pipeline of CompleteActivityClaim through q
// (the pool: one implicit transaction; or a transaction) and returns
// whether the result was inserted, the claimed step (at most one, without
// its messages and history) and the claim's time. With pre, the pipeline
// also reads the messages and history of pre's one instance, if the claim
// claims it (fusedMessagesQuery, fusedHistoryQuery), into pre.
func (b *Backend) completeClaimOn(ctx context.Context, q batchSender, p *backend.CompleteActivityParams, data []byte,
	claim *backend.ClaimParams, pre *stepRead) (bool, []*backend.OrchestrationWorkItem, int64, error) {
	batch := &pgx.Batch{}
	batch.Queue(b.q(lockTaskQuery), p.TaskID)
	batch.Queue(b.q(completeActivityClaimQuery), p.TaskID, int64(p.Attempt), backend.ResultMessageID(p.TaskID),
		data, p.Result.Type.IsControl(), rules.Nanos(p.Now))
	batch.Queue(b.q(fusedClaimQuery), rules.Nanos(claim.Now), claim.Owner, int64(claim.LeaseDuration))
	if pre != nil {
		h := pre.hs[0]
		batch.Queue(b.q(fusedMessagesQuery), h.wi.Instance.ID, rules.Nanos(claim.Now), b.maxStepMessages)
		batch.Queue(b.q(fusedHistoryQuery), h.wi.Instance.ID, int32(len(h.prefix)))
	}
	br := q.SendBatch(ctx, batch)
	defer func() { _ = br.Close() }()
	var current, claimedAt, visible int64
	found := true
	if err := br.QueryRow().Scan(&current, &claimedAt, &visible); errors.Is(err, pgx.ErrNoRows) {
		found = false
	} else if err != nil {
		return false, nil, 0, err
	}
	var deleted, inserted int64
	var inst string
	if err := br.QueryRow().Scan(&deleted, &inserted, &inst); err != nil {
		return false, nil, 0, err
	}
	rows, err := br.Query()
	if err != nil {
		return false, nil, 0, err
	}
	wis, now, err := scanClaimedSteps(rows)
	if err != nil {
		return false, nil, 0, err
	}
	if pre != nil {
		if err := pre.scan(br); err != nil {
			return false, nil, 0, err
		}
	}
	if err := br.Close(); err != nil {
		return false, nil, 0, err
	}
	if deleted == 0 {
		if len(wis) > 0 {
			// Cannot happen: the claim reads the setting only the delete
			// makes. Never hand out a claim a stale completion made.
			return false, nil, 0, fmt.Errorf("activity task %q: attempt %d deleted nothing but claimed a step", p.TaskID, p.Attempt)
		}
		return false, nil, 0, completionRefused(p, found, current, claimedAt, visible)
	}
	return inserted > 0, wis, now, nil
}

// completionRefused is the error of a completion whose delete found no
// task at its attempt, from the task's row as the pipeline locked it
// (found, its attempt, claimed_at and visible_at): stale, parked or lost.
func completionRefused(p *backend.CompleteActivityParams, found bool, current, claimedAt, visible int64) error {
	if err := rules.FenceTask(p.TaskID, int64(p.Attempt), found, current, claimedAt); err != nil {
		return err
	}
	if visible == parkedAt {
		return errParked
	}
	return fmt.Errorf("activity task %q: attempt %d lost its lease concurrently: %w",
		p.TaskID, p.Attempt, backend.ErrLeaseLost)
}
