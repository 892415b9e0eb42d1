package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// claimStepsQuery leases up to $2 instances at time $1 (0: the database
// clock) for owner $3 for $4 ns, in one statement, so in one transaction
// that commits before the statement returns: it takes the first free
// instances (no live lease) with a visible message, in the order their
// oldest message became visible, skipping the rows other claimers (and
// steps) hold (FOR NO KEY UPDATE SKIP LOCKED: activity completions, which
// hold instances in KEY SHARE mode, do not keep an instance from being
// claimed), increments their step attempt numbers and sets their leases.
// Each branch reads one partial index in claim order.
var claimStepsQuery = `WITH now_ready AS MATERIALIZED (
	SELECT id AS cid, ready_key AS ck, seq AS cs FROM {s}.instances
	 WHERE ready_at = 0 AND lock_expires_at <= ` + clock("$1") + `
	 ORDER BY ready_key, seq LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED
), later_ready AS MATERIALIZED (
	SELECT id, ready_key, seq FROM {s}.instances
	 WHERE ready_at > 0 AND ready_at <= ` + clock("$1") + ` AND lock_expires_at <= ` + clock("$1") + `
	 ORDER BY ready_at, seq LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED
), cand AS (
	SELECT * FROM now_ready UNION ALL SELECT * FROM later_ready
), pick AS (
	SELECT cid FROM cand ORDER BY ck, cs LIMIT $2
)
UPDATE {s}.instances SET step_attempt = step_attempt + 1, lock_owner = $3,
	lock_expires_at = ` + clock("$1") + ` + $4
FROM pick WHERE id = pick.cid
RETURNING ` + clock("$1") + `, step_attempt, completed_attempt, step_started, lock_expires_at, ` + rules.InstanceColumns

// ClaimOrchestrationSteps leases up to max orchestration steps in one round
// trip: it is ClaimOrchestrationStep for several instances at once, with
// the same rules for each (the claim commits, with every attempt number,
// before the work items are returned). It returns an empty slice when there
// is nothing to claim. The work items are in claim order.
func (b *Backend) ClaimOrchestrationSteps(ctx context.Context, p *backend.ClaimParams, max int) ([]*backend.OrchestrationWorkItem, error) {
	return b.claimSteps(ctx, "claim orchestration steps", p, max)
}

func (b *Backend) claimSteps(ctx context.Context, op string, p *backend.ClaimParams, max int) ([]*backend.OrchestrationWorkItem, error) {
	return b.claimStepsOf(ctx, op, p, max, "")
}

// claimInstanceStepQuery is claimStepsQuery for instance $5 alone, if it
// has a visible message and no live lease.
var claimInstanceStepQuery = `WITH pick AS (
	SELECT id AS cid FROM {s}.instances
	 WHERE id = $5 AND ready_at IS NOT NULL AND ready_at <= ` + clock("$1") + ` AND lock_expires_at <= ` + clock("$1") + `
	 LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE {s}.instances SET step_attempt = step_attempt + 1, lock_owner = $3,
	lock_expires_at = ` + clock("$1") + ` + $4
FROM pick WHERE id = pick.cid
RETURNING ` + clock("$1") + `, step_attempt, completed_attempt, step_started, lock_expires_at, ` + rules.InstanceColumns

// claimStepsOf claims up to max steps, or, when only is set, the step of
// that instance alone (ClaimInstanceStep).
func (b *Backend) claimStepsOf(ctx context.Context, op string, p *backend.ClaimParams, max int, only string) ([]*backend.OrchestrationWorkItem, error) {
	if err := p.Validate(); err != nil {
		return nil, b.fail(op, err)
	}
	if b.closed.Load() {
		return nil, b.fail(op, errClosed)
	}
	if max < 1 {
		return []*backend.OrchestrationWorkItem{}, nil
	}
	var (
		wis []*backend.OrchestrationWorkItem
		now int64
	)
	// The claim is one statement: nothing to retry but a failure before it
	// was sent.
	for try := 0; ; try++ {
		query, args := claimStepsQuery, []any{rules.Nanos(p.Now), max, p.Owner, int64(p.LeaseDuration)}
		if only != "" {
			query, args = claimInstanceStepQuery, append(args, only)
		}
		rows, err := b.pool.Query(ctx, b.q(query), args...)
		if err == nil {
			wis, now, err = scanClaimedSteps(rows)
		}
		if err == nil {
			break
		}
		if try < 2 && ctx.Err() == nil && !b.closed.Load() && isSafeToRetry(err) {
			continue
		}
		return nil, b.fail(op, err)
	}
	if len(wis) == 0 {
		return []*backend.OrchestrationWorkItem{}, nil
	}
	// The claims have committed: read their data even if ctx is done now,
	// rather than leave them leased to nobody.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := b.loadStepData(lctx, wis, now); err != nil {
		// The claims stand; their leases lapse and the steps are claimed
		// again with the next attempt numbers.
		return nil, b.fail(op, err)
	}
	out := wis[:0]
	for _, wi := range wis {
		if len(wi.Messages) == 0 {
			b.releaseStale(lctx, wi)
			continue
		}
		out = append(out, wi)
	}
	return out, nil
}

