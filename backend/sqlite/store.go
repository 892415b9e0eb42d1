package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// txn is one write operation inside a batch transaction, with the
// bookkeeping its helpers share.
type txn struct {
	dbtx
	now time.Time
	// clock is the store's clock, for the times an operation takes from
	// it rather than from its Now (the leases of eager claims).
	clock func() time.Time
	// touched holds the instances whose inbox changed; flush recomputes
	// their ready columns once, however many messages changed.
	touched map[string]struct{}
	// work says what the operation may have made claimable; the writer
	// signals it after the commit.
	work workKind
	// hist is the backend's history cache, which operations that delete
	// or replace a history invalidate.
	hist *histCache
	// preID and preData are the message ID and event that the running
	// operation encoded before the writer ran (preEncode).
	preID   string
	preData []byte
}

// workKind is a set of kinds of work.
type workKind uint8

const (
	workSteps workKind = 1 << iota // orchestration steps
	workTasks                      // activity tasks
)

func newTxn(ctx context.Context, raw *rawConn, now time.Time, clock func() time.Time) *txn {
	return &txn{dbtx: dbtx{ctx: ctx, raw: raw}, now: now, clock: clock, touched: map[string]struct{}{}}
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
	s, err := t.InstanceStatus(m.InstanceID)
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
	visible := rules.Nanos(m.VisibleAt)
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
