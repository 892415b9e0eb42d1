package main

import (
	"context"
	"strings"

	"github.com/durohq/duro/backend/postgres"
)

// chaosWorkerApp is the application_name of chaos workers' PostgreSQL
// connections, which the harness kills.
const chaosWorkerApp = "duro-chaos-worker"

// workerStore is the store spec chaos gives its worker processes: for
// PostgreSQL, tagged so that their connections can be told apart.
func workerStore(spec string) string {
	if !isPostgresURL(spec) {
		return spec
	}
	sep := "?"
	if strings.Contains(spec, "?") {
		sep = "&"
	}
	return spec + sep + "application_name=" + chaosWorkerApp
}

// killConnections returns the function chaos uses to kill the workers'
// database connections, or nil for stores without connections to kill.
func killConnections(spec string) func(ctx context.Context) (int, error) {
	if !isPostgresURL(spec) {
		return nil
	}
	return func(ctx context.Context) (int, error) {
		pool, _, err := postgres.OpenPool(ctx, spec)
		if err != nil {
			return 0, err
		}
		defer pool.Close()
		var n int
		err = pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND pid <> pg_backend_pid()`, chaosWorkerApp).Scan(&n)
		return n, err
	}
}
