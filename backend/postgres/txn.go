package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// txn is one write transaction with the bookkeeping its helpers share.
type txn struct {
	ctx context.Context
	b   *Backend
	tx  *lazyTx
	// now is the transaction's time in Unix ns; 0 until needed when the
	// caller passed no time, then the database clock (see mustNow).
	now int64
	// touched holds the instances whose ready summary flush must recompute
	// (their inbox lost messages or their status changed).
	touched map[string]struct{}
	// work is set when the transaction made work claimable at once; wakeAt
	// lists the future times at which it makes more claimable.
	work   bool
	wakeAt []int64
}

func newTxn(ctx context.Context, b *Backend, tx *lazyTx, now time.Time) *txn {
	return &txn{ctx: ctx, b: b, tx: tx, now: rules.Nanos(now), touched: map[string]struct{}{}}
}

func (t *txn) exec(query string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(t.ctx, t.b.q(query), args...)
	return tag.RowsAffected(), err
}

func (t *txn) queryRow(query string, args ...any) pgx.Row {
	return t.tx.QueryRow(t.ctx, t.b.q(query), args...)
}

// mustNow returns the transaction's time, reading the database clock (the
// transaction's start) if the caller passed none.
func (t *txn) mustNow() (int64, error) {
	if t.now == 0 {
		if err := t.tx.QueryRow(t.ctx, `SELECT `+dbNow).Scan(&t.now); err != nil {
			return 0, err
		}
	}
	return t.now, nil
}

func (t *txn) touch(id string) { t.touched[id] = struct{}{} }

// lockedRow is the state of an instance row that lock returns.
type lockedRow struct {
	status backend.Status
	fence  stepFence
}

// lock takes the row locks of the given instances in ID order, so that
// transactions that lock several instances cannot deadlock each other, and
// returns the state of those that exist.
func (t *txn) lock(ids ...string) (map[string]*lockedRow, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	// One instance (most steps) by a scalar: the generic plan of the array
	// form looks dearer than a plan for the one ID, so PostgreSQL would plan
	// it on every execution (see stepHistoryOneQuery).
	var arg any = ids
	cond := "id = ANY($1)"
	if len(ids) == 1 {
		arg, cond = ids[0], "id = $1"
	}
	rows, err := t.tx.Query(t.ctx, t.b.q(`SELECT id, status, step_attempt, completed_attempt, execution_id
		FROM {s}.instances WHERE `+cond+` ORDER BY id FOR UPDATE`), arg)
	if err != nil {
		return nil, err
	}
	st := map[string]*lockedRow{}
	var id string
	var r lockedRow
	_, err = pgx.ForEachRow(rows, []any{&id, &r.status, &r.fence.Attempt, &r.fence.Completed, &r.fence.ExecutionID}, func() error {
		c := r
		st[id] = &c
		return nil
	})
	return st, err
}

