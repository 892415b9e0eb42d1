package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// History cache.
//
// A claimed step carries its instance's whole history, and reading and
// decoding it grows with the history (a 1,000-step chain reads 500 events
// per step on average). The backend keeps the decoded histories its claims
// handed out (package histlru, bounded by Options.HistoryCacheEvents), and
// a claim reads only the rows from the last cached one on, in the same
// round trip as without the cache.
//
// The prefix is used only if the database still holds it, which the same
// query checks: the row at the prefix's last sequence number must be the
// very row cached, that is, have the same xmin (the transaction that
// inserted it) and the same bytes. History rows are only ever appended to
// an execution or deleted all together (purge, continue-as-new, rewind,
// the replacement of a finished instance), and a deleted history's rows
// are never inserted again by the transaction that first inserted them, so
// a history that another process replaced (a purge and a new instance of
// the same ID, a rewind) fails the check even when it is as long as the
// cached one and has the same execution ID. On any doubt (the row is
// missing or differs, or the sequence numbers are not the next ones) the
// claim reads the whole history again, in a second round trip.

// stepHistoryQuery returns the history rows of the instances $1 from the
// sequence numbers $2 on (0: all), with each row's xmin, in order.
//
// The rows are read by one index range scan per instance (a LATERAL
// subquery that OFFSET 0 keeps from being flattened into a join). The plain
// join let the planner pick a hash join over a sequential scan of the whole
// table, and the statement cache then kept that plan: a plan made while the
// table was new and small stayed in use as the table grew, and read every
// history row on every claim (see docs/benchmarks.md, "Plans that outlive
// their table").
const stepHistoryQuery = `SELECT c.id, h.seq, h.event, h.x
	FROM unnest($1::text[], $2::int[]) AS c(id, after)
	CROSS JOIN LATERAL (SELECT h.seq, h.event, h.xmin::text::bigint AS x FROM {s}.history h
		WHERE h.instance_id = c.id AND h.seq >= c.after ORDER BY h.seq OFFSET 0) h
	ORDER BY c.id, h.seq`

// stepHistoryOneQuery is stepHistoryQuery for one instance, $1, from
// sequence number $2 on. Most claims are of one step (a fused claim always
// is), and PostgreSQL plans the array form afresh on every execution: its
// generic plan, which counts on ten array elements, looks dearer than a
// plan for the one element given. This form's generic plan is the same as
// its custom one, so the statement cache serves it unplanned.
const stepHistoryOneQuery = `SELECT $1::text, h.seq, h.event, h.xmin::text::bigint FROM {s}.history h
	WHERE h.instance_id = $1 AND h.seq >= $2 ORDER BY h.seq`

// queueStepHistory queues the history read of instances ids from the
// sequence numbers after on.
func (b *Backend) queueStepHistory(batch *pgx.Batch, ids []string, after []int32) {
	if len(ids) == 1 {
		batch.Queue(b.q(stepHistoryOneQuery), ids[0], after[0])
		return
	}
	batch.Queue(b.q(stepHistoryQuery), ids, after)
}

// histTag is the tag of a cached history: the xmin and a hash of the bytes
// of its last row.
func histTag(xmin int64, data []byte) string {
	h := fnv.New64a()
	_, _ = h.Write(data)
	return strconv.FormatInt(xmin, 10) + "/" + strconv.FormatUint(h.Sum64(), 16)
}

// stepHist is the history read of one claimed step.
type stepHist struct {
	wi *backend.OrchestrationWorkItem
	// prefix is the cached start of the history, tag its tag, epoch the
	// cache's epoch when read.
	prefix []*backend.Event
	tag    string
	epoch  uint64
	// checked is set once the row at len(prefix) was found to be the
	// cached one; doubt once something did not match (the rows after the
	// prefix are then ignored, and all are read again). Without a prefix
	// every row is taken.
	checked, doubt bool
	// events are the events read after the prefix; last the tag of the
	// last row read.
	events []*backend.Event
	last   string
}

// add takes the next history row of the step.
func (h *stepHist) add(seq int32, data []byte, xmin int64) error {
	n := len(h.prefix)
	if n > 0 && !h.checked {
		// The first row must be the prefix's last.
		if h.doubt || int(seq) != n || histTag(xmin, data) != h.tag {
			h.doubt = true
			return nil
		}
		h.checked = true
		return nil
	}
	if h.doubt {
		return nil
	}
	if n > 0 && int(seq) != n+len(h.events)+1 {
		h.doubt = true
		return nil
	}
	ev, err := backend.DecodeEvent(data)
	if err != nil {
		return fmt.Errorf("instance %q: history event %d: %w", h.wi.Instance.ID, seq, err)
	}
	h.events = append(h.events, ev)
	h.last = histTag(xmin, data)
	return nil
}

