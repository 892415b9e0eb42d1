package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// CreateInstance implements backend.Backend.
func (b *Backend) CreateInstance(ctx context.Context, p *backend.CreateInstanceParams) error {
	const op = "create instance"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	at := b.now(p.Now)
	start := rules.StartMessage(p, at)
	data, err := backend.EncodeEvent(start.Event)
	if err != nil {
		return b.fail(op, fmt.Errorf("instance %q: start message: %w", p.ID, err))
	}
	return b.write(ctx, op, at, 2*len(data)+smallOp, func(t *txn) error {
		t.preEncode(start.ID, data)
		return rules.CreateInstance(t, p, p.IfExists == backend.IfExistsReplaceFinished)
	})
}

// GetInstance implements backend.Backend.
func (b *Backend) GetInstance(ctx context.Context, id string) (*backend.Instance, error) {
	var in *backend.Instance
	err := b.read(ctx, "get instance", func(d *dbtx) error {
		var err error
		in, err = d.getInstance(id)
		return err
	})
	return in, err
}

const getInstanceQuery = `SELECT ` + rules.InstanceColumns + ` FROM instances WHERE id = ?`

func (d *dbtx) getInstance(id string) (*backend.Instance, error) {
	in, err := scanInstance(d.queryRow(getInstanceQuery, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("instance %q: %w", id, backend.ErrInstanceNotFound)
	}
	return in, err
}

// GetHistory implements backend.Backend.
func (b *Backend) GetHistory(ctx context.Context, id string) ([]*backend.Event, error) {
	var raw [][]byte
	err := b.read(ctx, "get history", func(d *dbtx) error {
		var n int
		err := d.queryRow(`SELECT COUNT(*) FROM instances WHERE id = ?`, id).Scan(&n)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("instance %q: %w", id, backend.ErrInstanceNotFound)
		}
		raw, err = d.loadHistory(id)
		return err
	})
	if err != nil {
		return nil, err
	}
	h, err := decodeHistory(id, 0, raw)
	if err != nil {
		return nil, b.fail("get history", err)
	}
	return h, nil
}

// loadHistory reads the encoded events of an instance's history, in order;
// decodeHistory decodes them, outside the transaction.
func (d *dbtx) loadHistory(id string) ([][]byte, error) {
	return d.loadHistorySince(id, 0)
}

// loadHistorySince reads the encoded events after the first n.
func (d *dbtx) loadHistorySince(id string, n int) ([][]byte, error) {
	rows, err := d.query(`SELECT event FROM history WHERE instance_id = ? AND seq > ? ORDER BY seq`, id, n)
	if err != nil {
		return nil, err
	}
	var h [][]byte
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			_ = rows.Close()
			return nil, err
		}
		h = append(h, data)
	}
	return h, closeRows(rows)
}

// decodeHistory decodes history events that follow the first skip.
func decodeHistory(id string, skip int, raw [][]byte) ([]*backend.Event, error) {
	h := make([]*backend.Event, len(raw))
	for i, data := range raw {
		e, err := backend.DecodeEvent(data)
		if err != nil {
			return nil, fmt.Errorf("instance %q: history event %d: %w", id, skip+i+1, err)
		}
		h[i] = e
	}
	return h, nil
}

// EnqueueMessage implements backend.Backend. A zero VisibleAt makes the
// message visible to every claim, whatever clock the claim passes.
func (b *Backend) EnqueueMessage(ctx context.Context, m *backend.Message) error {
	const op = "enqueue message"
	if err := m.Validate(); err != nil {
		return b.fail(op, err)
	}
	data, err := backend.EncodeEvent(m.Event)
	if err != nil {
		return b.fail(op, fmt.Errorf("message %q: %w", m.ID, err))
	}
	return b.write(ctx, op, time.Time{}, len(data)+smallOp, func(t *txn) error {
		t.preEncode(m.ID, data)
		return rules.Enqueue(t, m)
	})
}

