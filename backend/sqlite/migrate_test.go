package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// TestMigration003 migrates a database holding data written under schema
// version 2: inbox.control is computed from the stored events, and the ready
// summary of an instance that is already Suspended counts only its control
// messages.
func TestMigration003(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "v2.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	applyUpTo(ctx, t, db, 2)

	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	later := t0.Add(time.Hour)
	for _, in := range []struct {
		id       string
		status   backend.Status
		readyAt  int64
		readyKey int64
	}{
		// The v2 summaries: MIN over every message.
		{"r", backend.StatusRunning, 0, t0.UnixNano()},
		{"s", backend.StatusSuspended, 0, t0.UnixNano()},
	} {
		if _, err := db.ExecContext(ctx, `INSERT INTO instances (id, name, execution_id, status, created_at, updated_at,
			ready_at, ready_key) VALUES (?, 'orch', 'e1', ?, ?, ?, ?, ?)`,
			in.id, in.status, t0.UnixNano(), t0.UnixNano(), in.readyAt, in.readyKey); err != nil {
			t.Fatal(err)
		}
	}
	msgs := []struct {
		id, instance string
		ev           *backend.Event
		visible      int64
		sortAt       int64
	}{
		{"r-event", "r", &backend.Event{Type: backend.EventEventRaised, Name: "x"}, 0, t0.UnixNano()},
		{"r-term", "r", &backend.Event{Type: backend.EventExecutionTerminated, Reason: "stop"}, 0, t0.UnixNano()},
		{"s-event", "s", &backend.Event{Type: backend.EventEventRaised, Name: "x"}, 0, t0.UnixNano()},
		{"s-term", "s", &backend.Event{Type: backend.EventExecutionTerminated, Reason: "stop"}, later.UnixNano(), later.UnixNano()},
	}
	for _, m := range msgs {
		data, err := backend.EncodeEvent(m.ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO inbox (id, instance_id, execution_id, event, visible_at, sort_at, created_at)
			VALUES (?, ?, 'e1', ?, ?, ?, ?)`, m.id, m.instance, data, m.visible, m.sortAt, t0.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	// A row that is not valid JSON must not fail the migration.
	if _, err := db.ExecContext(ctx, `INSERT INTO inbox (id, instance_id, event, visible_at, sort_at, created_at)
		VALUES ('junk', 'nobody', X'00ff', 0, 0, 0)`); err != nil {
		t.Fatal(err)
	}

	b, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()

	want := map[string]int{"r-event": 0, "r-term": 1, "s-event": 0, "s-term": 1, "junk": 0}
	for id, c := range want {
		var got int
		if err := db.QueryRowContext(ctx, `SELECT control FROM inbox WHERE id = ?`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c {
			t.Errorf("inbox %q: control = %d, want %d", id, got, c)
		}
	}
	var readyAt int64
	if err := db.QueryRowContext(ctx, `SELECT ready_at FROM instances WHERE id = 's'`).Scan(&readyAt); err != nil {
		t.Fatal(err)
	}
	if readyAt != later.UnixNano() {
		t.Errorf("ready_at of Suspended s = %d, want its control message's %d", readyAt, later.UnixNano())
	}
	claim := func(at time.Time) *backend.OrchestrationWorkItem {
		t.Helper()
		wi, err := b.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: "t", LeaseDuration: time.Hour, Now: at})
		if err != nil {
			t.Fatal(err)
		}
		return wi
	}
	wi := claim(t0.Add(time.Minute))
	if wi == nil || wi.Instance.ID != "r" || len(wi.Messages) != 2 {
		t.Fatalf("first claim after migration: %+v, want r with both messages", wi)
	}
	if wi := claim(t0.Add(time.Minute)); wi != nil {
		t.Fatalf("claimed %q with %d messages; the Suspended s has no visible control message yet", wi.Instance.ID, len(wi.Messages))
	}
	wi = claim(later)
	if wi == nil || wi.Instance.ID != "s" || len(wi.Messages) != 1 || wi.Messages[0].ID != "s-term" {
		t.Fatalf("claim at the control message's time: %+v, want s with s-term only", wi)
	}
	if wi.Instance.Suspension == nil {
		t.Fatal("Suspended instance without a stored suspension: Suspension is nil")
	}
}

// applyUpTo applies the embedded migrations up to version v.
func applyUpTo(ctx context.Context, t *testing.T, db *sql.DB, v int) {
	t.Helper()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	for _, m := range migrations {
		if m.Version > v {
			break
		}
		if _, err := applyMigration(ctx, conn, m, v); err != nil {
			t.Fatalf("migration %d: %v", m.Version, err)
		}
	}
}
