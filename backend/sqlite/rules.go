package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// The SQLite side of rules.Tx: each method is one primitive, in the
// writer's transaction. The rules (package rules) decide.
var _ rules.Tx = (*txn)(nil)

// Now implements rules.Tx: the writer's time for this operation.
func (t *txn) Now() (time.Time, error) { return t.now, nil }

// InstanceStatus implements rules.Tx.
func (t *txn) InstanceStatus(id string) (backend.Status, error) {
	var s backend.Status
	err := t.queryRow(`SELECT status FROM instances WHERE id = ?`, id).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("instance %q: %w", id, backend.ErrInstanceNotFound)
	}
	return s, err
}

// Deliver implements rules.Tx, with the message's encoded event if the
// operation encoded it before the writer ran (preEncode).
func (t *txn) Deliver(m *backend.Message) error { return t.deliver(m, t.encodedEvent(m.ID)) }

// InsertMessage implements rules.Tx.
func (t *txn) InsertMessage(m *backend.Message) error {
	return t.insertMessage(m, t.encodedEvent(m.ID))
}

// preEncode records data as the encoded event of message id, encoded
// outside the writer by the operation that runs next (operations of a
// batch run one after the other in the transaction).
func (t *txn) preEncode(id string, data []byte) { t.preID, t.preData = id, data }

// encodedEvent is the event of message id if the running operation
// encoded it before the writer ran, else nil (encode it now).
func (t *txn) encodedEvent(id string) []byte {
	if id == t.preID {
		return t.preData
	}
	return nil
}

// parentColumns are the parent reference's column values.
func parentColumns(p *backend.ParentRef) (pid, pexec sql.NullString, ptask sql.NullInt64) {
	if p != nil {
		pid = sql.NullString{String: p.InstanceID, Valid: true}
		pexec = sql.NullString{String: p.ExecutionID, Valid: true}
		ptask = sql.NullInt64{Int64: int64(p.TaskID), Valid: true}
	}
	return pid, pexec, ptask
}

// at runs fn with the transaction's time set to now.
func (t *txn) at(now time.Time, fn func() error) error {
	saved := t.now
	t.now = now
	defer func() { t.now = saved }()
	return fn()
}

// CreateOrLock implements rules.Tx. The writer is the only one, so the
// row needs no lock: a new ID takes two statements, the instance row with
// the ready summary its only message gives it, and the message.
func (t *txn) CreateOrLock(p *backend.CreateInstanceParams, start *backend.Message, now time.Time) (backend.Status, bool, error) {
	pid, pexec, ptask := parentColumns(p.Parent)
	visible := rules.Nanos(p.StartAt)
	sortAt := max(visible, now.UnixNano())
	res, err := t.exec(`INSERT INTO instances (id, name, execution_id, status, input, created_at, updated_at,
			parent_instance_id, parent_execution_id, parent_task_id, ready_at, ready_key)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING`,
		p.ID, p.Name, p.ExecutionID, backend.StatusPending, p.Input, now.UnixNano(), pid, pexec, ptask, visible, sortAt)
	if err != nil {
		return "", false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return "", false, err
	} else if n > 0 {
		err := t.at(now, func() error {
			n, err := t.insertMessageIf(start, t.encodedEvent(start.ID), false, false)
			if err == nil && n == 0 {
				t.touched[p.ID] = struct{}{} // not inserted (an ID seen before): recompute
			}
			return err
		})
		return "", true, err
	}
	s, err := t.InstanceStatus(p.ID)
	return s, false, err
}

// Replace implements rules.Tx.
func (t *txn) Replace(p *backend.CreateInstanceParams, start *backend.Message, now time.Time) error {
	if err := t.deleteInstanceData(p.ID); err != nil {
		return err
	}
	pid, pexec, ptask := parentColumns(p.Parent)
	if _, err := t.exec(`UPDATE instances SET name = ?2, execution_id = ?3, status = ?4, input = ?5, output = NULL,
			failure = NULL, custom_status = NULL, created_at = ?6, updated_at = ?6, completed_at = 0,
			suspension = NULL, resume_outcomes = NULL, parent_instance_id = ?7, parent_execution_id = ?8, parent_task_id = ?9,
			lock_owner = '', lock_expires_at = 0, ready_at = NULL, ready_key = NULL
		WHERE id = ?1`,
		p.ID, p.Name, p.ExecutionID, backend.StatusPending, p.Input, now.UnixNano(), pid, pexec, ptask); err != nil {
		return err
	}
	return t.at(now, func() error { return t.InsertMessage(start) })
}

// LockInstance implements rules.Tx (the single writer holds every row).
func (t *txn) LockInstance(id string) (backend.Status, string, error) {
	var s backend.Status
	var exec string
	err := t.queryRow(`SELECT status, execution_id FROM instances WHERE id = ?`, id).Scan(&s, &exec)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("instance %q: %w", id, backend.ErrInstanceNotFound)
	}
	return s, exec, err
}

// MarkRewound implements rules.Tx.
func (t *txn) MarkRewound(id string, now time.Time) error {
	if _, err := t.exec(`UPDATE instances SET status = ?, failure = NULL, completed_at = 0, suspension = NULL,
		updated_at = ? WHERE id = ?`, backend.StatusRunning, now.UnixNano(), id); err != nil {
		return err
	}
	if _, err := t.exec(`DELETE FROM activity_tasks WHERE instance_id = ? AND visible_at = ?`, id, int64(parkedAt)); err != nil {
		return err
	}
	t.touched[id] = struct{}{}
	t.work |= workSteps
	return nil
}

