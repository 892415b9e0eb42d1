package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPostgresStore runs commands against a PostgreSQL store in a schema of
// its own (the duro_schema URL parameter), created and dropped here.
func TestPostgresStore(t *testing.T) {
	t.Parallel()
	base := os.Getenv("DURO_POSTGRES_URL")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL unreachable with CI=true: %v", err)
		}
		t.Skipf("PostgreSQL unreachable: %v", err)
	}
	schema := fmt.Sprintf("duro_cli_%d", time.Now().UnixNano())
	// The connection closes after the drop: a deferred Close would run
	// before the cleanup, leaving the schema behind.
	t.Cleanup(func() {
		if _, err := conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		_ = conn.Close(context.Background())
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	store := base + sep + "duro_schema=" + schema
	cli(t, "start", "Echo", "--store", store, "--id", "pg-1", "--input", `{"a":1}`).ok(t)
	r := cli(t, "list", "--store", store).ok(t)
	if !strings.Contains(r.stdout, "pg-1") || !strings.Contains(r.stdout, "Pending") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	r = cli(t, "status", "pg-1", "--store", store, "-o", "json").ok(t)
	if !strings.Contains(r.stdout, `"status": "Pending"`) {
		t.Fatalf("status:\n%s", r.stdout)
	}
	cli(t, "terminate", "pg-1", "--store", store, "--reason", "test").ok(t)
}
