package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type bundle struct {
	b    *sqlite.Backend
	path string
	ctx  context.Context
}

// setup opens a backend on a fresh file, closed at the end of the test.
func setup(t *testing.T) *bundle {
	t.Helper()
	path := filepath.Join(t.TempDir(), "duro.db")
	b, err := sqlite.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return &bundle{b: b, path: path, ctx: t.Context()}
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func create(t *testing.T, b *sqlite.Backend, id string) {
	t.Helper()
	err := b.CreateInstance(t.Context(), &backend.CreateInstanceParams{
		ID: id, Name: "orch", ExecutionID: "e1", Input: []byte(`"in"`), Now: t0,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func claimStep(t *testing.T, b *sqlite.Backend, at time.Time) *backend.OrchestrationWorkItem {
	t.Helper()
	wi, err := b.ClaimOrchestrationStep(t.Context(), &backend.ClaimParams{Owner: "w", LeaseDuration: time.Minute, Now: at})
	if err != nil {
		t.Fatal(err)
	}
	return wi
}

func claimActivity(t *testing.T, b *sqlite.Backend, at time.Time) *backend.ActivityWorkItem {
	t.Helper()
	wi, err := b.ClaimActivity(t.Context(), &backend.ClaimParams{Owner: "w", LeaseDuration: time.Minute, Now: at})
	if err != nil {
		t.Fatal(err)
	}
	return wi
}

// scheduleTasks completes the first step of instance id, scheduling n tasks.
func scheduleTasks(t *testing.T, b *sqlite.Backend, id string, n int) {
	t.Helper()
	wi := claimStep(t, b, t0)
	if wi == nil || wi.Instance.ID != id {
		t.Fatalf("claimed %+v, want instance %s", wi, id)
	}
	p := &backend.CompleteOrchestrationStepParams{
		InstanceID: id, ExecutionID: wi.Instance.ExecutionID, Attempt: wi.Attempt, Status: backend.StatusRunning, Now: t0,
	}
	for _, m := range wi.Messages { // the ExecutionStarted message
		p.ConsumedMessageIDs = append(p.ConsumedMessageIDs, m.ID)
		p.NewEvents = append(p.NewEvents, m.Event)
	}
	for i := range n {
		taskID := backend.TaskMessageID(id, "e1", i)
		p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventTaskScheduled, TaskID: i, Name: "act", Timestamp: t0})
		p.ActivityTasks = append(p.ActivityTasks, &backend.ActivityTask{
			ID: taskID, InstanceID: id, ExecutionID: "e1", TaskID: i, Name: "act", Input: []byte("x"),
		})
	}
	if err := b.CompleteOrchestrationStep(t.Context(), p); err != nil {
		t.Fatal(err)
	}
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts sqlite.Options
		want string // substring of the error; empty means success
	}{
		{"defaults", sqlite.Options{}, ""},
		{"normal", sqlite.Options{Synchronous: "normal"}, ""},
		{"extra", sqlite.Options{Synchronous: "EXTRA", BusyTimeout: time.Second, ReadConns: 2, MaxStepMessages: 10}, ""},
		{"sync off", sqlite.Options{Synchronous: "OFF"}, "Options.Synchronous"},
		{"sync junk", sqlite.Options{Synchronous: "full; DROP"}, "Options.Synchronous"},
		{"negative busy", sqlite.Options{BusyTimeout: -time.Second}, "Options.BusyTimeout"},
		{"tiny busy", sqlite.Options{BusyTimeout: time.Microsecond}, "Options.BusyTimeout"},
		{"negative conns", sqlite.Options{ReadConns: -1}, "Options.ReadConns"},
		{"negative messages", sqlite.Options{MaxStepMessages: -1}, "Options.MaxStepMessages"},
		{"small cache", sqlite.Options{CacheKiB: 64}, ""},
		{"negative cache", sqlite.Options{CacheKiB: -1}, "Options.CacheKiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "x.db"), &tt.opts)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				_ = b.Close()
				return
			}
			if err == nil {
				_ = b.Close()
				t.Fatalf("Open succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open: %v, want error containing %q", err, tt.want)
			}
			if _, err := sqlite.OpenMemory(t.Context(), &tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("OpenMemory: %v, want error containing %q", err, tt.want)
			}
		})
	}
	for _, path := range []string{"", ":memory:", "file:x.db"} {
		if b, err := sqlite.Open(t.Context(), path, nil); err == nil {
			_ = b.Close()
			t.Errorf("Open(%q) succeeded, want error", path)
		}
	}
}