// loadStepData reads the messages and histories of claimed steps, in one
// round trip (two for the histories the cache doubts). The leases keep
// every other step of these instances out, so reading after the claim
// committed sees the state the claim leased.
func (b *Backend) loadStepData(ctx context.Context, wis []*backend.OrchestrationWorkItem, now int64) error {
	return b.read(ctx, "load step", func(querier) error { return b.loadStepDataOn(ctx, b.pool, wis, now) })
}

// batchSender sends a pipeline: the pool, or a transaction (lazyTx).
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// loadStepDataOn is loadStepData's read, sent through q.
func (b *Backend) loadStepDataOn(ctx context.Context, q batchSender, wis []*backend.OrchestrationWorkItem, now int64) error {
	r := b.newStepRead(wis)
	batch := &pgx.Batch{}
	r.queue(batch, now)
	br := q.SendBatch(ctx, batch)
	defer func() { _ = br.Close() }()
	if err := r.scan(br); err != nil {
		return err
	}
	if err := br.Close(); err != nil {
		return err
	}
	return r.finish(ctx, q)
}

// stepRead is the read of claimed steps' messages and histories: queued
// in a pipeline, scanned from its results, finished (the histories the
// cache doubted read again, the work items filled in, the cache filled).
type stepRead struct {
	b    *Backend
	hs   []*stepHist
	byID map[string]*stepHist
}

// newStepRead prepares the read of the steps wis, with the cached prefixes
// of their histories.
func (b *Backend) newStepRead(wis []*backend.OrchestrationWorkItem) *stepRead {
	r := &stepRead{b: b, hs: make([]*stepHist, len(wis)), byID: map[string]*stepHist{}}
	for i, wi := range wis {
		wi.Messages, wi.History = nil, []*backend.Event{}
		h := &stepHist{wi: wi}
		h.prefix, h.tag, h.epoch = b.hist.Get(wi.Instance.ID, wi.Instance.ExecutionID)
		r.hs[i] = h
		r.byID[wi.Instance.ID] = h
	}
	return r
}

// first is the read's first step, nil for a nil read.
func (r *stepRead) first() *stepHist {
	if r == nil || len(r.hs) == 0 {
		return nil
	}
	return r.hs[0]
}

// queue queues the two reads, of the messages visible at now (only the
// control ones of Suspended instances) and of the histories after their
// cached prefixes.
func (r *stepRead) queue(batch *pgx.Batch, now int64) {
	ids := make([]string, len(r.hs))
	ctl := make([]bool, len(r.hs))
	after := make([]int32, len(r.hs))
	for i, h := range r.hs {
		ids[i], after[i] = h.wi.Instance.ID, int32(len(h.prefix))
		ctl[i] = h.wi.Instance.Status == backend.StatusSuspended
	}
	r.b.queueStepMessages(batch, ids, ctl, now)
	r.b.queueStepHistory(batch, ids, after)
}

// scan reads the results of the two reads queue queued.
func (r *stepRead) scan(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	var id, mid, exec string
	var data []byte
	var visible int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &mid, &exec, &data, &visible}, func() error {
		ev, err := backend.DecodeEvent(data)
		if err != nil {
			return fmt.Errorf("message %q: %w", mid, err)
		}
		wi := r.byID[id].wi
		wi.Messages = append(wi.Messages, &backend.Message{ID: mid, InstanceID: id, ExecutionID: exec,
			Event: ev, VisibleAt: rules.FromNanos(visible)})
		return nil
	}); err != nil {
		return err
	}
	return scanHistory(br, r.byID)
}

// finish reads again, through q, the whole histories whose cached prefix
// was not found as cached, then fills in the work items' histories and
// the cache.
func (r *stepRead) finish(ctx context.Context, q batchSender) error {
	var again []string
	for _, h := range r.hs {
		if len(h.prefix) > 0 && (h.doubt || !h.checked) {
			again = append(again, h.wi.Instance.ID)
			*h = stepHist{wi: h.wi, epoch: h.epoch}
		}
	}
	if len(again) > 0 {
		batch := &pgx.Batch{}
		r.b.queueStepHistory(batch, again, make([]int32, len(again)))
		br := q.SendBatch(ctx, batch)
		defer func() { _ = br.Close() }()
		if err := scanHistory(br, r.byID); err != nil {
			return err
		}
		if err := br.Close(); err != nil {
			return err
		}
	}
	for _, h := range r.hs {
		in := h.wi.Instance
		h.wi.History = append(append(make([]*backend.Event, 0, len(h.prefix)+len(h.events)), h.prefix...), h.events...)
		if len(h.events) > 0 && !in.Status.IsTerminal() {
			r.b.hist.Fill(in.ID, in.ExecutionID, slices.Clone(h.wi.History), h.last, h.epoch)
		}
	}
	return nil
}

// scanHistory reads the result of stepHistoryQuery into the steps.
func scanHistory(br pgx.BatchResults, byID map[string]*stepHist) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	var id string
	var seq int32
	var data []byte
	var xmin int64
	_, err = pgx.ForEachRow(rows, []any{&id, &seq, &data, &xmin}, func() error {
		return byID[id].add(seq, data, xmin)
	})
	return err
}
