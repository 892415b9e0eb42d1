package chaos

import (
	"context"
	"database/sql"
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
		attempt INTEGER NOT NULL, policy TEXT NOT NULL, pid INTEGER NOT NULL, at INTEGER NOT NULL)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	return &Ledger{db: db}, nil
}

// Close closes the ledger.
func (l *Ledger) Close() error { return l.db.Close() }

// Record appends one execution, durably.
func (l *Ledger) Record(ctx context.Context, instance string, task int, activity string, attempt int, policy string) error {
	_, err := l.db.ExecContext(ctx, `INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?)`,
		instance, task, activity, attempt, policy, os.Getpid(), time.Now().UnixNano())
	return err
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

type taskKey struct {
	instance string
	task     int
}
