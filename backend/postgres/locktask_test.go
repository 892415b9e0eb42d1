package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
)

// TestCompletionLocksTheInstanceFirst holds an instance's row FOR UPDATE,
// as a step does, and completes its activity task: the completion waits
// for the instance's row (observed in pg_stat_activity) without having
// locked the task's row (another transaction can take it NOWAIT), and
// completes once the row is free. The two locks are one statement
// (lockTaskQuery), the instance's taken in the filter of the task's scan;
// a plan that skipped that filter, or locked the task first, fails here.
func TestCompletionLocksTheInstanceFirst(t *testing.T) {
	url := testURL(t)
	schema := freshSchema(t, url)
	be := open(t, url, schema, &postgres.Options{})
	ctx := t.Context()
	must := mustOK(t)
	t0, tk, awi := startTask(t, be)

	s := pgx.Identifier{schema}.Sanitize()
	step, err := pgx.Connect(ctx, url)
	must("connect", err)
	defer step.Close(context.Background())
	tx, err := step.Begin(ctx)
	must("begin", err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = tx.Exec(ctx, `SELECT 1 FROM `+s+`.instances WHERE id = 'a' FOR UPDATE`)
	must("lock the instance", err)

	done := completeAsync(t, be, tk, awi, t0)
	other, err := pgx.Connect(ctx, url)
	must("connect", err)
	defer other.Close(context.Background())
	waitForLockWait(t, other, schema, "%FOR KEY SHARE%", 0, done, "the instance's row")
	// Waiting for the instance, the completion holds no lock on the task.
	ttx, err := other.Begin(ctx)
	must("begin", err)
	if _, err := ttx.Exec(ctx, `SELECT 1 FROM `+s+`.activity_tasks WHERE id = $1 FOR UPDATE NOWAIT`, tk.ID); err != nil {
		t.Fatalf("the task's row is locked while the completion waits for the instance: %v", err)
	}
	must("rollback", ttx.Rollback(ctx))
	must("commit the step's lock", tx.Commit(ctx))
	must("the completion", <-done)
	h, err := be.GetHistory(ctx, "a")
	must("history", err)
	next, err := be.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: "test", LeaseDuration: time.Minute, Now: t0.Add(time.Second)})
	must("claim the next step", err)
	if next == nil || len(next.Messages) != 1 || next.Messages[0].ID != backend.ResultMessageID(tk.ID) || len(h) != 3 {
		t.Fatalf("after the completion: step %+v, %d history events; want the result to claim", next, len(h))
	}
}

// TestCompletionAfterAConcurrentRenewal holds an uncommitted update of an
// activity task's row (what a lease renewal writes) while the task's
// delivery completes: the completion waits for the row and, once the
// update commits, completes (the task deleted, the result delivered to a
// step that can be claimed), instead of taking the changed row for a lost
// lease.
func TestCompletionAfterAConcurrentRenewal(t *testing.T) {
	url := testURL(t)
	schema := freshSchema(t, url)
	be := open(t, url, schema, &postgres.Options{})
	ctx := t.Context()
	must := mustOK(t)
	t0, tk, awi := startTask(t, be)

	s := pgx.Identifier{schema}.Sanitize()
	renewer, err := pgx.Connect(ctx, url)
	must("connect", err)
	defer renewer.Close(context.Background())
	tx, err := renewer.Begin(ctx)
	must("begin", err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = tx.Exec(ctx, `UPDATE `+s+`.activity_tasks SET lease_expires_at = lease_expires_at + 1 WHERE id = $1`, tk.ID)
	must("renew", err)

	done := completeAsync(t, be, tk, awi, t0)
	other, err := pgx.Connect(ctx, url)
	must("connect", err)
	defer other.Close(context.Background())
	waitForLockWait(t, other, schema, "%activity_tasks%", renewer.PgConn().PID(), done, "the task's row")
	must("commit the renewal", tx.Commit(ctx))
	must("the completion", <-done)
	next, err := be.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: "test", LeaseDuration: time.Minute, Now: t0.Add(time.Second)})
	must("claim the next step", err)
	if next == nil || len(next.Messages) != 1 || next.Messages[0].ID != backend.ResultMessageID(tk.ID) {
		t.Fatalf("after the completion: step %+v; want the result to claim", next)
	}
}

