package sqlite_test

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
)

// TestReadOnly: a store opened ReadOnly reads what others wrote, refuses
// every write with ErrReadOnly, and needs a current schema.
func TestReadOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "duro.db")
	rw, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rw.Close() }()
	if err := rw.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "a", Name: "o", ExecutionID: "e"}); err != nil {
		t.Fatal(err)
	}
	ro, err := sqlite.Open(ctx, path, &sqlite.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ro.Close() }()
	if _, err := ro.GetInstance(ctx, "a"); err != nil {
		t.Fatalf("GetInstance on a read-only store: %v", err)
	}
	// A write by the other backend is seen.
	if err := rw.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "b", Name: "o", ExecutionID: "e"}); err != nil {
		t.Fatal(err)
	}
	page, err := ro.ListInstances(ctx, &backend.ListInstancesParams{})
	if err != nil || len(page.Instances) != 2 {
		t.Fatalf("ListInstances on a read-only store: %v, %d instances, want 2", err, len(page.Instances))
	}
	err = ro.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "c", Name: "o", ExecutionID: "e"})
	if !errors.Is(err, sqlite.ErrReadOnly) {
		t.Fatalf("CreateInstance on a read-only store: %v, want ErrReadOnly", err)
	}
	if _, err := ro.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: "w", LeaseDuration: 1e9}); !errors.Is(err, sqlite.ErrReadOnly) {
		t.Fatalf("ClaimOrchestrationStep on a read-only store: %v, want ErrReadOnly", err)
	}
}

func TestReadOnlyRefusals(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	// A store whose journal is in use: Immutable would miss its changes.
	live := filepath.Join(dir, "live.db")
	rw, err := sqlite.Open(ctx, live, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rw.Close() }()
	if err := rw.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "a", Name: "o", ExecutionID: "e"}); err != nil {
		t.Fatal(err)
	}
	// A SQLite file without duro's schema.
	plain := filepath.Join(dir, "plain.db")
	db, err := sql.Open("sqlite", plain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE t (x)`); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	tests := []struct {
		name string
		path string
		opts sqlite.Options
		want string
	}{
		{"immutable alone", live, sqlite.Options{Immutable: true}, "invalid Options.Immutable: it needs ReadOnly"},
		{"immutable with a journal", live, sqlite.Options{ReadOnly: true, Immutable: true}, "live.db-wal exists"},
		{"missing file", filepath.Join(dir, "nope.db"), sqlite.Options{ReadOnly: true}, "no such file"},
		{"not a store", plain, sqlite.Options{ReadOnly: true}, "holds no duro store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := sqlite.Open(ctx, tt.path, &tt.opts)
			if err == nil {
				_ = b.Close()
				t.Fatalf("Open(%+v) succeeded", tt.opts)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open(%+v): %v, want %q", tt.opts, err, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "nope.db")); err == nil {
		t.Error("a read-only Open created the missing file")
	}
}

// TestOpenErrorsInWords: SQLite's codes for a path it cannot open become
// a sentence about the path.
func TestOpenErrorsInWords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := sqlite.Open(t.Context(), filepath.Join(dir, "missing", "duro.db"), nil)
	if err == nil || !strings.Contains(err.Error(), "the directory "+filepath.Join(dir, "missing")+" does not exist") || strings.Contains(err.Error(), "(14)") {
		t.Fatalf("Open in a missing directory: %v", err)
	}
	_, err = sqlite.Open(t.Context(), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "is a directory, not a store file") {
		t.Fatalf("Open of a directory: %v", err)
	}
}