func scanClaimedSteps(rows pgx.Rows) ([]*backend.OrchestrationWorkItem, int64, error) {
	defer rows.Close()
	var wis []*backend.OrchestrationWorkItem
	var now int64
	for rows.Next() {
		var completed, started, expires int64
		wi := &backend.OrchestrationWorkItem{}
		in, err := rules.ScanInstance(prefixRow{rows, []any{&now, &wi.Attempt, &completed, &started, &expires}})
		if err != nil {
			return nil, 0, err
		}
		wi.Instance = in
		wi.Deliveries = int(wi.Attempt - completed)
		if started > completed {
			// A start mark made since the last committed step.
			wi.StartedAttempt = started
		}
		wi.LeaseExpiresAt = rules.FromNanos(expires)
		wi.History = []*backend.Event{}
		wis = append(wis, wi)
	}
	return wis, now, rows.Err()
}

// prefixRow scans leading columns into prefix and the rest into the
// destinations Scan is given.
type prefixRow struct {
	pgx.Row
	prefix []any
}

func (r prefixRow) Scan(dest ...any) error {
	return r.Row.Scan(append(append([]any{}, r.prefix...), dest...)...)
}

// stepMessagesQuery returns the visible messages at $3 of the instances
// $1, only the control ones of those flagged in $2 (Suspended), at most $4
// per instance, in the order they became visible: by sort_at (the later of
// visible_at and the time the message was written), then seq (at the same
// instant, the message written first). Index inbox_instance_sort serves it,
// one range scan per instance (the LATERAL subquery, which its LIMIT keeps
// from being flattened into a join; see stepHistoryQuery for why).
const stepMessagesQuery = `SELECT c.id, m.id, m.execution_id, m.event, m.visible_at
	FROM unnest($1::text[], $2::bool[]) AS c(id, ctl)
	CROSS JOIN LATERAL (SELECT m.id, m.execution_id, m.event, m.visible_at, m.sort_at, m.seq
		FROM {s}.inbox m
		WHERE m.instance_id = c.id AND m.visible_at <= $3 AND (NOT c.ctl OR m.control)
		ORDER BY m.sort_at, m.seq LIMIT $4) m
	ORDER BY c.id, m.sort_at, m.seq`

// stepMessagesOneQuery is stepMessagesQuery for one instance, $1 (see
// stepHistoryOneQuery for why).
const stepMessagesOneQuery = `SELECT m.instance_id, m.id, m.execution_id, m.event, m.visible_at
	FROM {s}.inbox m
	WHERE m.instance_id = $1 AND m.visible_at <= $3 AND (NOT $2::bool OR m.control)
	ORDER BY m.sort_at, m.seq LIMIT $4`

// queueStepMessages queues the read of the visible messages at now of
// instances ids (only the control ones of those flagged in ctl).
func (b *Backend) queueStepMessages(batch *pgx.Batch, ids []string, ctl []bool, now int64) {
	if len(ids) == 1 {
		batch.Queue(b.q(stepMessagesOneQuery), ids[0], ctl[0], now, b.maxStepMessages)
		return
	}
	batch.Queue(b.q(stepMessagesQuery), ids, ctl, now, b.maxStepMessages)
}

// releaseStale hands back a claimed instance that had no message to
// process (its ready summary was stale, which the transactions keep from
// happening) and recomputes its summary.
func (b *Backend) releaseStale(ctx context.Context, wi *backend.OrchestrationWorkItem) {
	b.log.Warn("postgres: instance had a stale ready summary", "instance", wi.Instance.ID)
	err := b.write(ctx, "release stale claim", time.Time{}, func(t *txn) error {
		t.touch(wi.Instance.ID)
		_, err := t.exec(`UPDATE {s}.instances SET lock_owner = '', lock_expires_at = 0
			WHERE id = $1 AND step_attempt = $2`, wi.Instance.ID, wi.Attempt)
		return err
	})
	if err != nil {
		b.log.Warn("postgres: release stale claim", "instance", wi.Instance.ID, "err", err)
	}
}