// QueuedControl implements rules.Tx.
func (t *txn) QueuedControl(m *backend.Message) (string, error) {
	var other string
	err := t.queryRow(`SELECT id FROM inbox WHERE instance_id = ? AND control = 1 AND id <> ?
		AND json_extract(CAST(event AS TEXT), '$.type') = ? LIMIT 1`, m.InstanceID, m.ID, string(m.Event.Type)).Scan(&other)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return other, err
}

// RewindInstance implements backend.Backend. The ExecutionRewound message
// is addressed to the instance's current execution and visible at once; like
// any message, it is ignored if its ID is in an inbox or was consumed by
// the current execution.
func (b *Backend) RewindInstance(ctx context.Context, p *backend.RewindParams) error {
	const op = "rewind instance"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	return b.write(ctx, op, p.Now, 0, func(t *txn) error {
		return rules.Rewind(t, p.InstanceID, p.MessageID, p.Reason)
	})
}

// PurgeInstance implements backend.Backend.
func (b *Backend) PurgeInstance(ctx context.Context, id string) error {
	return b.write(ctx, "purge instance", time.Time{}, 0, func(t *txn) error {
		return rules.PurgeInstance(t, id)
	})
}

// PurgeInstances implements backend.Backend. At least one filter field must
// be set; statuses that are not terminal match nothing.
func (b *Backend) PurgeInstances(ctx context.Context, p *backend.PurgeInstancesParams) (int, error) {
	terminal, err := rules.PurgeStatuses(p)
	if err != nil {
		return 0, b.fail("purge instances", err)
	}
	if len(terminal) == 0 {
		return 0, nil
	}
	where, args := filterSQL(terminal, p.Name, p.CreatedFrom, p.CreatedTo)
	var n int64
	err = b.write(ctx, "purge instances", time.Time{}, 0, func(t *txn) error {
		for _, table := range []string{"history", "inbox", "inbox_consumed", "activity_tasks", "request_window"} {
			if _, err := t.exec(`DELETE FROM `+table+
				` WHERE instance_id IN (SELECT id FROM instances WHERE `+where+`)`, args...); err != nil {
				return err
			}
		}
		t.hist.clear()
		res, err := t.exec(`DELETE FROM instances WHERE `+where, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// filterSQL builds the WHERE clause of the instance filters; it is never
// empty.
func filterSQL(statuses []backend.Status, name string, from, to time.Time) (string, []any) {
	conds := []string{"1 = 1"}
	var args []any
	if len(statuses) == 1 {
		conds = append(conds, "status = ?")
		args = append(args, string(statuses[0]))
	} else if len(statuses) > 1 {
		conds = append(conds, "status IN (?"+strings.Repeat(", ?", len(statuses)-1)+")")
		for _, s := range statuses {
			args = append(args, string(s))
		}
	}
	if name != "" {
		conds = append(conds, "name = ?")
		args = append(args, name)
	}
	if !from.IsZero() {
		conds = append(conds, "created_at >= ?")
		args = append(args, from.UnixNano())
	}
	if !to.IsZero() {
		conds = append(conds, "created_at < ?")
		args = append(args, to.UnixNano())
	}
	return strings.Join(conds, " AND "), args
}

// listedColumns are rules.InstanceColumns without the payloads a listing with
// OmitPayloads leaves out, followed by the payloads' lengths.
var listedColumns = strings.NewReplacer(
	"input, output,", "NULL, NULL,",
	"custom_status,", "CASE WHEN "+byteLength("custom_status")+" <= "+strconv.Itoa(backend.MaxListedCustomStatus)+" THEN custom_status END,",
).Replace(rules.InstanceColumns) + ", " + byteLength("input") + ", " + byteLength("output") + ", " + byteLength("custom_status")

// byteLength is the SQL length in bytes of a payload column (0 for NULL).
func byteLength(col string) string { return "COALESCE(length(CAST(" + col + " AS BLOB)), 0)" }

// listFilterSQL adds the filters only listings have (ID prefix, custom
// status) to a filterSQL clause.
func listFilterSQL(where string, args []any, p *backend.ListInstancesParams) (string, []any) {
	if p.IDPrefix != "" {
		where += " AND id >= ?"
		args = append(args, p.IDPrefix)
		if end, ok := backend.PrefixEnd(p.IDPrefix); ok {
			where += " AND id < ?"
			args = append(args, end)
		}
	}
	if p.CustomStatus != "" {
		// instr on two blobs compares bytes.
		where += " AND instr(custom_status, ?) > 0"
		args = append(args, []byte(p.CustomStatus))
	}
	return where, args
}

// DefaultPageSize is the page size of ListInstances when PageSize is 0.
const DefaultPageSize = 100

// ListInstances implements backend.Backend. Instances are ordered newest
// first by creation time, then by descending ID. The page token is opaque; a
// token this backend did not produce is an error.
func (b *Backend) ListInstances(ctx context.Context, p *backend.ListInstancesParams) (*backend.InstancePage, error) {
	if p == nil {
		p = &backend.ListInstancesParams{}
	}
	size := p.PageSize
	switch {
	case size < 0:
		return nil, b.fail("list instances", fmt.Errorf("negative page size %d", size))
	case size == 0:
		size = DefaultPageSize
	}
	if err := rules.ValidStatuses(p.Statuses); err != nil {
		return nil, b.fail("list instances", err)
	}
	var after string
	var afterArgs []any
	if p.PageToken != "" {
		at, id, err := backend.DecodePageToken(p.PageToken)
		if err != nil {
			return nil, b.fail("list instances", err)
		}
		after = " AND (created_at < ? OR (created_at = ? AND id < ?))"
		afterArgs = []any{at, at, id}
	}
	// One index range per status, merged: each walks its index newest first
	// and stops after a page, so no filter sorts all matching instances.
	var statuses []backend.Status
	for _, s := range p.Statuses {
		if !slices.Contains(statuses, s) {
			statuses = append(statuses, s)
		}
	}
	if len(statuses) == 0 {
		statuses = []backend.Status{""}
	}
	columns := rules.InstanceColumns
	if p.OmitPayloads {
		columns = listedColumns
	}
	var parts []string
	var args []any
	for _, s := range statuses {
		var one []backend.Status
		if s != "" {
			one = []backend.Status{s}
		}
		where, wargs := filterSQL(one, p.Name, p.CreatedFrom, p.CreatedTo)
		where, wargs = listFilterSQL(where, wargs, p)
		parts = append(parts, `SELECT * FROM (SELECT `+columns+` FROM instances WHERE `+where+after+
			` ORDER BY created_at DESC, id DESC LIMIT ?)`)
		args = append(append(append(args, wargs...), afterArgs...), size+1)
	}
	query := strings.Join(parts, " UNION ALL ")
	if len(parts) > 1 {
		query = `SELECT * FROM (` + query + `) ORDER BY created_at DESC, id DESC LIMIT ?`
		args = append(args, size+1)
	}
	page := &backend.InstancePage{Instances: []*backend.Instance{}}
	err := b.read(ctx, "list instances", func(d *dbtx) error {
		rows, err := d.query(query, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var sizes [3]int
			var extra []any
			if p.OmitPayloads {
				extra = []any{&sizes[0], &sizes[1], &sizes[2]}
			}
			in, err := scanInstance(rows, extra...)
			if err != nil {
				_ = rows.Close()
				return err
			}
			if p.OmitPayloads {
				in.Omitted = true
				in.InputSize, in.OutputSize, in.CustomStatusSize = sizes[0], sizes[1], sizes[2]
			}
			page.Instances = append(page.Instances, in)
		}
		return closeRows(rows)
	})
	if err != nil {
		return nil, err
	}
	if len(page.Instances) > size {
		page.Instances = page.Instances[:size]
		last := page.Instances[size-1]
		page.NextPageToken = backend.EncodePageToken(last.CreatedAt, last.ID)
	}
	return page, nil
}
