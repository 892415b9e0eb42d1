package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/internal/histlru"
	"github.com/durohq/duro/backend/internal/wake"
	"github.com/durohq/duro/backend/rules"
)

// Backend is a backend.Backend and backend.WorkNotifier on one task hub (one
// schema) of a PostgreSQL database. It is safe for concurrent use, and any
// number of Backends, in any number of processes on any number of machines,
// may share a hub. Create it with Open.
type Backend struct {
	// Singles gives the single-item claims and the step commit on top of
	// the batch forms.
	rules.Singles
	// Methods gives the methods that are one rule in one transaction
	// (create, enqueue, rewind, purge), through store.
	rules.Methods
	pool            *pgxpool.Pool
	schema          string
	channel         string
	log             *slog.Logger
	maxStepMessages int
	pollInterval    time.Duration
	// hist caches the decoded histories claims handed out (histcache.go);
	// nil when disabled.
	hist   *histlru.Cache
	closed atomic.Bool
	work   wake.Broadcaster
	// finished holds the finish watches (WatchFinish); token tells this
	// Backend's finish notifications from other processes' (notify.go).
	finished wake.Watchers
	token    string
	out      *notifier
	cancel   context.CancelFunc
	bg       sync.WaitGroup
	queries  sync.Map // query template -> query with the schema filled in
	// listening is true while the listening connection is up, for tests.
	listening atomic.Bool
	// listenerPID is the server PID of the listening connection, for tests.
	listenerPID atomic.Uint32
}

var _ rules.Backend = (*Backend)(nil)

var errClosed = backend.ErrClosed

// Open connects to the PostgreSQL database at url (a postgres:// URL or a
// key=value connection string, as pgx accepts; a URL may name the hub's
// schema in its duro_schema parameter instead of Options), applies the pending
// migrations to the hub's schema (unless Options.SkipMigrate), starts the
// listening connection and returns the backend. A nil opts means the
// defaults.
func Open(ctx context.Context, url string, opts *Options) (*Backend, error) {
	conn, urlSchema, err := splitURL(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if urlSchema != "" {
		if err := ValidSchema(urlSchema); err != nil {
			return nil, fmt.Errorf("postgres: open: the URL's %s: %w", SchemaParam, err)
		}
	}
	if o.Schema, err = schemaFor(urlSchema, o.Schema); err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if o, err = o.withDefaults(); err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(conn)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	cfg.MaxConns = int32(o.MaxConns)
	cfg.MinConns = 0
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "duro"
	}
	// The listening connection keeps pgx's default handling of a done
	// context (a deadline on the socket): it waits with a timeout every
	// PollInterval, which must not cost the server anything.
	lcfg := cfg.ConnConfig.Copy()
	// A pooled connection whose context is cancelled mid-statement asks
	// the server to cancel the statement and waits (up to cancelGrace) for
	// its answer, so the caller learns whether the statement committed: a
	// claim cancelled by a stopping worker is either rolled back or
	// returned, never committed unseen (its lease would then hold the work
	// item until it lapsed).
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: cancelGrace}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	b := &Backend{
		pool:            pool,
		schema:          o.Schema,
		channel:         "duro_work_" + o.Schema,
		log:             o.Logger,
		maxStepMessages: o.MaxStepMessages,
		pollInterval:    o.PollInterval,
		hist:            histlru.New(o.HistoryCacheEvents),
		token:           newToken(),
	}
	b.Singles, b.Methods = rules.Singles{B: b, StepsOf: b.claimStepsOf, Fail: b.fail}, rules.Methods{S: store{b}}
	// Connect first, so that an unreachable server reads as one.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", connectError(err))
	}
	if o.SkipMigrate {
		err = checkMigrated(ctx, pool, o.Schema)
	} else {
		err = migrate(ctx, pool, o.Schema, o.Logger)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", connectError(err))
	}
	bg, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.out = newNotifier(b)
	b.bg.Add(2)
	go func() { defer b.bg.Done(); b.out.run(bg) }()
	go func() { defer b.bg.Done(); b.listen(bg, lcfg) }()
	return b, nil
}

// Pool returns the backend's connection pool, for tools that query the
// hub's tables directly (and for Migrate and MigrationStatus).
func (b *Backend) Pool() *pgxpool.Pool { return b.pool }

// Schema returns the hub's schema name.
func (b *Backend) Schema() string { return b.schema }

// Close stops the listening connection and closes the pool. Calls after
// Close, Close included, return an error wrapping backend.ErrClosed. Waiters
// on WorkAvailable are woken.
func (b *Backend) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return b.fail("close", errClosed)
	}
	b.cancel()
	b.bg.Wait()
	b.work.Shutdown()
	b.finished.Shutdown()
	b.pool.Close()
	return nil
}

// q returns query with {s} replaced by the hub's schema. Schema names are
// validated identifiers that need no quoting.
func (b *Backend) q(query string) string {
	if v, ok := b.queries.Load(query); ok {
		return v.(string)
	}
	r := strings.ReplaceAll(query, "{s}", b.schema)
	b.queries.Store(query, r)
	return r
}

