package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"time"

	"github.com/durohq/duro/backend/rules"
	migfile "github.com/durohq/duro/internal/migrate"
)

//go:embed migration/*.sql
var migrationFiles embed.FS

// Migration is one versioned schema change, embedded from
// migration/NNN_name.sql.
type Migration struct {
	// Version is the file's number; migrations apply in increasing order.
	Version int
	// Name is the rest of the file name, e.g. "initial".
	Name string
	// SQL is the script, run in one transaction.
	SQL string
}

// MigrationState is a migration with whether and when a database applied it.
type MigrationState struct {
	Version int
	// Name is empty for a version the database recorded but this build does
	// not know (the database was migrated by a newer duro).
	Name string
	// AppliedAt is zero while the migration is pending.
	AppliedAt time.Time
}

// Pending reports whether the migration has not been applied.
func (s MigrationState) Pending() bool { return s.AppliedAt.IsZero() }

var migrations = mustLoadMigrations()

func mustLoadMigrations() []Migration {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		panic(err)
	}
	return ms
}

func loadMigrations(fsys fs.FS) ([]Migration, error) {
	files, err := migfile.Load(fsys, "migration", "sqlite")
	if err != nil {
		return nil, err
	}
	ms := make([]Migration, len(files))
	for i, f := range files {
		ms[i] = Migration{Version: f.Version, Name: f.Name, SQL: f.SQL}
	}
	return ms, nil
}

// Migrations returns the migrations embedded in this build, oldest first.
func Migrations() []Migration {
	return append([]Migration(nil), migrations...)
}

// Migrate applies the pending migrations to db in order, each in its own
// IMMEDIATE transaction that records it in table duro_migration. It is
// idempotent and safe to run from several processes at once. It fails if the
// database was migrated by a newer build (a version this build does not
// know). Open calls it; a CLI may call it on a database it opened itself with
// sql.Open("sqlite", path).
func Migrate(ctx context.Context, db *sql.DB) error {
	return migrate(ctx, db, slog.New(slog.DiscardHandler))
}

const createMigrationTable = `CREATE TABLE IF NOT EXISTS duro_migration (
    version    INTEGER NOT NULL PRIMARY KEY,
    applied_at INTEGER NOT NULL
)`

func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	defer func() { _ = conn.Close() }()
	latest := migrations[len(migrations)-1].Version
	for _, m := range migrations {
		applied, err := applyMigration(ctx, conn, m, latest)
		if err != nil {
			return fmt.Errorf("sqlite: migrate: version %d (%s): %w", m.Version, m.Name, err)
		}
		if applied {
			log.Info("sqlite: applied migration", "version", m.Version, "name", m.Name)
		}
	}
	return nil
}

// applyMigration applies m unless the database has it, inside one IMMEDIATE
// transaction so that concurrent migrators serialize on the write lock.
func applyMigration(ctx context.Context, conn *sql.Conn, m Migration, latest int) (applied bool, err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return false, err
	}
	defer func() {
		end := "COMMIT"
		if err != nil || !applied {
			end = "ROLLBACK"
		}
		if _, endErr := conn.ExecContext(context.WithoutCancel(ctx), end); endErr != nil && err == nil {
			applied, err = false, endErr
		}
	}()
	if _, err := conn.ExecContext(ctx, createMigrationTable); err != nil {
		return false, err
	}
	var newest int
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM duro_migration`).Scan(&newest); err != nil {
		return false, err
	}
	if newest > latest {
		return false, fmt.Errorf("database schema version %d is newer than this build supports (%d)", newest, latest)
	}
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM duro_migration WHERE version = ?`, m.Version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if _, err := conn.ExecContext(ctx, m.SQL); err != nil {
		return false, err
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO duro_migration (version, applied_at) VALUES (?, ?)`,
		m.Version, time.Now().UnixNano()); err != nil {
		return false, err
	}
	return true, nil
}

// MigrationStatus lists the migrations this build knows, and any newer ones
// the database recorded, with when db applied them. It changes nothing.
func MigrationStatus(ctx context.Context, db *sql.DB) ([]MigrationState, error) {
	st, err := migrationStatus(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("sqlite: migration status: %w", err)
	}
	return st, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func migrationStatus(ctx context.Context, q querier) ([]MigrationState, error) {
	applied := map[int]int64{}
	rows, err := q.QueryContext(ctx,
		`SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'duro_migration'`)
	if err != nil {
		return nil, err
	}
	exists := rows.Next()
	if err := closeRows(rows); err != nil {
		return nil, err
	}
	if exists {
		rows, err := q.QueryContext(ctx, `SELECT version, applied_at FROM duro_migration`)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var v int
			var at int64
			if err := rows.Scan(&v, &at); err != nil {
				_ = rows.Close()
				return nil, err
			}
			applied[v] = at
		}
		if err := closeRows(rows); err != nil {
			return nil, err
		}
	}
	var st []MigrationState
	for _, m := range migrations {
		s := MigrationState{Version: m.Version, Name: m.Name}
		if at, ok := applied[m.Version]; ok {
			s.AppliedAt = rules.FromNanos(at)
			delete(applied, m.Version)
		}
		st = append(st, s)
	}
	for v, at := range applied {
		st = append(st, MigrationState{Version: v, AppliedAt: rules.FromNanos(at)})
	}
	sort.Slice(st, func(i, j int) bool { return st[i].Version < st[j].Version })
	return st, nil
}

// closeRows closes rows and returns the iteration error, if any.
func closeRows(rows rows) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

// MigrationStatus is the package-level MigrationStatus on the backend's
// database.
func (b *Backend) MigrationStatus(ctx context.Context) ([]MigrationState, error) {
	var st []MigrationState
	err := b.read(ctx, "migration status", func(d *dbtx) error {
		var err error
		st, err = migrationStatus(ctx, d.tx)
		return err
	})
	return st, err
}

// MigrationVersion returns the newest migration version the database has
// applied (0 for none).
func (b *Backend) MigrationVersion(ctx context.Context) (int, error) {
	var v int
	err := b.read(ctx, "migration version", func(d *dbtx) error {
		return d.tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM duro_migration`).Scan(&v)
	})
	return v, err
}
