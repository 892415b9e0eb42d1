package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// lazyTx is a write transaction on one pooled connection that costs no
// round trip of its own: BEGIN is queued in front of the transaction's
// first statement (or batch), and COMMIT can be queued behind its last
// batch (sendFinal), so a transaction of one batch is one round trip. It
// has the statement methods of pgx.Tx that the transactions use.
//
// A batch is sent as one pipeline with one Sync: when a statement fails,
// the server skips the rest, COMMIT included, and the connection is left
// in a failed transaction, which rollback ends. The connection's
// transaction status after a final batch tells a failed statement (in a
// failed transaction: nothing committed) from a COMMIT that ran (idle).
type lazyTx struct {
	conn *pgxpool.Conn
	// begun is set once BEGIN was sent; final once COMMIT was sent.
	begun, final bool
	// err is a failure of the connection outside any statement (ending a
	// batch); every later use returns it.
	err error
}

// beginSQL starts the transaction (read committed, read write).
const beginSQL = "BEGIN"

func (l *lazyTx) pgConn() *pgx.Conn { return l.conn.Conn() }

// errTxDone is the error of a statement after the final batch.
var errTxDone = errors.New("transaction already ended")

// usable returns the error that keeps the transaction from sending more.
func (l *lazyTx) usable() error {
	switch {
	case l.err != nil:
		return l.err
	case l.final:
		return errTxDone
	}
	return nil
}

// Exec runs one statement.
func (l *lazyTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := l.usable(); err != nil {
		return pgconn.CommandTag{}, err
	}
	if l.begun {
		return l.pgConn().Exec(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br := l.SendBatch(ctx, b)
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// Query runs one statement that returns rows.
func (l *lazyTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := l.usable(); err != nil {
		return nil, err
	}
	if l.begun {
		return l.pgConn().Query(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br := l.SendBatch(ctx, b)
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br, l: l}, nil
}

// QueryRow runs one statement that returns at most one row.
func (l *lazyTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if l.begun && l.usable() == nil {
		return l.pgConn().QueryRow(ctx, sql, args...)
	}
	rows, err := l.Query(ctx, sql, args...)
	return &firstRow{rows: rows, err: err}
}

// SendBatch sends a batch, with BEGIN in front if the transaction has not
// begun. The results are those of b's queries.
func (l *lazyTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := l.usable(); err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	if l.begun {
		return l.pgConn().SendBatch(ctx, b)
	}
	full := &pgx.Batch{}
	full.Queue(beginSQL)
	full.QueuedQueries = append(full.QueuedQueries, b.QueuedQueries...)
	l.begun = true
	br := l.pgConn().SendBatch(ctx, full)
	// BEGIN's result; if it failed, so does every result after it.
	_, _ = br.Exec()
	return br
}

// sendFinal sends b as the transaction's last batch, with COMMIT behind
// it (and BEGIN in front if needed). Its results are those of b's
// queries; the caller reads them and closes the results, then calls
// finalOutcome with the first error it met.
func (l *lazyTx) sendFinal(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	b.Queue("COMMIT")
	br := l.SendBatch(ctx, b)
	l.final = true
	return br
}

// errCommitRolledBack is the failure of a COMMIT that rolled back: the
// transaction had failed.
var errCommitRolledBack = errors.New("commit rolled back")

// finalOutcome classifies the error err of a final batch (nil if none):
// it returns the error to report and whether the COMMIT may have run
// (committing: the outcome is unknown, or the commit itself failed). A
// failed statement before COMMIT leaves the connection in a failed
// transaction: nothing committed, and rollback ends it. An error the
// server did not send (the connection broke) after the batch was sent
// leaves the outcome unknown.
func (l *lazyTx) finalOutcome(err error) (error, bool) {
	if err == nil {
		return nil, false
	}
	if pgconn.SafeToRetry(err) {
		return err, false // nothing was sent
	}
	pc := l.pgConn().PgConn()
	if pc.IsClosed() || pc.IsBusy() {
		return err, true
	}
	var pgErr *pgconn.PgError
	switch pc.TxStatus() {
	case 'E':
		// A statement failed: the server skipped the COMMIT.
		return err, false
	case 'T':
		// The batch stopped short of COMMIT without a server error.
		return err, false
	case 'I':
		if errors.As(err, &pgErr) {
			// The COMMIT itself failed and rolled back.
			return fmt.Errorf("commit: %w", err), true
		}
		// The batch ran, COMMIT included; the error is the client's.
		return err, true
	}
	return err, true
}

// commit commits the transaction unless sendFinal already did (or nothing
// was ever sent: there is nothing to commit). Its errors leave the outcome
// unknown.
func (l *lazyTx) commit(ctx context.Context) error {
	if l.err != nil {
		return l.err
	}
	if !l.begun || l.final {
		return nil
	}
	tag, err := l.pgConn().Exec(ctx, "COMMIT")
	l.final = true
	if err != nil {
		return err
	}
	if tag.String() == "ROLLBACK" {
		return errCommitRolledBack
	}
	return nil
}

// rollback ends a failed transaction; if that fails, the connection is
// closed (the pool then drops it: it never hands out a connection in a
// transaction).
func (l *lazyTx) rollback() {
	if !l.begun {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pc := l.pgConn().PgConn()
	if pc.IsClosed() || pc.IsBusy() {
		return
	}
	if pc.TxStatus() == 'I' {
		return
	}
	if _, err := l.pgConn().Exec(ctx, "ROLLBACK"); err != nil {
		_ = pc.Close(ctx)
	}
}

// batchRows are the rows of a statement sent in a batch behind BEGIN;
// closing them ends the batch.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	l      *lazyTx
	closed bool
	err    error
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	if err := r.br.Close(); err != nil && r.Rows.Err() == nil {
		r.err = err
		r.l.err = err
	}
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

// firstRow is a pgx.Row over rows: the first of them, ErrNoRows if none.
type firstRow struct {
	rows pgx.Rows
	err  error
}

func (r *firstRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
