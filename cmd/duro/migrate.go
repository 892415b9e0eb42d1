package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro/backend/postgres"
	"github.com/durohq/duro/backend/sqlite"
)

// migrationRow is one schema migration, for either backend.
type migrationRow struct {
	version int
	name    string
	applied time.Time
}

func (a *app) migrateCmd() *cobra.Command {
	var status bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the store's pending schema migrations, or list them",
		Long: `Migrate applies the schema migrations the store has not applied yet and
lists every migration with when it was applied. Workers and clients apply
pending migrations on their own when they open a store; run migrate when
operators change schemas separately (PostgreSQL workers can then be started
with migrations skipped). With --status it only lists, changing nothing.`,
		Example: "  duro migrate --store postgres://db.internal/duro?duro_schema=payments\n  duro migrate --status",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var rows []migrationRow
			var err error
			if isPostgresURL(a.store) {
				rows, err = migratePostgres(ctx, a.store, status)
			} else {
				if !status {
					// Opening a SQLite store applies what is pending.
					be, err := openStore(ctx, a.store)
					if err != nil {
						return err
					}
					_ = be.Close()
				} else if ok, err := storeExists(a.store); err != nil || !ok {
					if err == nil {
						err = fmt.Errorf("store %s does not exist", a.store)
					}
					return err
				}
				rows, err = sqliteMigrations(ctx, a.store)
			}
			if err != nil {
				return err
			}
			for _, r := range rows {
				when := "pending"
				if !r.applied.IsZero() {
					when = "applied " + formatTime(r.applied)
				}
				name := r.name
				if name == "" {
					name = "(unknown to this duro: newer)"
				}
				fmt.Fprintf(a.stdout, "%03d  %-24s  %s\n", r.version, name, when)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&status, "status", false, "only list the migrations")
	return cmd
}

func migratePostgres(ctx context.Context, url string, statusOnly bool) ([]migrationRow, error) {
	pool, schema, err := postgres.OpenPool(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store: %w", err)
	}
	defer pool.Close()
	if !statusOnly {
		if err := postgres.Migrate(ctx, pool, schema); err != nil {
			return nil, err
		}
	}
	st, err := postgres.MigrationStatus(ctx, pool, schema)
	if err != nil {
		return nil, err
	}
	out := make([]migrationRow, 0, len(st))
	for _, s := range st {
		out = append(out, migrationRow{version: s.Version, name: s.Name, applied: s.AppliedAt})
	}
	return out, nil
}

func sqliteMigrations(ctx context.Context, path string) ([]migrationRow, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	st, err := sqlite.MigrationStatus(ctx, db)
	if err != nil {
		return nil, err
	}
	out := make([]migrationRow, 0, len(st))
	for _, s := range st {
		out = append(out, migrationRow{version: s.Version, name: s.Name, applied: s.AppliedAt})
	}
	return out, nil
}