// Origin implements rules.Tx.
func (t *txn) Origin(id string) (string, *backend.ParentRef, error) {
	var name string
	var pid, pexec sql.NullString
	var ptask sql.NullInt64
	if err := t.queryRow(`SELECT name, parent_instance_id, parent_execution_id, parent_task_id
		FROM instances WHERE id = ?`, id).Scan(&name, &pid, &pexec, &ptask); err != nil {
		return "", nil, err
	}
	if !pid.Valid {
		return name, nil, nil
	}
	return name, &backend.ParentRef{InstanceID: pid.String, ExecutionID: pexec.String, TaskID: int(ptask.Int64)}, nil
}

// NewExecution implements rules.Tx.
func (t *txn) NewExecution(id string, can *backend.ContinueAsNew) error {
	t.hist.invalidate(id)
	exec := can.NewExecutionID
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE instances SET execution_id = ?, input = ? WHERE id = ?`, []any{exec, can.Input, id}},
		{`DELETE FROM history WHERE instance_id = ?`, []any{id}},
		{`DELETE FROM inbox_consumed WHERE instance_id = ?`, []any{id}},
		{`DELETE FROM inbox WHERE instance_id = ? AND execution_id <> '' AND execution_id <> ?`, []any{id, exec}},
		{`DELETE FROM activity_tasks WHERE instance_id = ? AND execution_id <> ?`, []any{id, exec}},
	} {
		if _, err := t.exec(q.sql, q.args...); err != nil {
			return err
		}
	}
	t.touched[id] = struct{}{}
	return nil
}

// AppendHistory implements rules.Tx.
func (t *txn) AppendHistory(id string, ev *backend.Event) error {
	data, err := backend.EncodeEvent(ev)
	if err != nil {
		return err
	}
	_, err = t.exec(appendHistoryQuery, id, data)
	return err
}

// DeleteInstance implements rules.Tx.
func (t *txn) DeleteInstance(id string) error {
	if err := t.deleteInstanceData(id); err != nil {
		return err
	}
	_, err := t.exec(`DELETE FROM instances WHERE id = ?`, id)
	return err
}

// Finish implements rules.Tx.
func (t *txn) Finish(id string) error {
	t.hist.drop(id)
	for _, q := range []string{
		`DELETE FROM inbox WHERE instance_id = ?`,
		`DELETE FROM request_window WHERE instance_id = ?`,
		`DELETE FROM activity_tasks WHERE instance_id = ? AND (claimed_at = 0 OR lease_owner = '')`,
		`UPDATE activity_tasks SET visible_at = ` + strconv.FormatInt(parkedAt, 10) + ` WHERE instance_id = ?`,
	} {
		if _, err := t.exec(q, id); err != nil {
			return err
		}
	}
	t.touched[id] = struct{}{}
	return nil
}

// fence checks that attempt is the newest delivery of the instance's step
// (of execution executionID, "" for any) and that the step is not
// completed yet; otherwise it returns ErrLeaseLost.
func (t *txn) fence(id, executionID string, attempt int64) error {
	f := &rules.StepFence{}
	err := t.queryRow(`SELECT step_attempt, completed_attempt, execution_id FROM instances WHERE id = ?`, id).
		Scan(&f.Attempt, &f.Completed, &f.ExecutionID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		f = nil
	case err != nil:
		return err
	}
	return f.Check(id, executionID, attempt)
}

// fenceTask reads activity task id and checks (rules.FenceTask) that
// attempt is its newest delivery; it returns the task's instance and
// execution.
func (t *txn) fenceTask(id string, attempt int64) (instanceID, executionID string, err error) {
	var current, claimedAt int64
	err = t.queryRow(`SELECT attempt, claimed_at, instance_id, execution_id FROM activity_tasks WHERE id = ?`, id).
		Scan(&current, &claimedAt, &instanceID, &executionID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", "", err
	}
	return instanceID, executionID, rules.FenceTask(id, attempt, err == nil, current, claimedAt)
}

// store is the Backend as rules.Methods sees it. It is a type of its own so
// that its methods do not join the Backend's.
type store struct{ b *Backend }

// OpTime implements rules.Store: SQLite keeps time in the process (its
// Options.Clock).
func (s store) OpTime(t time.Time) time.Time { return s.b.now(t) }

// Write implements rules.Store. The event of pre is encoded here, before
// the single writer runs the operation.
func (s store) Write(ctx context.Context, op string, at time.Time, pre *backend.Message, fn func(rules.Tx) error) error {
	if pre == nil {
		return s.b.write(ctx, op, at, 0, func(t *txn) error { return fn(t) })
	}
	data, err := backend.EncodeEvent(pre.Event)
	if err != nil {
		return s.b.fail(op, fmt.Errorf("message %q: %w", pre.ID, err))
	}
	return s.b.write(ctx, op, at, 2*len(data)+smallOp, func(t *txn) error {
		t.preEncode(pre.ID, data)
		return fn(t)
	})
}

// Fail implements rules.Store.
func (s store) Fail(op string, err error) error { return s.b.fail(op, err) }

// DeleteWorkers implements rules.Tx.
func (t *txn) DeleteWorkers(before time.Time) (int, error) {
	res, err := t.exec(`DELETE FROM workers WHERE heartbeat_at < ?`, rules.Nanos(before))
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