// fail wraps err with the operation's name, turning the errors of a closed
// pool into backend.ErrClosed.
func (b *Backend) fail(op string, err error) error {
	if b.closed.Load() && !errors.Is(err, errClosed) {
		err = fmt.Errorf("%w: %v", errClosed, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// dbNow is the database clock in Unix nanoseconds: the start of the current
// transaction, so every statement of a transaction reads the same value.
const dbNow = `((EXTRACT(EPOCH FROM now()) * 1000000)::bigint * 1000)`

// dbStatementNow is the database clock in Unix nanoseconds at the start of
// the current statement: for leases taken late in a longer transaction.
const dbStatementNow = `((EXTRACT(EPOCH FROM statement_timestamp()) * 1000000)::bigint * 1000)`

// clock is the SQL for "the time in parameter p, or the database clock if
// it is 0".
func clock(p string) string {
	return `COALESCE(NULLIF(` + p + `::bigint, 0), ` + dbNow + `)`
}

// cancelGrace is how long a statement whose context was cancelled may take
// to report whether the server cancelled it, before its connection is
// closed.
const cancelGrace = 2 * time.Second

// maxRetries bounds the retries of a transaction that failed on a deadlock,
// a serialization failure or a lost connection before its commit.
const maxRetries = 4

// write runs fn in a transaction and commits it, retrying the whole
// transaction on deadlocks and serialization failures, and on connection
// errors that happened before the commit was sent (the server then rolled
// the transaction back). A failure of the commit itself is not retried: it
// may have committed. After a commit that made work claimable it signals
// the waiters of this process and, through NOTIFY, of every process.
func (b *Backend) write(ctx context.Context, op string, now time.Time, fn func(t *txn) error) error {
	if b.closed.Load() {
		return b.fail(op, errClosed)
	}
	for try := 0; ; try++ {
		t, committing, err := b.tryWrite(ctx, now, fn)
		if err == nil {
			b.signal(t.work, t.wakeAt)
			return nil
		}
		if try < maxRetries && ctx.Err() == nil && !b.closed.Load() && retryable(err, committing) {
			b.log.Debug("postgres: retrying transaction", "op", op, "try", try+1, "err", err)
			if sleepCtx(ctx, time.Duration(try+1)*20*time.Millisecond) {
				continue
			}
		}
		return b.fail(op, err)
	}
}

// tryWrite runs fn in a lazyTx and commits it: BEGIN goes with the first
// statement fn sends, and COMMIT with its last batch if fn sends that with
// sendFinal, else with the recomputation of the touched ready summaries,
// else alone. committing is set when the failure may have come after the
// transaction committed (or from the commit itself).
func (b *Backend) tryWrite(ctx context.Context, now time.Time, fn func(t *txn) error) (t *txn, committing bool, err error) {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, false, err
	}
	// The pool closes a connection that is returned inside a transaction.
	defer conn.Release()
	l := &lazyTx{conn: conn}
	t = newTxn(ctx, b, l, now)
	err = fn(t)
	if err == nil && !l.final && len(t.touched) > 0 {
		err = t.flushCommit()
	}
	if err != nil {
		if l.final {
			if err, committing = l.finalOutcome(err); committing {
				return t, true, err
			}
		}
		l.rollback()
		return t, false, err
	}
	if err := l.commit(ctx); err != nil {
		return t, true, err
	}
	return t, false, nil
}

// read runs fn on a pooled connection, retrying once on a connection error
// (reads are always safe to retry).
func (b *Backend) read(ctx context.Context, op string, fn func(q querier) error) error {
	if b.closed.Load() {
		return b.fail(op, errClosed)
	}
	for try := 0; ; try++ {
		err := fn(b.pool)
		if err == nil {
			return nil
		}
		if try < 1 && ctx.Err() == nil && !b.closed.Load() && isConnError(err) {
			continue
		}
		return b.fail(op, err)
	}
}

// readValue is read for a read that returns one value.
func readValue[T any](ctx context.Context, b *Backend, op string, fn func(q querier) (T, error)) (T, error) {
	var v T
	err := b.read(ctx, op, func(q querier) (err error) {
		v, err = fn(q)
		return err
	})
	return v, err
}

// querier is what reads need of a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// retryable reports whether a transaction that failed with err may be run
// again: deadlocks and serialization failures always; unique violations
// (a concurrent transaction inserted the same instance first: the retry
// sees it) and connection errors only if the commit was not sent.
func retryable(err error, committing bool) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return true
		case "23505": // unique_violation: a concurrent insert of the same key won
			return !committing
		}
	}
	if committing {
		return false
	}
	return isConnError(err)
}

// isConnError reports whether err means the connection failed (it was
// closed, terminated by the server, or the network broke), as opposed to an
// error of the statement.
func isConnError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08 (connection exception), 57P01-57P03 (admin shutdown,
		// crash shutdown, cannot connect now).
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P")
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "unexpected EOF") ||
		strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}

// sleepCtx sleeps for d or until ctx is done; it reports whether it slept
// the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