func TestOpenOddPath(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "a?b#c%20d.db")
	b, err := sqlite.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	create(t, b, "i1")
	_ = b.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	b, err = sqlite.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	if _, err := b.GetInstance(t.Context(), "i1"); err != nil {
		t.Fatal(err)
	}
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "m.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	latest := sqlite.Migrations()[len(sqlite.Migrations())-1].Version

	st, err := sqlite.MigrationStatus(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if !s.Pending() {
			t.Fatalf("fresh database: migration %d applied", s.Version)
		}
	}
	for range 2 {
		if err := sqlite.Migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // Open migrates again; nothing happens
		b, err := sqlite.Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := b.MigrationVersion(ctx); err != nil || v != latest {
			t.Fatalf("MigrationVersion = %d, %v; want %d", v, err, latest)
		}
		_ = b.Close()
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM duro_migration`).Scan(&n); err != nil || n != len(sqlite.Migrations()) {
		t.Fatalf("duro_migration rows = %d, %v; want %d", n, err, len(sqlite.Migrations()))
	}
	st, err = sqlite.MigrationStatus(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Pending() || s.Name == "" {
			t.Fatalf("after Migrate: %+v", s)
		}
	}

	// A database migrated by a newer build is refused.
	if _, err := db.Exec(`INSERT INTO duro_migration (version, applied_at) VALUES (?, 1)`, latest+1); err != nil {
		t.Fatal(err)
	}
	if b, err := sqlite.Open(ctx, path, nil); err == nil {
		_ = b.Close()
		t.Fatal("Open of a newer schema succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.db")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			b, err := sqlite.Open(t.Context(), path, nil)
			if err == nil {
				err = b.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestAttemptsSurviveReopen(t *testing.T) {
	t.Parallel()
	s := setup(t)
	create(t, s.b, "i1")
	scheduleTasks(t, s.b, "i1", 1)
	if a := claimActivity(t, s.b, t0); a == nil || a.Attempt != 1 {
		t.Fatalf("first activity claim: %+v", a)
	}
	if err := s.b.EnqueueMessage(s.ctx, &backend.Message{ID: "ev", InstanceID: "i1",
		Event: &backend.Event{Type: backend.EventEventRaised, Name: "go"}}); err != nil {
		t.Fatal(err)
	}
	if w := claimStep(t, s.b, t0); w == nil || w.Attempt != 2 {
		t.Fatalf("second step claim: %+v", w)
	}
	if err := s.b.Close(); err != nil {
		t.Fatal(err)
	}

	b, err := sqlite.Open(s.ctx, s.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	later := t0.Add(2 * time.Minute) // both leases have lapsed
	if a := claimActivity(t, b, later); a == nil || a.Attempt != 2 || !a.PreviousDeliveryAt.Equal(t0) {
		t.Fatalf("activity claim after reopen: %+v", a)
	}
	if w := claimStep(t, b, later); w == nil || w.Attempt != 3 {
		t.Fatalf("step claim after reopen: %+v", w)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := s.ctx
	create(t, s.b, "i1")
	scheduleTasks(t, s.b, "i1", 1)
	if w := claimStep(t, s.b, t0); w != nil {
		t.Fatalf("claimed a step with an empty inbox: %+v", w)
	}

	a := claimActivity(t, s.b, t0.Add(time.Second))
	taskID := backend.TaskMessageID("i1", "e1", 0)
	switch {
	case a == nil:
		t.Fatal("no activity")
	case a.Task.ID != taskID || a.Task.Name != "act" || string(a.Task.Input) != "x" || a.Attempt != 1:
		t.Fatalf("activity: %+v %+v", a, a.Task)
	case !a.ScheduledAt.Equal(t0) || !a.PreviousDeliveryAt.IsZero() || !a.LeaseExpiresAt.Equal(t0.Add(time.Second+time.Minute)):
		t.Fatalf("activity times: %+v", a)
	}
	if b2 := claimActivity(t, s.b, t0.Add(time.Second)); b2 != nil {
		t.Fatalf("claimed a leased activity: %+v", b2)
	}
	result := &backend.Event{Type: backend.EventTaskCompleted, TaskID: 0, Result: []byte("42"), Attempt: 1, Timestamp: t0}
	if err := s.b.CompleteActivity(ctx, &backend.CompleteActivityParams{TaskID: taskID, Attempt: 1, Result: result}); err != nil {
		t.Fatal(err)
	}
	err := s.b.CompleteActivity(ctx, &backend.CompleteActivityParams{TaskID: taskID, Attempt: 1, Result: result})
	if !errors.Is(err, backend.ErrLeaseLost) {
		t.Fatalf("second CompleteActivity: %v, want ErrLeaseLost", err)
	}

	w := claimStep(t, s.b, t0.Add(2*time.Second))
	switch {
	case w == nil:
		t.Fatal("no step after the activity completed")
	case w.Attempt != 2 || len(w.History) != 2 || len(w.Messages) != 1:
		t.Fatalf("step: attempt %d, %d events, %d messages", w.Attempt, len(w.History), len(w.Messages))
	case w.Messages[0].ID != backend.ResultMessageID(taskID) || w.Messages[0].ExecutionID != "e1" ||
		string(w.Messages[0].Event.Result) != "42":
		t.Fatalf("result message: %+v %+v", w.Messages[0], w.Messages[0].Event)
	case w.History[0].Type != backend.EventExecutionStarted || w.History[1].Type != backend.EventTaskScheduled:
		t.Fatalf("history: %+v %+v", w.History[0], w.History[1])
	}
	done := &backend.CompleteOrchestrationStepParams{
		InstanceID: "i1", ExecutionID: w.Instance.ExecutionID, Attempt: w.Attempt, Status: backend.StatusCompleted, Output: []byte("42"),
		ConsumedMessageIDs: []string{w.Messages[0].ID}, Now: t0.Add(3 * time.Second),
		NewEvents: []*backend.Event{{Type: backend.EventExecutionCompleted, Status: backend.StatusCompleted, Result: []byte("42")}},
	}
	if err := s.b.CompleteOrchestrationStep(ctx, done); err != nil {
		t.Fatal(err)
	}
	// Repeated by its own delivery (a lost reply): recognised, not applied
	// again (the history check below).
	if err := s.b.CompleteOrchestrationStep(ctx, done); err != nil {
		t.Fatalf("second CompleteOrchestrationStep: %v, want nil", err)
	}
	in, err := s.b.GetInstance(ctx, "i1")
	if err != nil {
		t.Fatal(err)
	}
	if in.Status != backend.StatusCompleted || string(in.Output) != "42" || !in.CompletedAt.Equal(t0.Add(3*time.Second)) ||
		in.CreatedAt.Location() != time.UTC {
		t.Fatalf("instance: %+v", in)
	}
	h, err := s.b.GetHistory(ctx, "i1")
	if err != nil || len(h) != 3 {
		t.Fatalf("history: %d events, %v", len(h), err)
	}
	err = s.b.EnqueueMessage(ctx, &backend.Message{ID: "late", InstanceID: "i1", Event: &backend.Event{Type: backend.EventEventRaised, Name: "x"}})
	if !errors.Is(err, backend.ErrInstanceFinished) {
		t.Fatalf("EnqueueMessage to a finished instance: %v", err)
	}
}

// TestConcurrentClaims claims activities from many goroutines on two
// backends sharing one file (as two processes would), with leases that lapse
// at once, and checks that no (task, attempt) is handed out twice.
func TestConcurrentClaims(t *testing.T) {
	t.Parallel()
	s := setup(t)
	other, err := sqlite.Open(s.ctx, s.path, &sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Close() }()
	const tasks = 50
	create(t, s.b, "i1")
	scheduleTasks(t, s.b, "i1", tasks)

	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for g := range 8 {
		b := s.b
		if g%2 == 1 {
			b = other
		}
		wg.Go(func() {
			for range 40 {
				// A 1ns lease lapses before the next claim: every claim is a
				// re-delivery race.
				wi, err := b.ClaimActivity(s.ctx, &backend.ClaimParams{Owner: fmt.Sprint(g), LeaseDuration: time.Nanosecond})
				if err != nil {
					t.Error(err)
					return
				}
				if wi == nil {
					continue
				}
				key := fmt.Sprintf("%s#%d", wi.Task.ID, wi.Attempt)
				mu.Lock()
				dup := seen[key]
				seen[key] = true
				mu.Unlock()
				if dup {
					t.Errorf("delivery %s handed out twice", key)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != 8*40 {
		t.Errorf("%d deliveries, want %d", len(seen), 8*40)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(t *testing.T) *sqlite.Backend{
		"file":   func(t *testing.T) *sqlite.Backend { return setup(t).b },
		"memory": openMemory,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := open(t)
			ctx := t.Context()
			wake := b.WorkAvailable()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-wake:
			default:
				t.Error("Close did not wake WorkAvailable waiters")
			}
			select {
			case <-b.WorkAvailable():
			default:
				t.Error("WorkAvailable after Close is not closed")
			}
			claim := &backend.ClaimParams{LeaseDuration: time.Second}
			calls := map[string]error{
				"Close":           b.Close(),
				"CreateInstance":  b.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "i", Name: "n", ExecutionID: "e"}),
				"EnqueueMessage":  b.EnqueueMessage(ctx, &backend.Message{ID: "m", InstanceID: "i", Event: &backend.Event{Type: backend.EventEventRaised, Name: "x"}}),
				"PurgeInstance":   b.PurgeInstance(ctx, "i"),
				"AbandonActivity": b.AbandonActivity(ctx, &backend.AbandonParams{ID: "t", Attempt: 1}),
			}
			_, calls["GetInstance"] = b.GetInstance(ctx, "i")
			_, calls["GetHistory"] = b.GetHistory(ctx, "i")
			_, calls["ListInstances"] = b.ListInstances(ctx, nil)
			_, calls["ClaimOrchestrationStep"] = b.ClaimOrchestrationStep(ctx, claim)
			_, calls["ClaimActivity"] = b.ClaimActivity(ctx, claim)
			_, calls["MigrationVersion"] = b.MigrationVersion(ctx)
			for call, err := range calls {
				if !errors.Is(err, backend.ErrClosed) {
					t.Errorf("%s after Close: %v, want ErrClosed", call, err)
				}
			}
		})
	}
}

func openMemory(t *testing.T) *sqlite.Backend {
	b, err := sqlite.OpenMemory(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestSuspendedSummaryExact checks that the ready summary of a Suspended
// instance counts only its control messages, so that claims never meet a
// stale summary (which the claim repairs, with a warning, at a cost).
func TestSuspendedSummaryExact(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := sqlite.OpenMemory(t.Context(), &sqlite.Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	ctx := t.Context()
	create(t, b, "s")
	wi := claimStep(t, b, t0)
	if err := b.CompleteOrchestrationStep(ctx, &backend.CompleteOrchestrationStepParams{
		InstanceID: "s", ExecutionID: "e1", Attempt: wi.Attempt, Status: backend.StatusSuspended,
		ConsumedMessageIDs: []string{wi.Messages[0].ID}, Suspension: &backend.Suspension{Reason: "r", Since: t0}, Now: t0,
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if err := b.EnqueueMessage(ctx, &backend.Message{ID: id, InstanceID: "s",
			Event: &backend.Event{Type: backend.EventEventRaised, Name: id}}); err != nil {
			t.Fatal(err)
		}
	}
	if w := claimStep(t, b, t0.Add(time.Hour)); w != nil {
		t.Fatalf("claimed a Suspended instance without control messages: %+v", w)
	}
	if err := b.EnqueueMessage(ctx, &backend.Message{ID: "resume", InstanceID: "s",
		Event: &backend.Event{Type: backend.EventExecutionResumed}}); err != nil {
		t.Fatal(err)
	}
	wi = claimStep(t, b, t0.Add(time.Hour))
	if wi == nil || len(wi.Messages) != 1 || wi.Messages[0].ID != "resume" {
		t.Fatalf("claim after resume: %+v", wi)
	}
	if err := b.CompleteOrchestrationStep(ctx, &backend.CompleteOrchestrationStepParams{
		InstanceID: "s", ExecutionID: "e1", Attempt: wi.Attempt, Status: backend.StatusRunning,
		ConsumedMessageIDs: []string{"resume"}, Now: t0.Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	if wi = claimStep(t, b, t0.Add(time.Hour)); wi == nil || len(wi.Messages) != 2 {
		t.Fatalf("claim after the resumed step: %+v", wi)
	}
	mu.Lock()
	defer mu.Unlock()
	if logs.Len() > 0 {
		t.Fatalf("warnings logged:\n%s", logs.String())
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
