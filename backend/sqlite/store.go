package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"duro/backend"
)

// txn is one write operation inside a batch transaction, with the
// bookkeeping its helpers share.
type txn struct {
	dbtx
	now time.Time
	// touched holds the instances whose inbox changed; flush recomputes
	// their ready columns once, however many messages changed.
	touched map[string]struct{}
	// work says what the operation may have made claimable; the writer
	// signals it after the commit.
	work workKind
	// hist is the backend's history cache, which operations that delete
	// or replace a history invalidate.
	hist *histCache
}

// workKind is a set of kinds of work.
type workKind uint8

const (
	workSteps workKind = 1 << iota // orchestration steps
	workTasks                      // activity tasks
)

func newTxn(ctx context.Context, raw *rawConn, now time.Time) *txn {
	return &txn{dbtx: dbtx{ctx: ctx, raw: raw}, now: now, touched: map[string]struct{}{}}
}

// flush recomputes the ready columns of the touched instances: over all
// their messages, or over only their control messages while they are
// Suspended. Every change of an instance's inbox or status must touch it.
func (t *txn) flush() error {
	for id := range t.touched {
		if _, err := t.exec(flushQuery, id, backend.StatusSuspended); err != nil {
			return err
		}
		delete(t.touched, id)
	}
	return nil
}

const flushQuery = `UPDATE instances SET
	ready_at = CASE WHEN status = ?2
		THEN (SELECT MIN(visible_at) FROM inbox WHERE instance_id = ?1 AND control = 1)
		ELSE (SELECT MIN(visible_at) FROM inbox WHERE instance_id = ?1) END,
	ready_key = CASE WHEN status = ?2
		THEN (SELECT MIN(sort_at) FROM inbox WHERE instance_id = ?1 AND control = 1)
		ELSE (SELECT MIN(sort_at) FROM inbox WHERE instance_id = ?1) END
	WHERE id = ?1`

// instanceStatus returns the status of an instance, or ErrInstanceNotFound.
func (t *txn) instanceStatus(id string) (backend.Status, error) {
	var s backend.Status
	err := t.queryRow(`SELECT status FROM instances WHERE id = ?`, id).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("instance %q: %w", id, backend.ErrInstanceNotFound)
	}
	return s, err
}

// deliver inserts a message into a live instance's inbox. It returns
// ErrInstanceNotFound or ErrInstanceFinished when the instance cannot take
// messages. A message whose ID is in an inbox, or was consumed by the
// instance's current execution, is ignored. data is the encoded event, or
// nil to encode it here.
func (t *txn) deliver(m *backend.Message, data []byte) error {
	if err := m.Validate(); err != nil {
		return err
	}
	// One statement inserts the message if the instance is live; only when
	// nothing was inserted does the status say why.
	n, err := t.insertMessageIf(m, data, true, true)
	if err != nil || n > 0 {
		return err
	}
	s, err := t.instanceStatus(m.InstanceID)
	if err != nil {
		return err
	}
	if s.IsTerminal() {
		return fmt.Errorf("instance %q is %s: %w", m.InstanceID, s, backend.ErrInstanceFinished)
	}
	return nil // the ID is in an inbox or was consumed: ignored
}

// insertMessage inserts a message without checking its instance. data is
// the encoded event, or nil to encode it here.
func (t *txn) insertMessage(m *backend.Message, data []byte) error {
	_, err := t.insertMessageIf(m, data, false, true)
	return err
}

