package sqlite

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durohq/duro/backend"
)

// Group commit.
//
// Every write operation (claims, completions, steps, enqueues, renewals) is
// queued for one writer goroutine, which owns the writer connection. The
// writer takes everything queued when it is ready (up to maxBatchOps
// operations and maxBatchBytes of payload), runs the operations one after
// the other in a single BEGIN IMMEDIATE transaction, each inside its own
// SAVEPOINT so that an operation that fails rolls back only itself, and
// commits once. Every caller returns after that COMMIT, with its own result:
// one commit (one fsync under synchronous=FULL) covers the whole batch, and
// each operation is exactly as atomic and as durable as if it had committed
// alone. Operations queue while a batch runs, so batches grow with the load
// and nothing ever waits for a timer.
//
// A caller whose context ends while its operation is still queued gets the
// context's error and the operation never runs. Once the writer has taken
// it, it runs to the end of its batch (interrupting a statement would roll
// back the whole batch), and the caller gets its real outcome.

const (
	// maxBatchOps and maxBatchBytes bound one batch: a transaction that holds
	// the write lock too long delays every other writer, and the callers of
	// a batch wait for its last operation.
	maxBatchOps   = 128
	maxBatchBytes = 4 << 20
	// smallOp is the size assumed for operations that do not say.
	smallOp = 256
)

// op states.
const (
	opQueued int32 = iota
	opTaken
	opCancelled
)

// writeOp is one queued write operation.
type writeOp struct {
	ctx  context.Context
	at   time.Time // the operation's Now; zero means the clock
	fn   func(t *txn) error
	size int
	// state moves from opQueued to opTaken (by the writer) or to
	// opCancelled (by the caller), once.
	state atomic.Int32
	// err and seq are set by the writer before done is closed; seq is the
	// number of the commit that carried the operation.
	err  error
	seq  uint64
	done chan struct{}
}

// writer is the queue of the writer goroutine.
type writer struct {
	mu     sync.Mutex
	queue  []*writeOp
	closed bool
	kick   chan struct{} // capacity 1: the queue may be non-empty
	exited chan struct{} // closed when the writer goroutine returns
	// commits counts committed batches; batches and ops count what ran,
	// for tests and benchmarks.
	commits atomic.Uint64
	ops     atomic.Uint64
	stmts   atomic.Uint64
}

func newWriter() *writer {
	return &writer{kick: make(chan struct{}, 1), exited: make(chan struct{})}
}

// enqueue adds o to the queue; false after close.
func (w *writer) enqueue(o *writeOp) bool {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return false
	}
	w.queue = append(w.queue, o)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return true
}

// next waits for queued operations and takes a batch of them, marking each
// taken. Operations cancelled while queued are dropped; one whose context
// has ended is finished with its error. It returns false when the writer is
// closed and its queue empty.
func (w *writer) next(batch []*writeOp) ([]*writeOp, bool) {
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			closed := w.closed
			w.mu.Unlock()
			if closed {
				return batch, false
			}
			<-w.kick
			continue
		}
		n, bytes := 0, 0
		for n < len(w.queue) && len(batch) < maxBatchOps {
			o := w.queue[n]
			if len(batch) > 0 && bytes+o.size > maxBatchBytes {
				break
			}
			n++
			if !o.state.CompareAndSwap(opQueued, opTaken) {
				continue // cancelled by its caller
			}
			if err := o.ctx.Err(); err != nil {
				o.err = err
				close(o.done)
				continue
			}
			batch = append(batch, o)
			bytes += o.size
		}
		rest := copy(w.queue, w.queue[n:])
		clear(w.queue[rest:])
		w.queue = w.queue[:rest]
		w.mu.Unlock()
		if len(batch) > 0 {
			return batch, true
		}
	}
}

// close makes enqueue fail; the writer goroutine runs what is queued and
// returns. It waits for that.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	<-w.exited
}

// write runs fn as one write operation, in a batch of the writer goroutine,
// and returns after the batch has committed (or fn has failed and been
// rolled back). at is the operation's time (zero: the clock when it runs);
// size estimates the bytes it writes, for the batch bound (0: small).
func (b *Backend) write(ctx context.Context, op string, at time.Time, size int, fn func(t *txn) error) error {
	_, err := b.writeSeq(ctx, op, at, size, fn)
	return err
}

// writeSeq is write that also returns the number of the commit that carried
// the operation.
func (b *Backend) writeSeq(ctx context.Context, op string, at time.Time, size int, fn func(t *txn) error) (uint64, error) {
	if b.closed.Load() {
		return 0, b.fail(op, backend.ErrClosed)
	}
	if b.readOnly {
		return 0, b.fail(op, fmt.Errorf("%w (opened with Options.ReadOnly)", ErrReadOnly))
	}
	if err := ctx.Err(); err != nil {
		return 0, b.fail(op, err)
	}
	if size <= 0 {
		size = smallOp
	}
	o := &writeOp{ctx: ctx, at: at, fn: fn, size: size, done: make(chan struct{})}
	if !b.w.enqueue(o) {
		return 0, b.fail(op, backend.ErrClosed)
	}
	select {
	case <-o.done:
	case <-ctx.Done():
		if o.state.CompareAndSwap(opQueued, opCancelled) {
			return 0, b.fail(op, ctx.Err())
		}
		<-o.done // taken: it runs to the end of its batch
	}
	if o.err != nil {
		return 0, b.fail(op, o.err)
	}
	return o.seq, nil
}

