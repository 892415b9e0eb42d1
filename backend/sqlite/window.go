package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"math"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// ProcessedRequests implements backend.RequestWindow.
func (b *Backend) ProcessedRequests(ctx context.Context, instanceID string, ids []string) ([]backend.ProcessedRequest, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, b.fail("processed requests", err)
	}
	var out []backend.ProcessedRequest
	err = b.read(ctx, "processed requests", func(d *dbtx) error {
		rows, err := d.query(`SELECT id, added_at FROM request_window
			WHERE instance_id = ?1 AND id IN (SELECT value FROM json_each(?2))`, instanceID, list)
		if err != nil {
			return err
		}
		out, err = rules.ScanProcessed(rows)
		return errors.Join(err, closeRows(rows))
	})
	return out, err
}

// updateWindow applies a step's window update: the new entries get the
// next sequence numbers, then the oldest end is cut by count and by age.
func (t *txn) updateWindow(id string, w *backend.WindowUpdate) error {
	if w == nil {
		return nil
	}
	var last int64
	if err := t.queryRow(`SELECT COALESCE(MAX(seq), 0) FROM request_window WHERE instance_id = ?`, id).
		Scan(&last); err != nil {
		return err
	}
	if len(w.Add) <= 4 {
		for _, r := range w.Add {
			last++
			if _, err := t.exec(`INSERT INTO request_window (instance_id, id, seq, added_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (instance_id, id) DO UPDATE SET seq = excluded.seq, added_at = excluded.added_at`,
				id, r.ID, last, rules.Nanos(r.At)); err != nil {
				return err
			}
		}
	} else {
		type entry struct {
			ID string `json:"i"`
			At int64  `json:"t"`
		}
		list := make([]entry, len(w.Add))
		for i, r := range w.Add {
			list[i] = entry{r.ID, rules.Nanos(r.At)}
		}
		data, err := json.Marshal(list)
		if err != nil {
			return err
		}
		if _, err := t.exec(`INSERT INTO request_window (instance_id, id, seq, added_at)
			SELECT ?1, json_extract(value, '$.i'), ?2 + key + 1, json_extract(value, '$.t') FROM json_each(?3) WHERE true
			ON CONFLICT (instance_id, id) DO UPDATE SET seq = excluded.seq, added_at = excluded.added_at`,
			id, last, data); err != nil {
			return err
		}
		last += int64(len(w.Add))
	}
	// Everything before cut goes: the entries beyond the Keep newest, and
	// the oldest ones processed before w.Before, up to the first that was
	// not (last+1 if none: all of them).
	keepCut := int64(math.MinInt64)
	if w.Keep > 0 {
		keepCut = last - int64(w.Keep) + 1
	}
	if w.Before.IsZero() && keepCut <= 1 {
		return nil
	}
	_, err := t.exec(`DELETE FROM request_window WHERE instance_id = ?1 AND seq < MAX(?2,
		COALESCE((SELECT seq FROM request_window WHERE instance_id = ?1 AND added_at >= ?3 ORDER BY seq LIMIT 1), ?4))`,
		id, keepCut, rules.Nanos(w.Before), last+1)
	return err
}
