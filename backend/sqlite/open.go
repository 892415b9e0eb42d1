package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/internal/wake"
	"github.com/durohq/duro/backend/rules"
)

// Backend is a backend.Backend and backend.WorkNotifier stored in one SQLite
// database. It is safe for concurrent use. Create it with Open (a file) or
// OpenMemory (a private in-memory database).
type Backend struct {
	// Singles gives the single-item claims and the step commit on top of
	// the batch forms.
	rules.Singles
	// Methods gives the methods that are one rule in one transaction
	// (create, enqueue, rewind, purge), through store.
	rules.Methods
	wdb             *sql.DB // the single writer connection
	rdb             *sql.DB // the read pool; == wdb for in-memory stores
	log             *slog.Logger
	maxStepMessages int
	// clock is Options.Clock, the store's clock.
	clock  func() time.Time
	closed atomic.Bool
	// work wakes WorkAvailable waiters, steps and tasks the waiters of one
	// kind of work.
	work, steps, tasks wake.Broadcaster
	// finished holds the finish watches (WatchFinish).
	finished wake.Watchers
	// w queues write operations for the writer goroutine (group commit),
	// which runs them on raw, the writer's driver connection with its
	// prepared statements (rawconn.go); rstmts are the prepared statements
	// of rdb.
	w      *writer
	raw    *rawConn
	rstmts *stmtCache
	// hist caches decoded histories for claims (histcache.go).
	hist *histCache
	// synced is the number of the last commit a syncWAL call covered.
	syncMu sync.Mutex
	synced uint64
	// syncWAL fsyncs the WAL file; set only when commits are not synced
	// (synchronous=NORMAL) and claims of at-most-once tasks need it.
	syncWAL func() error
	// walSyncs counts syncWAL calls, for tests.
	walSyncs atomic.Int64
	// readOnly is Options.ReadOnly: every write fails with ErrReadOnly.
	readOnly bool
}

var (
	_ rules.Backend        = (*Backend)(nil)
	_ backend.KindNotifier = (*Backend)(nil)
)

// Open opens the SQLite database file at path, creating it if needed, applies
// the pending migrations and returns the backend. A nil opts means the
// defaults. Several processes may open the same file at once.
func Open(ctx context.Context, path string, opts *Options) (*Backend, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if path == "" {
		return nil, errors.New("sqlite: open: empty path")
	}
	if path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: open: %q is not a file path (use OpenMemory for an in-memory store)", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	busy := strconv.FormatInt(o.BusyTimeout.Milliseconds(), 10)
	cache := "&_pragma=cache_size(-" + strconv.Itoa(o.CacheKiB) + ")"
	uri := fileURI(abs)
	if o.ReadOnly {
		b, err := openReadOnly(ctx, abs, uri+"?mode=ro&_pragma=busy_timeout("+busy+")&_pragma=query_only(1)"+cache, o)
		if err != nil {
			return nil, fmt.Errorf("sqlite: open %s read-only: %w", path, err)
		}
		return b, nil
	}
	wdb, err := sql.Open("sqlite", uri+"?_txlock=immediate"+
		"&_pragma=busy_timeout("+busy+")"+
		"&_pragma=journal_mode(WAL)"+
		"&_pragma=synchronous("+o.Synchronous+")"+
		// The statement journals of the writer's per-operation savepoints
		// (group commit) stay in memory instead of spilling to temp files.
		"&_pragma=temp_store(MEMORY)"+cache)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	b := &Backend{wdb: wdb, log: o.Logger, maxStepMessages: o.MaxStepMessages, clock: o.Clock}
	b.Singles, b.Methods = rules.Singles{B: b, StepsOf: b.claimStepsOf, Fail: b.fail}, rules.Methods{S: store{b}}
	if o.Synchronous == "NORMAL" {
		b.syncWAL = func() error {
			b.walSyncs.Add(1)
			f, err := os.OpenFile(abs+"-wal", os.O_RDWR, 0)
			if err != nil {
				return err
			}
			serr := f.Sync()
			if cerr := f.Close(); serr == nil {
				serr = cerr
			}
			return serr
		}
	}
	if err := b.init(ctx); err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, accessError(abs, err))
	}
	// SQLite opens a file it may not write, and fails at the first write.
	if !canOpen(abs, os.O_WRONLY) {
		_ = wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w: this user may not write %s; commands that change the store need write access to it",
			path, ErrReadOnly, abs)
	}
	var mode string
	if err := wdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		b.log.Warn("sqlite: WAL journal mode unavailable; readers and the writer will block each other",
			"path", path, "journal_mode", mode)
	}
	rdb, err := sql.Open("sqlite", uri+"?_pragma=busy_timeout("+busy+")&_pragma=query_only(1)"+cache)
	if err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(o.ReadConns)
	rdb.SetMaxIdleConns(o.ReadConns)
	b.rdb = rdb
	b.start()
	return b, nil
}

