package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// Prepared statements.
//
// Parsing and planning an SQL statement costs more than running most of
// duro's, so every statement is prepared once per connection pool and then
// reused. Statements cannot be prepared on the writer's pool while a
// transaction holds its only connection, so a statement is prepared after
// the transaction that first needed it (which ran it unprepared): the cache
// learns its working set in the first few transactions.

// maxStmts bounds the cache; queries built from filters (purges, listings)
// vary, but only by the filters set.
const maxStmts = 512

// stmtCache holds the prepared statements of one *sql.DB.
type stmtCache struct {
	db     *sql.DB
	mu     sync.RWMutex
	m      map[string]*sql.Stmt
	misses map[string]struct{}
	// pending is set while misses is not empty.
	pending atomic.Bool
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, misses: map[string]struct{}{}}
}

// get returns the prepared statement of q, or nil (and remembers q).
func (c *stmtCache) get(q string) *sql.Stmt {
	c.mu.RLock()
	s := c.m[q]
	c.mu.RUnlock()
	if s == nil {
		c.mu.Lock()
		if len(c.m)+len(c.misses) < maxStmts {
			c.misses[q] = struct{}{}
			c.pending.Store(true)
		}
		c.mu.Unlock()
	}
	return s
}

// prepareMisses prepares the queries get missed. It must not run while
// the caller holds a connection of the pool the pool cannot spare.
func (c *stmtCache) prepareMisses(ctx context.Context) {
	if !c.pending.Load() {
		return
	}
	c.mu.Lock()
	c.pending.Store(false)
	if len(c.misses) == 0 {
		c.mu.Unlock()
		return
	}
	qs := make([]string, 0, len(c.misses))
	for q := range c.misses {
		qs = append(qs, q)
	}
	clear(c.misses)
	c.mu.Unlock()
	for _, q := range qs {
		s, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			continue // it runs unprepared, as it did
		}
		c.mu.Lock()
		if c.m[q] == nil {
			c.m[q] = s
			s = nil
		}
		c.mu.Unlock()
		if s != nil {
			_ = s.Close()
		}
	}
}

// close closes the statements.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, s := range c.m {
		_ = s.Close()
		delete(c.m, q)
	}
}

// dbtx is a transaction: on the read path a database/sql transaction with
// the statement cache of its pool, on the writer's the writer's driver
// connection (raw, which then serves every statement). Its ctx is the one
// every statement runs under.
type dbtx struct {
	ctx   context.Context
	tx    *sql.Tx
	stmts *stmtCache
	raw   *rawConn
	// runs, if set, counts the statements run.
	runs *atomic.Uint64
}

// stmt returns q prepared for the read transaction, or nil if q is not
// prepared yet.
func (d *dbtx) stmt(q string) *sql.Stmt {
	if s := d.stmts.get(q); s != nil {
		return d.tx.StmtContext(d.ctx, s)
	}
	return nil
}

// count counts one statement.
func (d *dbtx) count() {
	if d.runs != nil {
		d.runs.Add(1)
	}
}

func (d *dbtx) exec(q string, args ...any) (sql.Result, error) {
	d.count()
	if d.raw != nil {
		return d.raw.exec(d.ctx, q, args)
	}
	if s := d.stmt(q); s != nil {
		return s.ExecContext(d.ctx, args...)
	}
	return d.tx.ExecContext(d.ctx, q, args...)
}

func (d *dbtx) queryRow(q string, args ...any) row {
	d.count()
	if d.raw != nil {
		rs, err := d.raw.query(d.ctx, q, args)
		return &rawRow{rows: rs, err: err}
	}
	if s := d.stmt(q); s != nil {
		return s.QueryRowContext(d.ctx, args...)
	}
	return d.tx.QueryRowContext(d.ctx, q, args...)
}

func (d *dbtx) query(q string, args ...any) (rows, error) {
	d.count()
	if d.raw != nil {
		rs, err := d.raw.query(d.ctx, q, args)
		if err != nil {
			return nil, err
		}
		return rs, nil
	}
	if s := d.stmt(q); s != nil {
		return s.QueryContext(d.ctx, args...)
	}
	return d.tx.QueryContext(d.ctx, q, args...)
}