// mustOK returns a check that fails t on an error, naming what failed.
func mustOK(t *testing.T) func(what string, err error) {
	return func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// startTask creates instance a, commits its first step with activity
// task 1 and claims the task: the time of it all, the task and its
// delivery.
func startTask(t *testing.T, be *postgres.Backend) (time.Time, *backend.ActivityTask, *backend.ActivityWorkItem) {
	t.Helper()
	ctx := t.Context()
	must := mustOK(t)
	t0 := time.Now().UTC()
	claim := &backend.ClaimParams{Owner: "test", LeaseDuration: time.Minute, Now: t0}
	must("create", be.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "a", Name: "orch", ExecutionID: "a-e1", Now: t0}))
	wi, err := be.ClaimOrchestrationStep(ctx, claim)
	must("claim", err)
	tk := &backend.ActivityTask{ID: backend.TaskMessageID("a", "a-e1", 1), InstanceID: "a", ExecutionID: "a-e1", TaskID: 1, Name: "act"}
	must("step", be.CompleteOrchestrationStep(ctx, &backend.CompleteOrchestrationStepParams{InstanceID: "a", ExecutionID: "a-e1",
		Attempt: wi.Attempt, Status: backend.StatusRunning, Now: t0, ConsumedMessageIDs: []string{wi.Messages[0].ID},
		NewEvents: []*backend.Event{{Type: backend.EventOrchestratorStarted, Timestamp: t0}, wi.Messages[0].Event,
			{Type: backend.EventTaskScheduled, Timestamp: t0, TaskID: 1, Name: "act"}},
		ActivityTasks: []*backend.ActivityTask{tk}}))
	awi, err := be.ClaimActivity(ctx, claim)
	must("claim the task", err)
	return t0, tk, awi
}

// completeAsync completes delivery awi of task tk in a goroutine; the
// channel gets CompleteActivity's error.
func completeAsync(t *testing.T, be *postgres.Backend, tk *backend.ActivityTask, awi *backend.ActivityWorkItem, t0 time.Time) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- be.CompleteActivity(t.Context(), &backend.CompleteActivityParams{TaskID: tk.ID, Attempt: awi.Attempt, Now: t0,
			Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: 1, Result: []byte(`"r"`), Attempt: awi.Attempt, Timestamp: t0}})
	}()
	return done
}