// openReadOnly opens the file at abs with Options.ReadOnly: one pool for
// reads (the writer never gets an operation), no migration, and a schema
// that must be this build's.
func openReadOnly(ctx context.Context, abs, uri string, o Options) (*Backend, error) {
	if _, err := os.Stat(abs); err != nil {
		return nil, err // mode=ro would say "unable to open database file"
	}
	if o.Immutable {
		if _, err := os.Stat(abs + "-wal"); err == nil {
			return nil, fmt.Errorf("%s-wal exists: a process has the store open, or left changes in its journal, which a read "+
				"without locks would not see; give this user write access to the directory, or read it when no process has it open",
				filepath.Base(abs))
		}
		uri += "&immutable=1"
	}
	db, err := sql.Open("sqlite", uri)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(o.ReadConns)
	db.SetMaxIdleConns(o.ReadConns)
	b := &Backend{wdb: db, rdb: db, log: o.Logger, maxStepMessages: o.MaxStepMessages, readOnly: true, clock: o.Clock}
	b.Singles, b.Methods = rules.Singles{B: b, StepsOf: b.claimStepsOf, Fail: b.fail}, rules.Methods{S: store{b}}
	if err := checkSchema(ctx, db); err != nil {
		_ = db.Close()
		return nil, accessError(abs, err)
	}
	b.start()
	return b, nil
}

// checkSchema fails unless db has every migration of this build, and no
// newer one.
func checkSchema(ctx context.Context, db *sql.DB) error {
	st, err := migrationStatus(ctx, db)
	if err != nil {
		return err
	}
	latest := migrations[len(migrations)-1].Version
	applied := 0
	for _, s := range st {
		if !s.Pending() {
			applied = max(applied, s.Version)
		}
	}
	switch {
	case applied == 0:
		return errors.New("the file holds no duro store (no migration applied)")
	case applied > latest:
		return fmt.Errorf("database schema version %d is newer than this build supports (%d)", applied, latest)
	case applied < latest:
		return fmt.Errorf("the store's schema is version %d and this build's %d: open it once with write access to migrate it", applied, latest)
	}
	return nil
}

// OpenMemory returns a backend on a private in-memory SQLite database: the
// same engine as Open, for tests. Every call yields an independent, empty
// store, which lives until Close. Options.Synchronous and ReadConns are
// ignored; all operations share one connection.
func OpenMemory(ctx context.Context, opts *Options) (*Backend, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("sqlite: open memory: %w", err)
	}
	// A plain ":memory:" name gives each connection its own database; the
	// pool is limited to one connection that is never closed before Close.
	db, err := sql.Open("sqlite", ":memory:?_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open memory: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	b := &Backend{wdb: db, rdb: db, log: o.Logger, maxStepMessages: o.MaxStepMessages, clock: o.Clock}
	b.Singles, b.Methods = rules.Singles{B: b, StepsOf: b.claimStepsOf, Fail: b.fail}, rules.Methods{S: store{b}}
	if err := b.init(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: open memory: %w", err)
	}
	b.start()
	return b, nil
}

// start prepares the statement caches and starts the writer goroutine.
func (b *Backend) start() {
	b.raw = &rawConn{}
	b.rstmts = newStmtCache(b.rdb)
	b.hist = newHistCache()
	if b.rdb != b.wdb { // another connection can change a file
		_ = b.wdb.QueryRow(`PRAGMA data_version`).Scan(&b.hist.version)
	}
	b.w = newWriter()
	go b.writeLoop()
}

// init connects the writer and applies the migrations.
func (b *Backend) init(ctx context.Context) error {
	if err := b.wdb.PingContext(ctx); err != nil {
		return err
	}
	return migrate(ctx, b.wdb, b.log)
}

// fileURI turns an absolute path into an SQLite URI, escaping the characters
// that would end the path part.
func fileURI(abs string) string {
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive letter
	}
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return "file:" + r.Replace(p)
}

