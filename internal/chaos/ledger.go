package chaos

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	_ "modernc.org/sqlite" // the ledger is its own SQLite file
)

// Ledger records every execution of the workload's activities, outside the
// engine: each activity appends a row before it does its "effect", so the
// number of rows per (instance, task) is the number of times its code ran,
// whatever duro's own bookkeeping says.
type Ledger struct {
	db *sql.DB
}

// OpenLedger opens (creating) the ledger file at path.
func OpenLedger(path string) (*Ledger, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS ledger (
		instance TEXT NOT NULL, task INTEGER NOT NULL, activity TEXT NOT NULL,
		attempt INTEGER NOT NULL, policy TEXT NOT NULL, pid INTEGER NOT NULL, at INTEGER NOT NULL);
		CREATE TABLE IF NOT EXISTS fences (
		instance TEXT NOT NULL, task INTEGER NOT NULL, attempt INTEGER NOT NULL, PRIMARY KEY (instance, task));
		CREATE TABLE IF NOT EXISTS refused (
		instance TEXT NOT NULL, task INTEGER NOT NULL, activity TEXT NOT NULL,
		attempt INTEGER NOT NULL, policy TEXT NOT NULL, pid INTEGER NOT NULL, at INTEGER NOT NULL);
		CREATE TABLE IF NOT EXISTS reconciles (
		instance TEXT NOT NULL, task INTEGER NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL, at INTEGER NOT NULL)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	return &Ledger{db: db}, nil
}

// Close closes the ledger.
func (l *Ledger) Close() error { return l.db.Close() }

// ErrFenced is returned by Record for a delivery older than the fence a
// reconciliation raised: the "provider" refuses it.
var ErrFenced = errors.New("fenced: a newer delivery reconciled this call")

// Record appends one execution, durably, unless a reconciliation has fenced
// the call off for this attempt: then it returns ErrFenced and records the
// refused attempt apart (the code started, but its effect was refused), so
// that it counts as an earlier run when alarms are judged (Attempts) and
// never as an execution (Executions).
// That is what a real provider must do for OnDuplicateReconcile's retry to
// be safe against an earlier delivery that was only paused (see
// docs/guarantees.md): remember the highest attempt that asked, and refuse
// older ones.
func (l *Ledger) Record(ctx context.Context, instance string, task int, activity string, attempt int, policy string) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var fence int
	err = tx.QueryRowContext(ctx, `SELECT attempt FROM fences WHERE instance = ? AND task = ?`, instance, task).Scan(&fence)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if fence > attempt {
		if _, err := tx.ExecContext(ctx, `INSERT INTO refused VALUES (?, ?, ?, ?, ?, ?, ?)`,
			instance, task, activity, attempt, policy, os.Getpid(), time.Now().UnixNano()); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		return ErrFenced
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?)`,
		instance, task, activity, attempt, policy, os.Getpid(), time.Now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

// RecordReconcile appends one invocation of the workload's reconciler: a
// delivery the engine treated as a possible duplicate (an alarm).
func (l *Ledger) RecordReconcile(ctx context.Context, instance string, task, attempt int) error {
	_, err := l.db.ExecContext(ctx, `INSERT INTO reconciles VALUES (?, ?, ?, ?, ?)`,
		instance, task, attempt, os.Getpid(), time.Now().UnixNano())
	return err
}

// Reconciles returns the recorded reconciler invocations, oldest first.
func (l *Ledger) Reconciles(ctx context.Context) ([]Alarm, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT instance, task, attempt FROM reconciles ORDER BY at`)
	if err != nil {
		return nil, fmt.Errorf("ledger: read reconciler calls: %w", err)
	}
	defer rows.Close()
	var out []Alarm
	for rows.Next() {
		a := Alarm{Source: AlarmReconciled}
		if err := rows.Scan(&a.Instance, &a.Task, &a.Attempt); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Attempts returns, per (instance, task) of one policy, the attempts whose
// code started: the recorded executions and the attempts a fence refused.
func (l *Ledger) Attempts(ctx context.Context, policy string) (map[taskKey][]int, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT instance, task, attempt FROM ledger WHERE policy = ?
		UNION ALL SELECT instance, task, attempt FROM refused WHERE policy = ?`, policy, policy)
	if err != nil {
		return nil, fmt.Errorf("ledger: read attempts: %w", err)
	}
	defer rows.Close()
	out := map[taskKey][]int{}
	for rows.Next() {
		var k taskKey
		var a int
		if err := rows.Scan(&k.instance, &k.task, &a); err != nil {
			return nil, err
		}
		out[k] = append(out[k], a)
	}
	return out, rows.Err()
}

// FenceAndCheck raises the call's fence to attempt — older deliveries can
// no longer record — and reports, in the same transaction, whether an
// earlier delivery already did.
func (l *Ledger) FenceAndCheck(ctx context.Context, instance string, task, attempt int) (bool, error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO fences VALUES (?, ?, ?)
		ON CONFLICT (instance, task) DO UPDATE SET attempt = max(attempt, excluded.attempt)`, instance, task, attempt); err != nil {
		return false, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM ledger WHERE instance = ? AND task = ?`, instance, task).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, tx.Commit()
}

// Ran reports whether the ledger has an execution of (instance, task).
func (l *Ledger) Ran(ctx context.Context, instance string, task int) (bool, error) {
	var n int
	err := l.db.QueryRowContext(ctx, `SELECT count(*) FROM ledger WHERE instance = ? AND task = ?`, instance, task).Scan(&n)
	return n > 0, err
}

// Executions counts the rows per (instance, task) of one policy.
func (l *Ledger) Executions(ctx context.Context, policy string) (map[taskKey]int, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT instance, task, count(*) FROM ledger WHERE policy = ? GROUP BY instance, task`, policy)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[taskKey]int{}
	for rows.Next() {
		var k taskKey
		var n int
		if err := rows.Scan(&k.instance, &k.task, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}

// Workers counts the distinct worker processes that ran activities.
func (l *Ledger) Workers(ctx context.Context) (int, error) {
	var n int
	err := l.db.QueryRowContext(ctx, `SELECT count(DISTINCT pid) FROM ledger`).Scan(&n)
	return n, err
}

// ExecutionsByPID counts the executions per worker process.
func (l *Ledger) ExecutionsByPID(ctx context.Context) (map[int]int, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT pid, count(*) FROM ledger GROUP BY pid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var pid, n int
		if err := rows.Scan(&pid, &n); err != nil {
			return nil, err
		}
		out[pid] = n
	}
	return out, rows.Err()
}

type taskKey struct {
	instance string
	task     int
}
