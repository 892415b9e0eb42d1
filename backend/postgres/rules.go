package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// The PostgreSQL side of rules.Tx: each method is one primitive (one
// statement or one pipelined batch) in the transaction. The rules (package
// rules) decide.
var _ rules.Tx = (*txn)(nil)

// stepFence is the fencing state of an instance.
type stepFence = rules.StepFence

// Now implements rules.Tx: the caller's time, or the database clock at the
// transaction's start.
func (t *txn) Now() (time.Time, error) {
	n, err := t.mustNow()
	return rules.FromNanos(n), err
}

// InstanceStatus implements rules.Tx.
func (t *txn) InstanceStatus(id string) (backend.Status, error) {
	var s backend.Status
	err := t.queryRow(`SELECT status FROM {s}.instances WHERE id = $1`, id).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("instance %q: %w", id, backend.ErrInstanceNotFound)
	}
	return s, err
}

// Deliver implements rules.Tx.
func (t *txn) Deliver(m *backend.Message) error { return t.deliver(m) }

// InsertMessage implements rules.Tx.
func (t *txn) InsertMessage(m *backend.Message) error { return t.insertMessage(m, true) }

// at runs fn with the transaction's time set to now.
func (t *txn) at(now time.Time, fn func() error) error {
	saved := t.now
	t.now = now.UnixNano()
	defer func() { t.now = saved }()
	return fn()
}

// parentColumns are the parent reference's column values.
func parentColumns(p *backend.ParentRef) (pid, pexec *string, ptask *int64) {
	if p != nil {
		id, exec, task := p.InstanceID, p.ExecutionID, int64(p.TaskID)
		pid, pexec, ptask = &id, &exec, &task
	}
	return pid, pexec, ptask
}

// maxCreateTries bounds the runs of createQuery in one CreateOrLock: a run
// inserts nothing and finds no row only when a concurrent creator
// committed the ID in between (the next run locks its row), or when that
// row was then deleted again (a purge).
const maxCreateTries = 8

// CreateOrLock implements rules.Tx in one statement (createQuery), run
// again when a concurrent creator committed the ID in between. Concurrent
// creators of one ID are serialized by the row: exactly one creates it, and
// the others lock the row it committed and decide on its status, so a
// creator never resets an instance another one created.
func (t *txn) CreateOrLock(p *backend.CreateInstanceParams, start *backend.Message, now time.Time) (status backend.Status, created bool, err error) {
	err = t.at(now, func() error {
		args, err := t.createArgs(p, start)
		if err != nil {
			return err
		}
		for try := 0; ; try++ {
			var s *backend.Status
			var delivered bool
			if err := t.queryRow(createQuery, args...).Scan(&s, &created, &delivered); err != nil {
				return err
			}
			if created {
				if !delivered {
					t.touch(p.ID) // the message's ID was taken: no message, no summary
				}
				return t.delivered(start, true, backend.StatusPending, delivered)
			}
			if s != nil {
				status = *s
				return nil
			}
			if try+1 == maxCreateTries {
				return fmt.Errorf("instance %q: created and deleted concurrently %d times", p.ID, maxCreateTries)
			}
		}
	})
	return status, created, err
}

// createArgs are the arguments of createQuery for p with its start
// message, at the transaction's time.
func (t *txn) createArgs(p *backend.CreateInstanceParams, start *backend.Message) ([]any, error) {
	margs, err := t.messageArgs(start, true)
	if err != nil {
		return nil, err
	}
	pid, pexec, ptask := parentColumns(p.Parent)
	return []any{p.ID, p.Name, p.ExecutionID, backend.StatusPending, p.Input, t.now,
		pid, pexec, ptask, start.ID, margs[3], margs[4], margs[5]}, nil
}

// Replace implements rules.Tx: the data deletes, then the row's reset and
// the start message in one round trip.
func (t *txn) Replace(p *backend.CreateInstanceParams, start *backend.Message, now time.Time) error {
	return t.at(now, func() error {
		margs, err := t.messageArgs(start, true)
		if err != nil {
			return err
		}
		if err := t.deleteInstanceData(p.ID); err != nil {
			return err
		}
		// The update below resets the ready summary; the start message sets it.
		delete(t.touched, p.ID)
		pid, pexec, ptask := parentColumns(p.Parent)
		batch := &pgx.Batch{}
		batch.Queue(t.b.q(`UPDATE {s}.instances SET name = $2, execution_id = $3, status = $4, input = $5,
			output = NULL, failure = NULL, custom_status = NULL, created_at = $6, updated_at = $6, completed_at = 0,
			suspension = NULL, parent_instance_id = $7, parent_execution_id = $8, parent_task_id = $9,
			lock_owner = '', lock_expires_at = 0, ready_at = NULL, ready_key = NULL
		WHERE id = $1`),
			p.ID, p.Name, p.ExecutionID, backend.StatusPending, p.Input, t.now, pid, pexec, ptask)
		batch.Queue(t.b.q(deliverQuery), margs...)
		br := t.tx.SendBatch(t.ctx, batch)
		defer func() { _ = br.Close() }()
		if _, err := br.Exec(); err != nil {
			return err
		}
		var status backend.Status
		var inserted bool
		if err := br.QueryRow().Scan(&status, &inserted); err != nil {
			return fmt.Errorf("message %q: %w", start.ID, err)
		}
		if err := br.Close(); err != nil {
			return err
		}
		if !inserted {
			t.touch(p.ID)
		}
		return t.delivered(start, true, status, inserted)
	})
}

