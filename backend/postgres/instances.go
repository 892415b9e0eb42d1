package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// GetInstance implements backend.Backend.
func (b *Backend) GetInstance(ctx context.Context, id string) (*backend.Instance, error) {
	return readValue(ctx, b, "get instance", func(q querier) (*backend.Instance, error) {
		return b.getInstance(ctx, q, id)
	})
}

func (b *Backend) getInstance(ctx context.Context, q querier, id string) (*backend.Instance, error) {
	in, err := rules.ScanInstance(q.QueryRow(ctx, b.q(`SELECT `+rules.InstanceColumns+` FROM {s}.instances WHERE id = $1`), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("instance %q: %w", id, backend.ErrInstanceNotFound)
	}
	return in, err
}

// GetHistory implements backend.Backend.
func (b *Backend) GetHistory(ctx context.Context, id string) ([]*backend.Event, error) {
	var h []*backend.Event
	err := b.read(ctx, "get history", func(q querier) error {
		// One statement, one snapshot: the instance row and its history.
		rows, err := q.Query(ctx, b.q(`SELECT h.seq, h.event FROM {s}.instances i
			LEFT JOIN {s}.history h ON h.instance_id = i.id WHERE i.id = $1 ORDER BY h.seq`), id)
		if err != nil {
			return err
		}
		h = []*backend.Event{}
		found := false
		var seq *int32
		var data []byte
		_, err = pgx.ForEachRow(rows, []any{&seq, &data}, func() error {
			found = true
			if seq == nil {
				return nil
			}
			e, err := backend.DecodeEvent(data)
			if err != nil {
				return fmt.Errorf("instance %q: history event %d: %w", id, *seq, err)
			}
			h = append(h, e)
			return nil
		})
		if err == nil && !found {
			err = fmt.Errorf("instance %q: %w", id, backend.ErrInstanceNotFound)
		}
		return err
	})
	return h, err
}

// QueuedControl implements rules.Tx. The instance's row lock serializes
// exclusive senders (and the steps that consume their messages).
func (t *txn) QueuedControl(m *backend.Message) (string, error) {
	if _, err := t.lock(m.InstanceID); err != nil {
		return "", err
	}
	var other string
	err := t.queryRow(`SELECT id FROM {s}.inbox WHERE instance_id = $1 AND control AND id <> $2
		AND convert_from(event, 'UTF8')::jsonb->>'type' = $3 LIMIT 1`, m.InstanceID, m.ID, string(m.Event.Type)).Scan(&other)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return other, err
}

// PurgeInstances implements backend.Backend. At least one filter field must
// be set; statuses that are not terminal match nothing.
func (b *Backend) PurgeInstances(ctx context.Context, p *backend.PurgeInstancesParams) (int, error) {
	const op = "purge instances"
	statuses, err := rules.PurgeStatuses(p)
	if err != nil {
		return 0, b.fail(op, err)
	}
	if len(statuses) == 0 {
		return 0, nil
	}
	terminal := make([]string, len(statuses))
	for i, s := range statuses {
		terminal[i] = string(s)
	}
	where, args := filterSQL(terminal, p.Name, p.CreatedFrom, p.CreatedTo)
	var n int
	err = b.write(ctx, op, time.Time{}, func(t *txn) error {
		// Lock the matching rows in ID order (as every multi-instance
		// transaction does), delete them, then their data.
		rows, err := t.tx.Query(t.ctx, b.q(`SELECT id FROM {s}.instances WHERE `+where+` ORDER BY id FOR UPDATE`), args...)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		// The DELETE re-checks the filter on the locked rows.
		rows, err = t.tx.Query(t.ctx, b.q(`DELETE FROM {s}.instances WHERE id = ANY($1) AND `+shiftParams(where, 1)+
			` RETURNING id`), append([]any{ids}, args...)...)
		if err != nil {
			return err
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		n = len(ids)
		batch := &pgx.Batch{}
		for _, table := range []string{"history", "inbox", "inbox_consumed", "activity_tasks", "request_window"} {
			batch.Queue(b.q(`DELETE FROM {s}.`+table+` WHERE instance_id = ANY($1)`), ids)
		}
		return t.tx.SendBatch(t.ctx, batch).Close()
	})
	return n, err
}

// shiftParams renumbers the $n parameters of a filter by k.
func shiftParams(where string, k int) string {
	var sb strings.Builder
	for i := 0; i < len(where); i++ {
		if where[i] != '$' {
			sb.WriteByte(where[i])
			continue
		}
		j := i + 1
		for j < len(where) && where[j] >= '0' && where[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(where[i+1 : j])
		sb.WriteString("$" + strconv.Itoa(n+k))
		i = j - 1
	}
	return sb.String()
}

// filterSQL builds the WHERE clause of the instance filters, with
// parameters $1...; it is never empty.
func filterSQL(statuses []string, name string, from, to time.Time) (string, []any) {
	conds := []string{"true"}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(statuses) > 0 {
		conds = append(conds, "status = ANY("+arg(statuses)+"::text[])")
	}
	if name != "" {
		conds = append(conds, "name = "+arg(name))
	}
	if !from.IsZero() {
		conds = append(conds, "created_at >= "+arg(from.UnixNano()))
	}
	if !to.IsZero() {
		conds = append(conds, "created_at < "+arg(to.UnixNano()))
	}
	return strings.Join(conds, " AND "), args
}

// listedColumns are rules.InstanceColumns without the payloads a listing with
// OmitPayloads leaves out, followed by the payloads' lengths.
var listedColumns = strings.NewReplacer(
	"input, output,", "NULL::bytea, NULL::bytea,",
	"custom_status,", "CASE WHEN length(custom_status) <= "+strconv.Itoa(backend.MaxListedCustomStatus)+" THEN custom_status END,",
).Replace(rules.InstanceColumns) + ", COALESCE(length(input), 0), COALESCE(length(output), 0), COALESCE(length(custom_status), 0)"

// DefaultPageSize is the page size of ListInstances when PageSize is 0.
const DefaultPageSize = 100

// ListInstances implements backend.Backend. Instances are ordered newest
// first by creation time, then by descending ID (byte order). The page
// token is opaque; a token this backend did not produce is an error.
func (b *Backend) ListInstances(ctx context.Context, p *backend.ListInstancesParams) (*backend.InstancePage, error) {
	const op = "list instances"
	if p == nil {
		p = &backend.ListInstancesParams{}
	}
	size := p.PageSize
	switch {
	case size < 0:
		return nil, b.fail(op, fmt.Errorf("negative page size %d", size))
	case size == 0:
		size = DefaultPageSize
	}
	if err := rules.ValidStatuses(p.Statuses); err != nil {
		return nil, b.fail(op, err)
	}
	var statuses []string
	for _, s := range p.Statuses {
		statuses = append(statuses, string(s))
	}
	where, args := filterSQL(statuses, p.Name, p.CreatedFrom, p.CreatedTo)
	if p.IDPrefix != "" {
		// id is COLLATE "C" (byte order): the lower bound is a range of
		// the primary key. (An upper bound from backend.PrefixEnd need not
		// be valid UTF-8, which text parameters must be.)
		args = append(args, p.IDPrefix)
		where += fmt.Sprintf(" AND id >= $%d AND starts_with(id, $%d)", len(args), len(args))
	}
	if p.CustomStatus != "" {
		args = append(args, []byte(p.CustomStatus))
		where += fmt.Sprintf(" AND position($%d::bytea in custom_status) > 0", len(args))
	}
	if p.PageToken != "" {
		at, id, err := backend.DecodePageToken(p.PageToken)
		if err != nil {
			return nil, b.fail(op, err)
		}
		args = append(args, at, id)
		where += fmt.Sprintf(" AND (created_at, id) < ($%d, $%d)", len(args)-1, len(args))
	}
	args = append(args, size+1)
	columns := rules.InstanceColumns
	if p.OmitPayloads {
		columns = listedColumns
	}
	query := b.q(`SELECT ` + columns + ` FROM {s}.instances WHERE ` + where +
		fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(args)))
	return readValue(ctx, b, op, func(q querier) (*backend.InstancePage, error) {
		rows, err := q.Query(ctx, query, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		return rules.ScanPage(rows, p.OmitPayloads, size)
	})
}