// insertMessageIf inserts a message, if live only while its instance
// exists and is not terminal, and returns the number of rows inserted. An
// inserted message touches its instance if touch is set.
func (t *txn) insertMessageIf(m *backend.Message, data []byte, live, touch bool) (int64, error) {
	if data == nil {
		var err error
		if data, err = backend.EncodeEvent(m.Event); err != nil {
			return 0, fmt.Errorf("message %q: %w", m.ID, err)
		}
	}
	visible := nanos(m.VisibleAt)
	sortAt := max(visible, t.now.UnixNano())
	q := insertMessageQuery
	if live {
		q = insertLiveMessageQuery
	}
	res, err := t.exec(q,
		m.ID, m.InstanceID, m.ExecutionID, data, visible, sortAt, t.now.UnixNano(), boolInt(m.Event.Type.IsControl()))
	if err != nil {
		return 0, fmt.Errorf("message %q: %w", m.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if n > 0 {
		if touch {
			t.touched[m.InstanceID] = struct{}{}
		}
		t.work |= workSteps
	}
	return n, nil
}

const (
	insertMessageQuery = `INSERT INTO inbox (id, instance_id, execution_id, event, visible_at, sort_at, created_at, control)
		SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
		WHERE NOT EXISTS (SELECT 1 FROM inbox_consumed WHERE instance_id = ?2 AND id = ?1)
		ON CONFLICT (id) DO NOTHING`
	insertLiveMessageQuery = `INSERT INTO inbox (id, instance_id, execution_id, event, visible_at, sort_at, created_at, control)
		SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
		WHERE EXISTS (SELECT 1 FROM instances WHERE id = ?2
				AND status NOT IN ('` + string(backend.StatusCompleted) + `', '` + string(backend.StatusFailed) + `', '` +
		string(backend.StatusTerminated) + `'))
			AND NOT EXISTS (SELECT 1 FROM inbox_consumed WHERE instance_id = ?2 AND id = ?1)
		ON CONFLICT (id) DO NOTHING`
)

// createInstance creates an instance in status Pending with its
// ExecutionStarted message. An existing terminal instance is replaced if
// replace is set (its step_attempt carries over, so attempt numbers of the
// ID never repeat); otherwise, and for a live one, it returns
// ErrInstanceExists.
//
// start is the encoded start message (startMessage(p, now), where now is
// p.Now or else t.now), or nil to encode it here.
func (t *txn) createInstance(p *backend.CreateInstanceParams, replace bool, start []byte) error {
	now := t.now
	if !p.Now.IsZero() {
		now = p.Now.UTC()
	}
	var pid, pexec sql.NullString
	var ptask sql.NullInt64
	if p.Parent != nil {
		pid = sql.NullString{String: p.Parent.InstanceID, Valid: true}
		pexec = sql.NullString{String: p.Parent.ExecutionID, Valid: true}
		ptask = sql.NullInt64{Int64: int64(p.Parent.TaskID), Valid: true}
	}
	saved := t.now
	t.now = now
	defer func() { t.now = saved }()
	msg := startMessage(p, now)
	// The common case, a new ID, takes two statements: the instance row,
	// with the ready summary its only message gives it, and the message.
	visible := nanos(p.StartAt)
	sortAt := max(visible, now.UnixNano())
	res, err := t.exec(`INSERT INTO instances (id, name, execution_id, status, input, created_at, updated_at,
			parent_instance_id, parent_execution_id, parent_task_id, ready_at, ready_key)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING`,
		p.ID, p.Name, p.ExecutionID, backend.StatusPending, p.Input, now.UnixNano(), pid, pexec, ptask, visible, sortAt)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n > 0 {
		n, err := t.insertMessageIf(msg, start, false, false)
		if err == nil && n == 0 {
			t.touched[p.ID] = struct{}{} // not inserted (an ID seen before): recompute
		}
		return err
	}
	s, err := t.instanceStatus(p.ID)
	switch {
	case err != nil:
		return err
	case !replace || !s.IsTerminal():
		return fmt.Errorf("instance %q (%s): %w", p.ID, s, backend.ErrInstanceExists)
	}
	if err := t.deleteInstanceData(p.ID); err != nil {
		return err
	}
	if _, err := t.exec(`UPDATE instances SET name = ?2, execution_id = ?3, status = ?4, input = ?5, output = NULL,
			failure = NULL, custom_status = NULL, created_at = ?6, updated_at = ?6, completed_at = 0,
			suspension = NULL, resume_outcomes = NULL, parent_instance_id = ?7, parent_execution_id = ?8, parent_task_id = ?9,
			lock_owner = '', lock_expires_at = 0, ready_at = NULL, ready_key = NULL
		WHERE id = ?1`,
		p.ID, p.Name, p.ExecutionID, backend.StatusPending, p.Input, now.UnixNano(), pid, pexec, ptask); err != nil {
		return err
	}
	return t.insertMessage(msg, start)
}

// startMessage is the ExecutionStarted message of a new instance.
func startMessage(p *backend.CreateInstanceParams, now time.Time) *backend.Message {
	return &backend.Message{
		ID:          backend.StartMessageID(p.ID, p.ExecutionID),
		InstanceID:  p.ID,
		ExecutionID: p.ExecutionID,
		VisibleAt:   p.StartAt,
		Event: &backend.Event{
			Type:        backend.EventExecutionStarted,
			Timestamp:   now,
			Name:        p.Name,
			ExecutionID: p.ExecutionID,
			Input:       p.Input,
			Parent:      p.Parent,
		},
	}
}

// rewind turns Failed instance id back to Running (failure and completion
// time cleared) and enqueues its ExecutionRewound message msgID, addressed
// to the instance's current execution. It returns ErrInstanceNotFound, or
// ErrInstanceNotFailed naming the status the instance has.
func (t *txn) rewind(id, msgID, reason string) error {
	var s backend.Status
	var exec string
	err := t.queryRow(`SELECT status, execution_id FROM instances WHERE id = ?`, id).Scan(&s, &exec)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("instance %q: %w", id, backend.ErrInstanceNotFound)
	case err != nil:
		return err
	case s != backend.StatusFailed:
		return fmt.Errorf("instance %q is %s: %w", id, s, backend.ErrInstanceNotFailed)
	}
	if _, err := t.exec(`UPDATE instances SET status = ?, failure = NULL, completed_at = 0, suspension = NULL,
		updated_at = ? WHERE id = ?`, backend.StatusRunning, t.now.UnixNano(), id); err != nil {
		return err
	}
	// Deliveries still running when the instance failed belong to the
	// failed run: the rewind enqueues again what must run again.
	if _, err := t.exec(`DELETE FROM activity_tasks WHERE instance_id = ? AND visible_at = ?`, id, int64(parkedAt)); err != nil {
		return err
	}
	t.touched[id] = struct{}{}
	t.work |= workSteps
	return t.insertMessage(&backend.Message{
		ID:          msgID,
		InstanceID:  id,
		ExecutionID: exec,
		Event:       &backend.Event{Type: backend.EventExecutionRewound, Timestamp: t.now, Reason: reason},
	}, nil)
}

// deleteInstanceData deletes an instance's history, inbox, consumed message
// IDs, activity tasks and request window, keeping its row.
func (t *txn) deleteInstanceData(id string) error {
	t.hist.invalidate(id)
	for _, q := range []string{
		`DELETE FROM history WHERE instance_id = ?`,
		`DELETE FROM inbox WHERE instance_id = ?`,
		`DELETE FROM inbox_consumed WHERE instance_id = ?`,
		`DELETE FROM activity_tasks WHERE instance_id = ?`,
		`DELETE FROM request_window WHERE instance_id = ?`,
	} {
		if _, err := t.exec(q, id); err != nil {
			return err
		}
	}
	t.touched[id] = struct{}{}
	return nil
}

const instanceColumns = `id, name, execution_id, status, input, output, failure, custom_status,
	created_at, updated_at, completed_at, parent_instance_id, parent_execution_id, parent_task_id, suspension,
	resume_outcomes`

type scanner interface {
	Scan(dest ...any) error
}

// scanInstance scans the instanceColumns of a row, then extra.
func scanInstance(s scanner, extra ...any) (*backend.Instance, error) {
	var (
		in                        backend.Instance
		failure, pid, pexec, susp sql.NullString
		resumes                   sql.NullString
		ptask                     sql.NullInt64
		created, updated, compAt  int64
	)
	dest := append([]any{&in.ID, &in.Name, &in.ExecutionID, &in.Status, &in.Input, &in.Output, &failure,
		&in.CustomStatus, &created, &updated, &compAt, &pid, &pexec, &ptask, &susp, &resumes}, extra...)
	if err := s.Scan(dest...); err != nil {
		return nil, err
	}
	in.CreatedAt, in.UpdatedAt, in.CompletedAt = fromNanos(created), fromNanos(updated), fromNanos(compAt)
	if failure.Valid {
		in.Failure = new(backend.Failure)
		if err := json.Unmarshal([]byte(failure.String), in.Failure); err != nil {
			return nil, fmt.Errorf("instance %q: failure: %w", in.ID, err)
		}
	}
	if pid.Valid {
		in.Parent = &backend.ParentRef{InstanceID: pid.String, ExecutionID: pexec.String, TaskID: int(ptask.Int64)}
	}
	if resumes.Valid {
		if err := backend.DecodeResumeOutcomes([]byte(resumes.String), &in.ResumeOutcomes); err != nil {
			return nil, fmt.Errorf("instance %q: %w", in.ID, err)
		}
	}
	if in.Status == backend.StatusSuspended {
		if susp.Valid {
			in.Suspension = new(backend.Suspension)
			if err := json.Unmarshal([]byte(susp.String), in.Suspension); err != nil {
				return nil, fmt.Errorf("instance %q: suspension: %w", in.ID, err)
			}
			in.Suspension.InUTC()
		} else {
			// Suspended without a stored suspension (a step that passed
			// none): report one, since the instance is suspended.
			in.Suspension = &backend.Suspension{Since: in.UpdatedAt}
		}
	}
	return &in, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// encodeSuspension stores a suspension as JSON; nil is NULL.
func encodeSuspension(s *backend.Suspension) (sql.NullString, error) {
	if s == nil {
		return sql.NullString{}, nil
	}
	data, err := json.Marshal(s)
	if err != nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: string(data), Valid: true}, nil
}

// encodeFailure stores a failure as JSON; nil is NULL.
func encodeFailure(f *backend.Failure) (sql.NullString, error) {
	if f == nil {
		return sql.NullString{}, nil
	}
	data, err := json.Marshal(f)
	if err != nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: string(data), Valid: true}, nil
}