// isSafeToRetry reports whether a single-statement operation that failed
// with err certainly did not reach the server.
func isSafeToRetry(err error) bool {
	return pgconn.SafeToRetry(err)
}

// readFence reads the fencing state of an instance (nil if it is gone).
func (b *Backend) readFence(ctx context.Context, q querier, id string, lock bool) (*stepFence, error) {
	query := `SELECT step_attempt, completed_attempt, execution_id FROM {s}.instances WHERE id = $1`
	if lock {
		query += ` FOR UPDATE`
	}
	f := &stepFence{}
	err := q.QueryRow(ctx, b.q(query), id).Scan(&f.Attempt, &f.Completed, &f.ExecutionID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return f, err
}

// fencedUpdate runs a single-statement update of instance id that is
// fenced in SQL ($2 attempt, $3 execution or empty), and if it changed
// nothing, reads the instance to say why: ErrLeaseLost.
func (b *Backend) fencedUpdate(ctx context.Context, op, id, exec string, attempt int64, set string, args ...any) error {
	if b.closed.Load() {
		return b.fail(op, errClosed)
	}
	query := b.q(`UPDATE {s}.instances SET ` + set + ` WHERE id = $1 AND step_attempt = $2 AND completed_attempt < $2
		AND ($3 = '' OR execution_id = $3)`)
	args = append([]any{id, attempt, exec}, args...)
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
	var f *stepFence
	err := b.read(ctx, op, func(q querier) error {
		var err error
		f, err = b.readFence(ctx, q, id, false)
		return err
	})
	if err != nil {
		return err
	}
	if err := f.Check(id, exec, attempt); err != nil {
		return b.fail(op, err)
	}
	return b.fail(op, fmt.Errorf("instance %q: attempt %d lost its lease concurrently: %w", id, attempt, backend.ErrLeaseLost))
}

// RenewOrchestrationLease implements backend.Backend. A lapsed lease that
// nobody claimed since may be renewed; a delivery that completed its step or
// was superseded gets ErrLeaseLost.
func (b *Backend) RenewOrchestrationLease(ctx context.Context, p *backend.RenewLeaseParams) error {
	const op = "renew orchestration lease"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	return b.fencedUpdate(ctx, op, p.ID, p.ExecutionID, p.Attempt,
		`lock_expires_at = `+clock("$4")+` + $5`, rules.Nanos(p.Now), int64(p.LeaseDuration))
}

// AbandonOrchestrationStep implements backend.Backend. The instance is
// claimable again p.RetryAfter after the abandon by the database clock
// when it is positive, else at p.RetryAt (at once when zero), with
// Attempt+1.
func (b *Backend) AbandonOrchestrationStep(ctx context.Context, p *backend.AbandonParams) error {
	const op = "abandon orchestration step"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	if err := b.fencedUpdate(ctx, op, p.ID, p.ExecutionID, p.Attempt,
		`lock_owner = '', lock_expires_at = `+retryAt("$4", "$5"), rules.Nanos(p.RetryAt), int64(p.RetryAfter)); err != nil {
		return err
	}
	b.signalRetry(p)
	return nil
}

// StartOrchestrationStep implements backend.Backend: it records the
// delivery as the step's newest started one, in one fenced statement
// (durable on return with synchronous_commit on, PostgreSQL's default).
func (b *Backend) StartOrchestrationStep(ctx context.Context, p *backend.StartParams) error {
	const op = "start orchestration step"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	return b.fencedUpdate(ctx, op, p.ID, p.ExecutionID, p.Attempt, `step_started = step_attempt`)
}

// retryAt is the SQL for the time abandoned work is visible again: the
// delay in parameter after (ns) from the database clock if it is positive,
// else the time in parameter at.
func retryAt(at, after string) string {
	return `CASE WHEN ` + after + `::bigint > 0 THEN ` + dbNow + ` + ` + after + `::bigint ELSE ` + at + `::bigint END`
}

// signalRetry wakes the claimers for work handed back with p: at once, or
// when it becomes visible again (by this process's clock: a wake-up is a
// hint, and claims compare with the database clock).
func (b *Backend) signalRetry(p *backend.AbandonParams) {
	switch {
	case p.RetryAfter > 0:
		b.signal(false, []int64{time.Now().Add(p.RetryAfter).UnixNano()})
	case p.RetryAt.IsZero():
		b.signal(true, nil)
	default:
		b.signal(false, []int64{p.RetryAt.UnixNano()})
	}
}