// flushCommit recomputes the ready summary of the touched instances: over
// all their messages, or over only their control messages while they are
// Suspended; it sends the recomputation as the transaction's final batch,
// with the COMMIT. See lazyTx.finalOutcome for its errors.
func (t *txn) flushCommit() error {
	ids := make([]string, 0, len(t.touched))
	for id := range t.touched {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	clear(t.touched)
	batch := &pgx.Batch{}
	if len(ids) == 1 {
		batch.Queue(t.b.q(flushOneQuery), ids[0])
	} else {
		batch.Queue(t.b.q(flushQuery), ids)
	}
	br := t.tx.sendFinal(t.ctx, batch)
	rows, err := br.Query()
	if err == nil {
		err = t.scanFlush(rows)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

const flushQuery = `UPDATE {s}.instances i SET (ready_at, ready_key) =
	(SELECT MIN(m.visible_at), MIN(m.sort_at) FROM {s}.inbox m
	 WHERE m.instance_id = i.id AND (i.status <> 'Suspended' OR m.control))
	WHERE i.id = ANY($1) RETURNING ready_at, lock_expires_at`

// flushOneQuery is flushQuery for one instance, $1 (see lock for why).
const flushOneQuery = `UPDATE {s}.instances i SET (ready_at, ready_key) =
	(SELECT MIN(m.visible_at), MIN(m.sort_at) FROM {s}.inbox m
	 WHERE m.instance_id = i.id AND (i.status <> 'Suspended' OR m.control))
	WHERE i.id = $1 RETURNING ready_at, lock_expires_at`

// scanFlush reads the result of flushQuery: an instance with messages and
// a free lease is work; one whose messages become visible later is work
// then.
func (t *txn) scanFlush(rows pgx.Rows) error {
	var ready *int64
	var lease int64
	_, err := pgx.ForEachRow(rows, []any{&ready, &lease}, func() error {
		switch {
		case ready == nil:
		case *ready == 0 || (t.now != 0 && *ready <= t.now):
			if lease == 0 || (t.now != 0 && lease <= t.now) {
				t.work = true
			}
		default:
			t.wakeAt = append(t.wakeAt, *ready)
		}
		return nil
	})
	return err
}

// deliverQuery inserts message $1 into the inbox of instance $2, after
// locking the instance's row, unless the instance is missing, or has
// finished ($8 false), or the ID is in an inbox or was consumed by the
// instance's current execution. Its sort_at, the time it becomes visible,
// is the later of its visible_at $6 and the time $7 it is written. It
// updates the ready summary for the new message and returns the instance's
// status (empty if it does not exist) and whether the message was inserted.
var deliverQuery = `WITH st AS (
	SELECT status FROM {s}.instances WHERE id = $2 FOR UPDATE
), ins AS (
	INSERT INTO {s}.inbox (id, instance_id, execution_id, event, control, visible_at, sort_at, created_at)
	SELECT $1, $2, $3, $4, $5, $6, GREATEST($6::bigint, ` + clock("$7") + `), ` + clock("$7") + `
	FROM st
	WHERE ($8 OR st.status NOT IN ('Completed', 'Failed', 'Terminated'))
		AND NOT EXISTS (SELECT 1 FROM {s}.inbox_consumed c WHERE c.instance_id = $2 AND c.id = $1)
	ON CONFLICT (id) DO NOTHING
	RETURNING visible_at, sort_at, control
), upd AS (
	UPDATE {s}.instances i SET ready_at = LEAST(i.ready_at, ins.visible_at), ready_key = LEAST(i.ready_key, ins.sort_at)
	FROM ins WHERE i.id = $2 AND (i.status <> 'Suspended' OR ins.control)
	RETURNING 1
)
SELECT COALESCE((SELECT status FROM st), ''), (SELECT count(*) FROM ins) > 0`

// deliver inserts a message into a live instance's inbox. It returns
// ErrInstanceNotFound or ErrInstanceFinished when the instance cannot take
// messages. A message whose ID is in an inbox, or was consumed by the
// instance's current execution, is ignored.
func (t *txn) deliver(m *backend.Message) error {
	return t.insertMessage(m, false)
}

// insertMessage inserts a message; if force is set it does so even into a
// finished instance (but never into one that does not exist).
func (t *txn) insertMessage(m *backend.Message, force bool) error {
	args, err := t.messageArgs(m, force)
	if err != nil {
		return err
	}
	var status backend.Status
	var inserted bool
	if err := t.queryRow(deliverQuery, args...).Scan(&status, &inserted); err != nil {
		return fmt.Errorf("message %q: %w", m.ID, err)
	}
	return t.delivered(m, force, status, inserted)
}

// messageArgs are the arguments of deliverQuery for m.
func (t *txn) messageArgs(m *backend.Message, force bool) ([]any, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	data, err := backend.EncodeEvent(m.Event)
	if err != nil {
		return nil, fmt.Errorf("message %q: %w", m.ID, err)
	}
	return []any{m.ID, m.InstanceID, m.ExecutionID, data, m.Event.Type.IsControl(), rules.Nanos(m.VisibleAt), t.now, force}, nil
}

// delivered records the outcome of deliverQuery for m: the error for an
// instance that cannot take it, or the work it made.
func (t *txn) delivered(m *backend.Message, force bool, status backend.Status, inserted bool) error {
	switch {
	case status == "":
		return fmt.Errorf("instance %q: %w", m.InstanceID, backend.ErrInstanceNotFound)
	case !force && status.IsTerminal():
		return fmt.Errorf("instance %q is %s: %w", m.InstanceID, status, backend.ErrInstanceFinished)
	}
	if inserted {
		if visible := rules.Nanos(m.VisibleAt); visible == 0 || (t.now != 0 && visible <= t.now) {
			t.work = true
		} else {
			t.wakeAt = append(t.wakeAt, visible)
		}
	}
	return nil
}

// createQuery creates instance $1 in status $4 with the ready summary of
// its only message, and inserts that message (ID $10, event $11, control
// flag $12, visible at $13), unless a row of the ID exists: that row is
// locked instead and its status returned, with nothing written. $6 is the
// time. An insert that meets the uncommitted insert of a concurrent creator
// waits for it and, if it commits, inserts nothing and returns no status
// (the row was not in this statement's snapshot): running the statement
// again then finds and locks that row. Nothing is ever written over a row
// that another transaction created.
var createQuery = `WITH cur AS (
	SELECT status FROM {s}.instances WHERE id = $1 FOR UPDATE
), ins AS (
	INSERT INTO {s}.instances (id, name, execution_id, status, input, created_at, updated_at,
		parent_instance_id, parent_execution_id, parent_task_id, ready_at, ready_key)
	SELECT $1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $13, CASE WHEN $13::bigint = 0 THEN $6 ELSE $13 END
	WHERE NOT EXISTS (SELECT 1 FROM cur)
	ON CONFLICT (id) DO NOTHING
	RETURNING id
), msg AS (
	INSERT INTO {s}.inbox (id, instance_id, execution_id, event, control, visible_at, sort_at, created_at)
	SELECT $10, ins.id, $3, $11, $12, $13, CASE WHEN $13::bigint = 0 THEN $6 ELSE $13 END, $6
	FROM ins
	WHERE NOT EXISTS (SELECT 1 FROM {s}.inbox_consumed c WHERE c.instance_id = $1 AND c.id = $10)
	ON CONFLICT (id) DO NOTHING
	RETURNING 1
)
SELECT (SELECT status FROM cur), EXISTS (SELECT 1 FROM ins), EXISTS (SELECT 1 FROM msg)`

// deleteInstanceData deletes an instance's history, inbox, consumed message
// IDs, activity tasks, request window and resume outcomes, keeping its row.
func (t *txn) deleteInstanceData(id string) error {
	b := &pgx.Batch{}
	for _, q := range []string{
		`DELETE FROM {s}.history WHERE instance_id = $1`,
		`DELETE FROM {s}.inbox WHERE instance_id = $1`,
		`DELETE FROM {s}.inbox_consumed WHERE instance_id = $1`,
		`DELETE FROM {s}.activity_tasks WHERE instance_id = $1`,
		`DELETE FROM {s}.request_window WHERE instance_id = $1`,
		`UPDATE {s}.instances SET resume_outcomes = NULL WHERE id = $1`,
	} {
		b.Queue(t.b.q(q), id)
	}
	if err := t.tx.SendBatch(t.ctx, b).Close(); err != nil {
		return err
	}
	// Not needed for correctness (a claim checks the cached prefix
	// against the rows), but the entry is of no more use.
	t.b.hist.Invalidate(id)
	t.touch(id)
	return nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// encodeJSON stores v as JSON text; a nil pointer is NULL.
func encodeJSON[T any](v *T) (*string, error) {
	if v == nil {
		return nil, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	s := string(data)
	return &s, nil
}