// writeLoop is the writer goroutine.
func (b *Backend) writeLoop() {
	defer close(b.w.exited)
	var batch []*writeOp
	for {
		var ok bool
		batch, ok = b.w.next(batch[:0])
		if !ok {
			return
		}
		b.runBatch(batch)
		clear(batch)
	}
}

// errBatchLost fails the operations of a batch whose transaction ended
// because of another operation.
var errBatchLost = errors.New("the transaction of the batch was lost")

// runBatch runs the operations in one transaction on the writer's driver
// connection and commits it, then signals the callers.
func (b *Backend) runBatch(batch []*writeOp) {
	ctx := context.Background() // see the package comment on cancellation
	var work workKind
	defer func() {
		b.notify(work)
		for _, o := range batch {
			close(o.done)
		}
	}()
	fail := func(err error) {
		for _, o := range batch {
			if o.err == nil {
				o.err = err
			}
		}
	}
	conn, err := b.wdb.Conn(ctx)
	if err != nil {
		fail(err)
		return
	}
	ran := false
	err = conn.Raw(func(dc any) error {
		if err := b.raw.use(dc); err != nil {
			return err
		}
		ran = true
		work = b.runBatchRaw(ctx, batch)
		return nil
	})
	// Once the batch ran, every operation has its outcome: an error in
	// returning the connection to the pool changes none of them.
	_ = conn.Close()
	if err != nil && !ran {
		fail(err)
	}
}

// runBatchRaw runs the batch on b.raw, setting each operation's outcome,
// and returns the work the committed operations made claimable.
func (b *Backend) runBatchRaw(ctx context.Context, batch []*writeOp) (work workKind) {
	d := dbtx{ctx: ctx, raw: b.raw}
	if _, err := d.exec(`BEGIN IMMEDIATE`); err != nil {
		for _, o := range batch {
			o.err = err
		}
		return 0
	}
	if b.rdb != b.wdb {
		if err := b.checkVersion(&d); err != nil {
			b.rollback(&d)
			for _, o := range batch {
				o.err = err
			}
			return 0
		}
	}
	single := len(batch) == 1
	var ok []*writeOp // operations that succeeded, to commit
	for i, o := range batch {
		t := newTxn(ctx, b.raw, b.now(o.at), b.clock)
		t.hist = b.hist
		if !single {
			if _, err := t.exec(`SAVEPOINT duro_op`); err != nil {
				b.abortBatch(&d, batch[i:], ok, err)
				return 0
			}
		}
		t.runs = &b.w.stmts
		o.err = runOp(t, o.fn)
		t.runs = nil
		var err error
		switch {
		case o.err == nil && single:
		case o.err == nil:
			_, err = t.exec(`RELEASE duro_op`)
		case single:
			b.rollback(&d)
			return 0
		default:
			if _, err = t.exec(`ROLLBACK TO duro_op`); err == nil {
				_, err = t.exec(`RELEASE duro_op`)
			}
		}
		if err != nil {
			// The savepoint is gone, so is the transaction: nothing of the
			// batch commits.
			if o.err == nil {
				o.err = err
			}
			b.abortBatch(&d, batch[i+1:], ok, err)
			return 0
		}
		if o.err == nil {
			ok = append(ok, o)
			work |= t.work
		}
	}
	if len(ok) == 0 {
		b.rollback(&d)
		return 0
	}
	if _, err := d.exec(`COMMIT`); err != nil {
		// A failed COMMIT can leave the transaction open (SQLITE_BUSY):
		// end it, so that the connection starts the next batch clean.
		b.rollback(&d)
		for _, o := range ok {
			o.err = err
		}
		return 0
	}
	seq := b.w.commits.Add(1)
	b.w.ops.Add(uint64(len(batch)))
	for _, o := range ok {
		o.seq = seq
	}
	return work
}

// rollback ends the batch's transaction. SQLite may have ended it already
// (an I/O error does); ROLLBACK then fails, harmlessly.
func (b *Backend) rollback(d *dbtx) {
	_, _ = d.exec(`ROLLBACK`)
}

// abortBatch rolls back a batch whose transaction failed: the operations
// that succeeded in it and those not run yet fail.
func (b *Backend) abortBatch(d *dbtx, rest, ok []*writeOp, cause error) {
	b.rollback(d)
	err := fmt.Errorf("%w: %v", errBatchLost, cause)
	for _, o := range ok {
		o.err = err
	}
	for _, o := range rest {
		o.err = err
	}
}

// runOp runs fn and flushes the ready summaries it touched; a panic in fn
// becomes its error, so that it cannot take the writer down.
func runOp(t *txn, fn func(t *txn) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in write operation: %v", r)
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	return t.flush()
}

// WriteStats counts the work of the writer since Open, for benchmarks and
// tests.
type WriteStats struct {
	// Ops is the number of write operations run; Commits the number of
	// transactions that committed them: Ops/Commits is the mean batch.
	Ops, Commits uint64
	// Statements is the number of SQL statements the operations ran
	// (savepoints, BEGIN and COMMIT excluded).
	Statements uint64
	// WALSyncs is the number of explicit syncs of the WAL file made, with
	// synchronous=NORMAL, to make at-most-once claims durable before their
	// code runs (always 0 under FULL and EXTRA, whose commits sync).
	WALSyncs uint64
}

// WriteStats returns the writer's counters.
func (b *Backend) WriteStats() WriteStats {
	return WriteStats{Ops: b.w.ops.Load(), Commits: b.w.commits.Load(), Statements: b.w.stmts.Load(),
		WALSyncs: uint64(b.walSyncs.Load())}
}
