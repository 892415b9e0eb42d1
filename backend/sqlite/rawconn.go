package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"time"
)

// The writer's statements.
//
// Every write runs on the writer goroutine, on the backend's one writer
// connection, so its statements go straight to the driver connection
// (sql.Conn.Raw, once per batch) instead of through database/sql. On that
// path database/sql adds per statement a transaction-bound copy of the
// prepared statement, its locks, a conversion of every argument, and a
// Rows or Row object with a goroutine-safe close: together a large share of
// the writer's time, and the writer's time is the store's throughput. The
// writer prepares each statement once on its connection, on first use, and
// keeps it until the connection changes or the backend closes. Reads keep
// database/sql and its pool: they run concurrently and are few.

// rawConn is the writer's driver connection with its prepared statements.
// Only the writer goroutine uses it, and only inside sql.Conn.Raw.
type rawConn struct {
	dc    driver.Conn
	stmts map[string]driver.Stmt
	args  []driver.NamedValue // reused by each statement
}

// use points r at dc (the driver connection Raw handed out), dropping the
// statements of an earlier connection.
func (r *rawConn) use(dc any) error {
	c, ok := dc.(driver.Conn)
	if !ok {
		return fmt.Errorf("sqlite: driver connection %T is not a driver.Conn", dc)
	}
	if r.dc != c {
		r.dc = c
		r.stmts = map[string]driver.Stmt{}
	}
	return nil
}

// close closes the prepared statements.
func (r *rawConn) close() {
	for q, s := range r.stmts {
		_ = s.Close()
		delete(r.stmts, q)
	}
}

// prepare returns q prepared on the connection.
func (r *rawConn) prepare(ctx context.Context, q string) (driver.Stmt, error) {
	if s := r.stmts[q]; s != nil {
		return s, nil
	}
	var (
		s   driver.Stmt
		err error
	)
	if p, ok := r.dc.(driver.ConnPrepareContext); ok {
		s, err = p.PrepareContext(ctx, q)
	} else {
		s, err = r.dc.Prepare(q)
	}
	if err != nil {
		return nil, err
	}
	if len(r.stmts) >= maxStmts {
		// Queries built from filters vary; keep the cache bounded.
		for k, old := range r.stmts {
			_ = old.Close()
			delete(r.stmts, k)
			break
		}
	}
	r.stmts[q] = s
	return s, nil
}

// bind converts args the way database/sql would for this driver: its
// native types pass through, ints widen, Valuers and named basic types are
// converted.
func (r *rawConn) bind(args []any) ([]driver.NamedValue, error) {
	nv := r.args[:0]
	for i, a := range args {
		v, err := driverValue(a)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		nv = append(nv, driver.NamedValue{Ordinal: i + 1, Value: v})
	}
	r.args = nv
	return nv, nil
}

func driverValue(a any) (driver.Value, error) {
	switch v := a.(type) {
	case nil, int64, float64, bool, []byte, string, time.Time:
		return v, nil
	case int:
		return int64(v), nil
	}
	return driver.DefaultParameterConverter.ConvertValue(a)
}

func (r *rawConn) exec(ctx context.Context, q string, args []any) (sql.Result, error) {
	s, err := r.prepare(ctx, q)
	if err != nil {
		return nil, err
	}
	nv, err := r.bind(args)
	if err != nil {
		return nil, err
	}
	if e, ok := s.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, nv)
	}
	return nil, fmt.Errorf("sqlite: driver statement %T cannot execute with a context", s)
}

func (r *rawConn) query(ctx context.Context, q string, args []any) (*rawRows, error) {
	s, err := r.prepare(ctx, q)
	if err != nil {
		return nil, err
	}
	nv, err := r.bind(args)
	if err != nil {
		return nil, err
	}
	e, ok := s.(driver.StmtQueryContext)
	if !ok {
		return nil, fmt.Errorf("sqlite: driver statement %T cannot query with a context", s)
	}
	rows, err := e.QueryContext(ctx, nv)
	if err != nil {
		return nil, err
	}
	return &rawRows{rows: rows, vals: make([]driver.Value, len(rows.Columns()))}, nil
}

// rows is what dbtx.query returns: *sql.Rows on the read path, *rawRows on
// the writer's.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Close() error
	Err() error
}

// row is what dbtx.queryRow returns: *sql.Row or *rawRow. Scan returns
// sql.ErrNoRows when the query returned no row.
type row interface {
	Scan(dest ...any) error
}

// rawRows iterates a driver's rows like *sql.Rows.
type rawRows struct {
	rows   driver.Rows
	vals   []driver.Value
	err    error // the iteration's error, io.EOF excluded
	closed bool
	valid  bool // vals holds the current row
}

func (r *rawRows) Next() bool {
	if r.closed {
		return false
	}
	if err := r.rows.Next(r.vals); err != nil {
		if !errors.Is(err, io.EOF) {
			r.err = err
		}
		r.valid = false
		_ = r.Close()
		return false
	}
	r.valid = true
	return true
}

func (r *rawRows) Scan(dest ...any) error {
	if !r.valid {
		return errors.New("sqlite: Scan called without a row")
	}
	if len(dest) != len(r.vals) {
		return fmt.Errorf("sqlite: Scan: %d destinations for %d columns", len(dest), len(r.vals))
	}
	for i, d := range dest {
		if err := assign(d, r.vals[i]); err != nil {
			return fmt.Errorf("sqlite: Scan column %d: %w", i, err)
		}
	}
	return nil
}

func (r *rawRows) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	return r.rows.Close()
}

func (r *rawRows) Err() error { return r.err }

// rawRow is the first row of a query, or the error that prevented it.
type rawRow struct {
	rows *rawRows
	err  error
}

func (r *rawRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	// Drain and close, as database/sql does, so that an error past the
	// first row (or in a RETURNING statement's remaining work) surfaces.
	for r.rows.Next() {
	}
	return r.rows.Err()
}

// assign stores a driver value in a Scan destination, for the types this
// package scans into.
func assign(dest any, src driver.Value) error {
	switch d := dest.(type) {
	case *string:
		switch s := src.(type) {
		case string:
			*d = s
			return nil
		case []byte:
			*d = string(s)
			return nil
		case int64:
			*d = strconv.FormatInt(s, 10)
			return nil
		}
	case *[]byte:
		switch s := src.(type) {
		case []byte:
			// The driver hands out a fresh copy of every blob.
			*d = s
			return nil
		case string:
			*d = []byte(s)
			return nil
		case nil:
			*d = nil
			return nil
		}
	case *int64:
		if s, ok := src.(int64); ok {
			*d = s
			return nil
		}
	case *int:
		if s, ok := src.(int64); ok {
			*d = int(s)
			return nil
		}
	case *any:
		*d = src
		return nil
	case sql.Scanner:
		return d.Scan(src)
	}
	// Named types of the kinds above (backend.Status).
	rv := reflect.ValueOf(dest)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		e := rv.Elem()
		switch s := src.(type) {
		case string:
			if e.Kind() == reflect.String {
				e.SetString(s)
				return nil
			}
		case []byte:
			if e.Kind() == reflect.String {
				e.SetString(string(s))
				return nil
			}
		case int64:
			switch e.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				if e.OverflowInt(s) {
					return fmt.Errorf("value %d overflows %s", s, e.Type())
				}
				e.SetInt(s)
				return nil
			}
		}
	}
	return fmt.Errorf("cannot store %T in %T", src, dest)
}
