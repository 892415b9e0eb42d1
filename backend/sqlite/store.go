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

// txn is one write transaction with the bookkeeping its helpers share.
type txn struct {
	ctx context.Context
	tx  *sql.Tx
	now time.Time
	// touched holds the instances whose inbox changed; flush recomputes
	// their ready columns once, however many messages changed.
	touched map[string]struct{}
	// work is set when the transaction may have made work claimable.
	work bool
}

func newTxn(ctx context.Context, tx *sql.Tx, now time.Time) *txn {
	return &txn{ctx: ctx, tx: tx, now: now, touched: map[string]struct{}{}}
}

func (t *txn) exec(query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(t.ctx, query, args...)
}

func (t *txn) queryRow(query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(t.ctx, query, args...)
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
// instance's current execution, is ignored.
func (t *txn) deliver(m *backend.Message) error {
	if err := validateMessage(m); err != nil {
		return err
	}
	s, err := t.instanceStatus(m.InstanceID)
	if err != nil {
		return err
	}
	if s.IsTerminal() {
		return fmt.Errorf("instance %q is %s: %w", m.InstanceID, s, backend.ErrInstanceFinished)
	}
	return t.insertMessage(m)
}

// insertMessage inserts a message without checking its instance.
func (t *txn) insertMessage(m *backend.Message) error {
	data, err := encodeEvent(m.Event)
	if err != nil {
		return fmt.Errorf("message %q: %w", m.ID, err)
	}
	visible := nanos(m.VisibleAt)
	sortAt := visible
	if sortAt == 0 {
		sortAt = t.now.UnixNano()
	}
	res, err := t.exec(`INSERT INTO inbox (id, instance_id, execution_id, event, visible_at, sort_at, created_at, control)
		SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
		WHERE NOT EXISTS (SELECT 1 FROM inbox_consumed WHERE instance_id = ?2 AND id = ?1)
		ON CONFLICT (id) DO NOTHING`,
		m.ID, m.InstanceID, m.ExecutionID, data, visible, sortAt, t.now.UnixNano(), boolInt(m.Event.Type.IsControl()))
	if err != nil {
		return fmt.Errorf("message %q: %w", m.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n > 0 {
		t.touched[m.InstanceID] = struct{}{}
		t.work = true
	}
	return nil
}

func validateMessage(m *backend.Message) error {
	switch {
	case m == nil:
		return errors.New("nil message")
	case m.ID == "":
		return errors.New("message: empty ID")
	case m.InstanceID == "":
		return fmt.Errorf("message %q: empty instance ID", m.ID)
	case m.Event == nil:
		return fmt.Errorf("message %q: nil event", m.ID)
	}
	return nil
}

func validateCreate(p *backend.CreateInstanceParams) error {
	switch {
	case p == nil:
		return errors.New("nil params")
	case p.ID == "":
		return errors.New("empty instance ID")
	case p.Name == "":
		return fmt.Errorf("instance %q: empty name", p.ID)
	case p.ExecutionID == "":
		return fmt.Errorf("instance %q: empty execution ID", p.ID)
	case p.IfExists != backend.IfExistsFail && p.IfExists != backend.IfExistsReplaceFinished:
		return fmt.Errorf("instance %q: unknown IfExists policy %d", p.ID, p.IfExists)
	case p.Parent != nil && p.Parent.InstanceID == "":
		return fmt.Errorf("instance %q: parent with empty instance ID", p.ID)
	}
	return nil
}

// createInstance creates an instance in status Pending with its
// ExecutionStarted message. An existing terminal instance is replaced if
// replace is set (its step_attempt carries over, so attempt numbers of the
// ID never repeat); otherwise, and for a live one, it returns
// ErrInstanceExists.
func (t *txn) createInstance(p *backend.CreateInstanceParams, replace bool) error {
	now := t.now
	if !p.Now.IsZero() {
		now = p.Now.UTC()
	}
	s, err := t.instanceStatus(p.ID)
	switch {
	case errors.Is(err, backend.ErrInstanceNotFound):
	case err != nil:
		return err
	case !replace || !s.IsTerminal():
		return fmt.Errorf("instance %q (%s): %w", p.ID, s, backend.ErrInstanceExists)
	default:
		if err := t.deleteInstanceData(p.ID); err != nil {
			return err
		}
	}
	var pid, pexec sql.NullString
	var ptask sql.NullInt64
	if p.Parent != nil {
		pid = sql.NullString{String: p.Parent.InstanceID, Valid: true}
		pexec = sql.NullString{String: p.Parent.ExecutionID, Valid: true}
		ptask = sql.NullInt64{Int64: int64(p.Parent.TaskID), Valid: true}
	}
	if _, err := t.exec(`INSERT INTO instances (id, name, execution_id, status, input, created_at, updated_at,
			parent_instance_id, parent_execution_id, parent_task_id)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, execution_id = excluded.execution_id,
			status = excluded.status, input = excluded.input, output = NULL, failure = NULL,
			custom_status = NULL, created_at = excluded.created_at, updated_at = excluded.updated_at,
			completed_at = 0, suspension = NULL, parent_instance_id = excluded.parent_instance_id,
			parent_execution_id = excluded.parent_execution_id, parent_task_id = excluded.parent_task_id,
			lock_owner = '', lock_expires_at = 0, ready_at = NULL, ready_key = NULL`,
		p.ID, p.Name, p.ExecutionID, backend.StatusPending, p.Input, now.UnixNano(), pid, pexec, ptask); err != nil {
		return err
	}
	saved := t.now
	t.now = now
	defer func() { t.now = saved }()
	return t.insertMessage(&backend.Message{
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
	})
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
	t.touched[id] = struct{}{}
	t.work = true
	return t.insertMessage(&backend.Message{
		ID:          msgID,
		InstanceID:  id,
		ExecutionID: exec,
		Event:       &backend.Event{Type: backend.EventExecutionRewound, Timestamp: t.now, Reason: reason},
	})
}

// deleteInstanceData deletes an instance's history, inbox, consumed message
// IDs and activity tasks, keeping its row.
func (t *txn) deleteInstanceData(id string) error {
	for _, q := range []string{
		`DELETE FROM history WHERE instance_id = ?`,
		`DELETE FROM inbox WHERE instance_id = ?`,
		`DELETE FROM inbox_consumed WHERE instance_id = ?`,
		`DELETE FROM activity_tasks WHERE instance_id = ?`,
	} {
		if _, err := t.exec(q, id); err != nil {
			return err
		}
	}
	t.touched[id] = struct{}{}
	return nil
}

// encodeEvent encodes e and checks that it decodes, so that nothing stored
// can later fail to decode and wedge an instance.
func encodeEvent(e *backend.Event) ([]byte, error) {
	data, err := backend.EncodeEvent(e)
	if err != nil {
		return nil, err
	}
	if _, err := backend.DecodeEvent(data); err != nil {
		return nil, err
	}
	return data, nil
}

// decodeEvent decodes a stored event with its times in UTC.
func decodeEvent(data []byte) (*backend.Event, error) {
	e, err := backend.DecodeEvent(data)
	if err != nil {
		return nil, err
	}
	e.Timestamp = utc(e.Timestamp)
	e.FireAt = utc(e.FireAt)
	utcSuspension(e.Suspension)
	return e, nil
}

const instanceColumns = `id, name, execution_id, status, input, output, failure, custom_status,
	created_at, updated_at, completed_at, parent_instance_id, parent_execution_id, parent_task_id, suspension`

type scanner interface {
	Scan(dest ...any) error
}

func scanInstance(s scanner) (*backend.Instance, error) {
	var (
		in                        backend.Instance
		failure, pid, pexec, susp sql.NullString
		ptask                     sql.NullInt64
		created, updated, compAt  int64
	)
	if err := s.Scan(&in.ID, &in.Name, &in.ExecutionID, &in.Status, &in.Input, &in.Output, &failure,
		&in.CustomStatus, &created, &updated, &compAt, &pid, &pexec, &ptask, &susp); err != nil {
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
	if in.Status == backend.StatusSuspended {
		if susp.Valid {
			in.Suspension = new(backend.Suspension)
			if err := json.Unmarshal([]byte(susp.String), in.Suspension); err != nil {
				return nil, fmt.Errorf("instance %q: suspension: %w", in.ID, err)
			}
			utcSuspension(in.Suspension)
		} else {
			// Suspended without a stored suspension (a step that passed
			// none): report one, since the instance is suspended.
			in.Suspension = &backend.Suspension{Since: in.UpdatedAt}
		}
	}
	return &in, nil
}

// utc returns t in UTC; the zero time stays zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// utcSuspension turns the times of s, which may be nil, to UTC.
func utcSuspension(s *backend.Suspension) {
	if s == nil {
		return
	}
	s.Since = utc(s.Since)
	for _, pd := range s.Pending {
		if pd != nil {
			pd.PreviousDeliveryAt = utc(pd.PreviousDeliveryAt)
		}
	}
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