// LockInstance implements rules.Tx (FOR UPDATE).
func (t *txn) LockInstance(id string) (backend.Status, string, error) {
	var s backend.Status
	var exec string
	err := t.queryRow(`SELECT status, execution_id FROM {s}.instances WHERE id = $1 FOR UPDATE`, id).Scan(&s, &exec)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", fmt.Errorf("instance %q: %w", id, backend.ErrInstanceNotFound)
	}
	return s, exec, err
}

// MarkRewound implements rules.Tx.
func (t *txn) MarkRewound(id string, now time.Time) error {
	batch := &pgx.Batch{}
	batch.Queue(t.b.q(`UPDATE {s}.instances SET status = $1, failure = NULL, completed_at = 0, suspension = NULL,
		updated_at = $2 WHERE id = $3`), backend.StatusRunning, now.UnixNano(), id)
	batch.Queue(t.b.q(`DELETE FROM {s}.activity_tasks WHERE instance_id = $1 AND visible_at = $2`), id, int64(parkedAt))
	if err := t.tx.SendBatch(t.ctx, batch).Close(); err != nil {
		return err
	}
	t.touch(id)
	t.work = true
	return nil
}

// Origin implements rules.Tx.
func (t *txn) Origin(id string) (string, *backend.ParentRef, error) {
	var name string
	var pid, pexec *string
	var ptask *int64
	if err := t.queryRow(`SELECT name, parent_instance_id, parent_execution_id, parent_task_id
		FROM {s}.instances WHERE id = $1`, id).Scan(&name, &pid, &pexec, &ptask); err != nil {
		return "", nil, err
	}
	if pid == nil {
		return name, nil, nil
	}
	return name, &backend.ParentRef{InstanceID: *pid, ExecutionID: deref(pexec), TaskID: int(deref(ptask))}, nil
}

// NewExecution implements rules.Tx in one round trip.
func (t *txn) NewExecution(id string, can *backend.ContinueAsNew) error {
	exec := can.NewExecutionID
	batch := &pgx.Batch{}
	batch.Queue(t.b.q(`UPDATE {s}.instances SET execution_id = $1, input = $2 WHERE id = $3`), exec, can.Input, id)
	batch.Queue(t.b.q(`DELETE FROM {s}.history WHERE instance_id = $1`), id)
	batch.Queue(t.b.q(`DELETE FROM {s}.inbox_consumed WHERE instance_id = $1`), id)
	batch.Queue(t.b.q(`DELETE FROM {s}.inbox WHERE instance_id = $1 AND execution_id <> '' AND execution_id <> $2`), id, exec)
	batch.Queue(t.b.q(`DELETE FROM {s}.activity_tasks WHERE instance_id = $1 AND execution_id <> $2`), id, exec)
	if err := t.tx.SendBatch(t.ctx, batch).Close(); err != nil {
		return err
	}
	t.touch(id)
	return nil
}

// AppendHistory implements rules.Tx.
func (t *txn) AppendHistory(id string, ev *backend.Event) error {
	data, err := backend.EncodeEvent(ev)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO {s}.history (instance_id, seq, event)
		SELECT $1, COALESCE(MAX(seq), 0) + 1, $2 FROM {s}.history WHERE instance_id = $1`, id, data)
	return err
}

// DeleteInstance implements rules.Tx.
func (t *txn) DeleteInstance(id string) error {
	if err := t.deleteInstanceData(id); err != nil {
		return err
	}
	delete(t.touched, id)
	_, err := t.exec(`DELETE FROM {s}.instances WHERE id = $1`, id)
	return err
}

// finishQuery is the clean-up of instance $1 as it ends, one statement:
// its inbox and request window emptied, its tasks deleted unless a
// delivery holds them, and those parked ($2) for their deliveries to
// complete late. The delete and the update take disjoint sets of tasks, as
// every sub-statement reads the same snapshot.
const finishQuery = `WITH inbox AS (
	DELETE FROM {s}.inbox WHERE instance_id = $1
), unheld AS (
	DELETE FROM {s}.activity_tasks WHERE instance_id = $1 AND (claimed_at = 0 OR lease_owner = '')
), held AS (
	UPDATE {s}.activity_tasks SET visible_at = $2 WHERE instance_id = $1 AND claimed_at <> 0 AND lease_owner <> ''
), win AS (
	DELETE FROM {s}.request_window WHERE instance_id = $1
)
SELECT 1`

// Finish implements rules.Tx in one statement (finishQuery).
func (t *txn) Finish(id string) error {
	if _, err := t.exec(finishQuery, id, int64(parkedAt)); err != nil {
		return err
	}
	t.touch(id)
	return nil
}

// store is the Backend as rules.Methods sees it. It is a type of its own so
// that its methods do not join the Backend's.
type store struct{ b *Backend }

// OpTime implements rules.Store: a zero time stays zero, for the database
// clock to fill in inside the transaction.
func (s store) OpTime(t time.Time) time.Time { return t }

// Write implements rules.Store; PostgreSQL encodes messages in the
// transaction, so pre is not used.
func (s store) Write(ctx context.Context, op string, at time.Time, _ *backend.Message, fn func(rules.Tx) error) error {
	return s.b.write(ctx, op, at, func(t *txn) error { return fn(t) })
}

// Fail implements rules.Store.
func (s store) Fail(op string, err error) error { return s.b.fail(op, err) }

// DeleteWorkers implements rules.Tx.
func (t *txn) DeleteWorkers(before time.Time) (int, error) {
	n, err := t.exec(`DELETE FROM {s}.workers WHERE heartbeat_at < $1`, rules.Nanos(before))
	return int(n), err
}
