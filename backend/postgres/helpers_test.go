package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend/postgres"
)

// DefaultURL is the database the tests use unless DURO_POSTGRES_URL names
// another.
const defaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// testURL returns the test database's URL. When PostgreSQL is unreachable
// the test fails if CI=true (CI must never skip it) and is skipped
// otherwise.
func testURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("DURO_POSTGRES_URL")
	if url == "" {
		url = defaultURL
	}
	reachable.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
		}
		reachable.err = err
	})
	if reachable.err != nil {
		msg := "PostgreSQL is unreachable at " + redact(url) + " (set DURO_POSTGRES_URL, or start it: " +
			"pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start): " + reachable.err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return url
}

var reachable struct {
	once sync.Once
	err  error
}

// redact hides a password in a URL for messages.
func redact(url string) string {
	if cfg, err := pgx.ParseConfig(url); err == nil && cfg.Password != "" {
		return strings.ReplaceAll(url, cfg.Password, "xxxxx")
	}
	return url
}

// freshSchema returns a new random schema name, dropped (with everything in
// it) when the test ends.
func freshSchema(t testing.TB, url string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "duro_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// withAppName adds application_name to a URL, so that a test can find (and
// terminate) its own connections.
func withAppName(url, name string) string {
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "application_name=" + name
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// open opens a backend on schema, closed when the test ends.
func open(t testing.TB, url, schema string, opts *postgres.Options) *postgres.Backend {
	t.Helper()
	o := postgres.Options{}
	if opts != nil {
		o = *opts
	}
	o.Schema = schema
	if o.MaxConns == 0 {
		o.MaxConns = 4
	}
	b, err := postgres.Open(context.Background(), url, &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}
