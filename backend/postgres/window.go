package postgres

import (
	"context"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// ProcessedRequests implements backend.RequestWindow.
func (b *Backend) ProcessedRequests(ctx context.Context, instanceID string, ids []string) ([]backend.ProcessedRequest, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var out []backend.ProcessedRequest
	err := b.read(ctx, "processed requests", func(q querier) error {
		rows, err := q.Query(ctx, b.q(`SELECT id, added_at FROM {s}.request_window
			WHERE instance_id = $1 AND id = ANY($2)`), instanceID, ids)
		if err != nil {
			return err
		}
		defer rows.Close()
		out, err = rules.ScanProcessed(rows)
		return err
	})
	return out, err
}

// queueWindow queues a step's window update in its batch: the new entries
// get the next sequence numbers, then the oldest end is cut by count and by
// age. Both statements only execute.
func (t *txn) queueWindow(batch *pgx.Batch, id string, w *backend.WindowUpdate) {
	if w == nil {
		return
	}
	if len(w.Add) > 0 {
		// One statement may not upsert a row twice: an ID given twice is
		// added once, at its last place.
		last := make(map[string]int, len(w.Add))
		for i, r := range w.Add {
			last[r.ID] = i
		}
		ids := make([]string, 0, len(last))
		ats := make([]int64, 0, len(last))
		for i, r := range w.Add {
			if last[r.ID] == i {
				ids, ats = append(ids, r.ID), append(ats, rules.Nanos(r.At))
			}
		}
		batch.Queue(t.b.q(`INSERT INTO {s}.request_window (instance_id, id, seq, added_at)
			SELECT $1, r.id, base.n + r.ord, r.at
			FROM (SELECT COALESCE(MAX(seq), 0) AS n FROM {s}.request_window WHERE instance_id = $1) base,
				unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS r(id, at, ord)
			ON CONFLICT (instance_id, id) DO UPDATE SET seq = excluded.seq, added_at = excluded.added_at`),
			id, ids, ats)
	}
	if w.Keep <= 0 && w.Before.IsZero() {
		return
	}
	keep := int64(math.MaxInt64 / 2) // no bound by count
	if w.Keep > 0 {
		keep = int64(w.Keep)
	}
	// Everything before the cut goes: the entries beyond the keep newest,
	// and the oldest ones processed before $3, up to the first that was
	// not (all of them if none).
	batch.Queue(t.b.q(`DELETE FROM {s}.request_window w
		USING (SELECT COALESCE(MAX(seq), 0) AS last FROM {s}.request_window WHERE instance_id = $1) m
		WHERE w.instance_id = $1 AND w.seq < GREATEST(m.last - $2 + 1,
			COALESCE((SELECT seq FROM {s}.request_window WHERE instance_id = $1 AND added_at >= $3 ORDER BY seq LIMIT 1),
				m.last + 1))`), id, keep, rules.Nanos(w.Before))
}