// waitForLockWait waits until one session other than holder (a PID, 0 for
// none) runs a statement of schema matching like while waiting for a
// lock, as pg_stat_activity shows it through conn. It fails t if done
// reports first (the completion returned while held) or after 30s. what
// names the row the completion waits for.
func waitForLockWait(t *testing.T, conn *pgx.Conn, schema, like string, holder uint32, done <-chan error, what string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		var waiting int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1
				AND query LIKE '%' || $2 || '%' AND pid <> $3`, like, schema, int64(holder)).Scan(&waiting); err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		if waiting == 1 {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("the completion returned (%v) while %s was held", err, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the completion never waited for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFusedStepAndAStaleCompletion runs a fused commit (CompleteActivityStep)
// of a task's second delivery while the first, stale, delivery completes:
// the stale completion waits (for the instance's row, which the fused
// claim holds FOR UPDATE) and the fused step, which sends a timer to its
// own instance (a message into the inbox, whose statement locks the
// instance's row FOR UPDATE), commits in one try. With the claim holding
// the row only FOR NO KEY UPDATE, the stale completion took the row in KEY
// SHARE mode and waited for the task's row, which the fused transaction
// held; the fused transaction's inbox write then waited for the KEY SHARE:
// a deadlock, which PostgreSQL broke by aborting the fused transaction
// (its backend detects first, deadlock_timeout 50ms against the other's
// 10s), and the step's writes were rolled back. Without the task's
// instance in the completion's parameters, the backend reads it first
// and claims the same way.
func TestFusedStepAndAStaleCompletion(t *testing.T) {
	for _, named := range []bool{true, false} {
		t.Run(fmt.Sprintf("instance named %v", named), func(t *testing.T) { testFusedStepAndAStaleCompletion(t, named) })
	}
}

func testFusedStepAndAStaleCompletion(t *testing.T, named bool) {
	url := testURL(t)
	schema := freshSchema(t, url)
	fused := open(t, url+"&deadlock_timeout=50ms", schema, &postgres.Options{})
	stale := open(t, url+"&deadlock_timeout=10s", schema, &postgres.Options{})
	ctx := t.Context()
	must := mustOK(t)
	t0, tk, first := startTask(t, fused)
	t1 := t0.Add(2 * time.Minute) // the first delivery's lease has lapsed
	claim := &backend.ClaimParams{Owner: "test", LeaseDuration: time.Minute, Now: t1}
	second, err := fused.ClaimActivity(ctx, claim)
	must("claim the task again", err)
	if second == nil || second.Attempt != first.Attempt+1 {
		t.Fatalf("second delivery %+v, want attempt %d", second, first.Attempt+1)
	}

	watch, err := pgx.Connect(ctx, url)
	must("connect", err)
	defer watch.Close(context.Background())
	var done <-chan error
	calls := 0
	fireAt := t1.Add(time.Hour)
	timer := &backend.Message{ID: backend.ResultMessageID(backend.TaskMessageID("a", "a-e1", 2)), InstanceID: "a",
		ExecutionID: "a-e1", VisibleAt: fireAt, Event: &backend.Event{Type: backend.EventTimerFired, TaskID: 2, FireAt: fireAt, Timestamp: fireAt}}
	p := &backend.CompleteActivityParams{TaskID: tk.ID, Attempt: second.Attempt, Now: t1,
		Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: 1, Result: []byte(`"r2"`), Attempt: second.Attempt, Timestamp: t1}}
	if named {
		p.InstanceID, p.ExecutionID = "a", "a-e1"
	}
	out, err := fused.CompleteActivityStep(ctx, p, claim, func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		calls++
		if done == nil {
			// The step holds the instance and the task: the stale
			// delivery's completion must wait.
			done = completeAsync(t, stale, tk, first, t0)
			waitForLockWait(t, watch, schema, "%FOR KEY SHARE%", 0, done, "the fused transaction's locks")
		}
		events := []*backend.Event{{Type: backend.EventOrchestratorStarted, Timestamp: t1}}
		ids := []string{}
		for _, m := range wi.Messages {
			ids = append(ids, m.ID)
			events = append(events, m.Event)
		}
		events = append(events, &backend.Event{Type: backend.EventTimerCreated, TaskID: 2, FireAt: fireAt, Timestamp: t1})
		return &backend.StepCommit{Params: &backend.CompleteOrchestrationStepParams{InstanceID: "a", ExecutionID: "a-e1",
			Attempt: wi.Attempt, Status: backend.StatusRunning, Now: t1, ConsumedMessageIDs: ids, NewEvents: events,
			Messages: []*backend.Message{timer}}}
	})
	must("the fused step", err)
	if out == nil || !out.Committed || calls != 1 {
		t.Fatalf("fused step %+v after %d runs; want it committed, run once", out, calls)
	}
	if err := <-done; !errors.Is(err, backend.ErrLeaseLost) {
		t.Fatalf("the stale completion: %v, want ErrLeaseLost", err)
	}
	h, err := fused.GetHistory(ctx, "a")
	must("history", err)
	if n := len(h); n != 6 || h[4].Type != backend.EventTaskCompleted || string(h[4].Result) != `"r2"` {
		t.Fatalf("history %d events; want the second delivery's result and the timer", n)
	}
}
