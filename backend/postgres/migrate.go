package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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
	// SQL is the script, run in one transaction with search_path set to the
	// hub's schema.
	SQL string
}

// MigrationState is a migration with whether and when a schema applied it.
type MigrationState struct {
	Version int
	// Name is empty for a version the schema recorded but this build does
	// not know (the schema was migrated by a newer duro).
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
	files, err := migfile.Load(fsys, "migration", "postgres")
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

// migrationLockKey is the first key of the advisory lock that serializes
// migrations; the second is hashtext(schema), so hubs migrate independently.
const migrationLockKey = 0x6475726f // "duro"

// Migrate applies the pending migrations to the hub in schema (created if
// needed), in order, each in its own transaction that first takes a
// transaction-scoped advisory lock for the schema, so concurrent migrators
// (several processes opening at once) apply each migration exactly once. It
// records them in the schema's duro_migration table, is idempotent, and
// fails if the schema was migrated by a newer build. Open calls it unless
// Options.SkipMigrate is set; a CLI calls it on a pool it opened itself.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	if err := migrate(ctx, pool, schema, slog.New(slog.DiscardHandler)); err != nil {
		return fmt.Errorf("postgres: %w", connectError(err))
	}
	return nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool, schema string, log *slog.Logger) error {
	if err := ValidSchema(schema); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// Fast path: a schema that is up to date costs one query.
	st, err := migrationStatus(ctx, pool, schema)
	if err != nil {
		return fmt.Errorf("migrate schema %s: %w", schema, err)
	}
	latest := migrations[len(migrations)-1].Version
	pending := false
	for _, s := range st {
		if s.Version > latest {
			return fmt.Errorf("migrate schema %s: schema version %d is newer than this build supports (%d)",
				schema, s.Version, latest)
		}
		pending = pending || s.Pending()
	}
	if !pending {
		return nil
	}
	for _, m := range migrations {
		applied, err := applyMigration(ctx, pool, schema, m, latest)
		if err != nil {
			return fmt.Errorf("migrate schema %s: version %d (%s): %w", schema, m.Version, m.Name, err)
		}
		if applied {
			log.Info("postgres: applied migration", "schema", schema, "version", m.Version, "name", m.Name)
		}
	}
	return nil
}

// applyMigration applies m to schema unless it is recorded there, in one
// transaction holding the schema's migration lock.
func applyMigration(ctx context.Context, pool *pgxpool.Pool, schema string, m Migration, latest int) (applied bool, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, migrationLockKey, schema); err != nil {
			return err
		}
		q := pgx.Identifier{schema}.Sanitize()
		for _, stmt := range []string{
			`CREATE SCHEMA IF NOT EXISTS ` + q,
			`SET LOCAL search_path TO ` + q,
			`CREATE TABLE IF NOT EXISTS duro_migration (
				version    integer NOT NULL PRIMARY KEY,
				name       text NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now()
			)`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		var newest int
		var have bool
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0), bool_or(version = $1) IS TRUE FROM duro_migration`,
			m.Version).Scan(&newest, &have); err != nil {
			return err
		}
		if newest > latest {
			return fmt.Errorf("schema version %d is newer than this build supports (%d)", newest, latest)
		}
		if have {
			return nil
		}
		// Simple protocol: a script of several statements.
		if _, err := tx.Exec(ctx, m.SQL, pgx.QueryExecModeSimpleProtocol); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO duro_migration (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			return err
		}
		applied = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return applied, nil
}

// MigrationStatus lists the migrations this build knows, and any newer ones
// the schema recorded, with when the schema applied them. It changes
// nothing; for a schema that does not exist every migration is pending.
func MigrationStatus(ctx context.Context, pool *pgxpool.Pool, schema string) ([]MigrationState, error) {
	if err := ValidSchema(schema); err != nil {
		return nil, fmt.Errorf("postgres: migration status: %w", err)
	}
	st, err := migrationStatus(ctx, pool, schema)
	if err != nil {
		return nil, fmt.Errorf("postgres: migration status of %s: %w", schema, err)
	}
	return st, nil
}

func migrationStatus(ctx context.Context, pool *pgxpool.Pool, schema string) ([]MigrationState, error) {
	applied := map[int]time.Time{}
	var exists bool
	table := pgx.Identifier{schema, "duro_migration"}.Sanitize()
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
		return nil, err
	}
	if exists {
		rows, err := pool.Query(ctx, `SELECT version, applied_at FROM `+table)
		if err != nil {
			return nil, err
		}
		var v int
		var at time.Time
		if _, err := pgx.ForEachRow(rows, []any{&v, &at}, func() error {
			applied[v] = at.UTC()
			return nil
		}); err != nil {
			return nil, err
		}
	}
	var st []MigrationState
	for _, m := range migrations {
		s := MigrationState{Version: m.Version, Name: m.Name}
		if at, ok := applied[m.Version]; ok {
			s.AppliedAt = at
			delete(applied, m.Version)
		}
		st = append(st, s)
	}
	for v, at := range applied {
		st = append(st, MigrationState{Version: v, AppliedAt: at})
	}
	sort.Slice(st, func(i, j int) bool { return st[i].Version < st[j].Version })
	return st, nil
}

// checkMigrated fails unless every migration of this build is applied to
// schema and none newer is; Open uses it with Options.SkipMigrate.
func checkMigrated(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	st, err := migrationStatus(ctx, pool, schema)
	if err != nil {
		return err
	}
	latest := migrations[len(migrations)-1].Version
	for _, s := range st {
		switch {
		case s.Version > latest:
			return fmt.Errorf("schema %s has version %d, newer than this build supports (%d)", schema, s.Version, latest)
		case s.Pending():
			return fmt.Errorf("schema %s lacks migration %d (%s); run duro migrate, or open without SkipMigrate",
				schema, s.Version, s.Name)
		}
	}
	return nil
}

// MigrationStatus is the package-level MigrationStatus on the backend's
// pool and schema.
func (b *Backend) MigrationStatus(ctx context.Context) ([]MigrationState, error) {
	if b.closed.Load() {
		return nil, b.fail("migration status", errClosed)
	}
	return MigrationStatus(ctx, b.pool, b.schema)
}