// Close stops accepting operations, lets the writer finish the operations
// already queued (their callers get their outcome), and closes the
// connection pools. Calls after Close, Close included, return an error
// wrapping backend.ErrClosed. Waiters on WorkAvailable are woken.
func (b *Backend) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("sqlite: close: %w", backend.ErrClosed)
	}
	b.w.close()
	b.work.Shutdown()
	b.steps.Shutdown()
	b.tasks.Shutdown()
	b.finished.Shutdown()
	// The writer has exited: its statements can be closed on its
	// connection.
	if conn, err := b.wdb.Conn(context.Background()); err == nil {
		_ = conn.Raw(func(any) error {
			b.raw.close()
			return nil
		})
		_ = conn.Close()
	}
	b.rstmts.close()
	var errs []error
	if b.rdb != b.wdb {
		errs = append(errs, b.rdb.Close())
	}
	errs = append(errs, b.wdb.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// WorkAvailable implements backend.WorkNotifier: the channel is closed after
// the next commit in this process that may have made work claimable (a new
// instance, message or activity task, a completed step, an abandoned lease)
// and on Close; after Close it is always closed. Work committed by other
// processes is not signalled.
func (b *Backend) WorkAvailable() <-chan struct{} {
	return b.work.Wait()
}

// OrchestrationWorkAvailable is WorkAvailable for orchestration steps only:
// the channel is closed after a commit that may have made a step claimable
// (a message, a completed or abandoned step), not after one that only added
// activity tasks. A worker's orchestration loop waits on it, so that it does
// not claim in vain after every activity scheduled.
func (b *Backend) OrchestrationWorkAvailable() <-chan struct{} {
	return b.steps.Wait()
}

// ActivityWorkAvailable is WorkAvailable for activity tasks only: the
// channel is closed after a commit that added or abandoned a task, not
// after one that only delivered messages (activity results among them).
func (b *Backend) ActivityWorkAvailable() <-chan struct{} {
	return b.tasks.Wait()
}

// WatchFinish implements backend.FinishNotifier: the channel is closed
// after a step that ends instance id (completes, fails or terminates it)
// commits in this process, and on Close. A finish committed by another
// process that opened the same file is not signalled: Client.Wait finds
// it on its fallback poll (ClientOptions.WaitPollInterval).
func (b *Backend) WatchFinish(id string) (<-chan struct{}, func()) {
	return b.finished.Watch(id)
}

// WatchingFinish returns the number of live finish watches: for tests
// that check a waiter released its watch.
func (b *Backend) WatchingFinish() int { return b.finished.Len() }

// notify wakes the waiters for the kinds of work in k.
func (b *Backend) notify(k workKind) {
	if k == 0 {
		return
	}
	if k&workSteps != 0 {
		b.steps.Notify()
	}
	if k&workTasks != 0 {
		b.tasks.Notify()
	}
	b.work.Notify()
}

// fail wraps err with the operation's name, turning the
// errors of closed pools into backend.ErrClosed.
func (b *Backend) fail(op string, err error) error {
	if b.closed.Load() && !errors.Is(err, backend.ErrClosed) &&
		(errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "database is closed")) {
		err = fmt.Errorf("%w: %v", backend.ErrClosed, err)
	}
	if sqliteCode(err)&0xff == codeReadOnly && !errors.Is(err, ErrReadOnly) {
		// The file or its directory became read-only since Open.
		err = fmt.Errorf("%w: SQLite may not write the file or its directory (%v)", ErrReadOnly, err)
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// read runs fn in a read-only transaction (one snapshot) on the read pool.
func (b *Backend) read(ctx context.Context, op string, fn func(d *dbtx) error) error {
	if b.closed.Load() {
		return b.fail(op, backend.ErrClosed)
	}
	tx, err := b.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return b.fail(op, err)
	}
	err = fn(&dbtx{ctx: ctx, tx: tx, stmts: b.rstmts})
	_ = tx.Rollback()
	b.rstmts.prepareMisses(ctx)
	if err != nil {
		return b.fail(op, err)
	}
	return nil
}

// readValue is read for a read of one value by one key.
func readValue[T any](ctx context.Context, b *Backend, op string, fn func(d *dbtx, key string) (T, error), key string) (T, error) {
	var v T
	err := b.read(ctx, op, func(d *dbtx) (err error) {
		v, err = fn(d, key)
		return err
	})
	return v, err
}

// syncCommit makes commit seq durable with syncWAL (synchronous=NORMAL),
// unless a sync that started after that commit has already done so:
// concurrent callers share one fsync.
func (b *Backend) syncCommit(seq uint64) error {
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	if b.synced >= seq {
		return nil
	}
	covered := b.w.commits.Load()
	if err := b.syncWAL(); err != nil {
		return err
	}
	b.synced = covered
	return nil
}

// now returns t in UTC, or the store's clock if t is zero.
func (b *Backend) now(t time.Time) time.Time {
	return nowOr(b.clock, t)
}

// nowOr returns t in UTC, or clock's time if t is zero.
func nowOr(clock func() time.Time, t time.Time) time.Time {
	if t.IsZero() {
		return clock().UTC()
	}
	return t.UTC()
}
