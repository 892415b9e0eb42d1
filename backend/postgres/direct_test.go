package postgres_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
)

// TestFusedResultsSkipTheInbox runs a chain of activities whose results are
// committed with the steps that consume them (fused commits) and checks,
// on the database, that those results never went through the inbox (a
// trigger counts the inbox's inserts: only the start's message goes there)
// and that the instance's row was updated in place (HOT updates, no index
// entries): with the result in the inbox, every step wrote the row's ready
// summary twice, and the claim indexes held the lease, so that each of the
// three updates of a step wrote all six indexes.
func TestFusedResultsSkipTheInbox(t *testing.T) {
	url := testURL(t)
	schema := freshSchema(t, url)
	be, err := postgres.Open(t.Context(), url, &postgres.Options{Schema: schema, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = be.Close()
		}
	}()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	s := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, `CREATE TABLE `+s+`.inbox_inserts (id text);
		CREATE FUNCTION `+s+`.count_insert() RETURNS trigger LANGUAGE plpgsql AS
			$$BEGIN INSERT INTO `+s+`.inbox_inserts VALUES (NEW.id); RETURN NEW; END$$;
		CREATE TRIGGER count_insert AFTER INSERT ON `+s+`.inbox FOR EACH ROW EXECUTE FUNCTION `+s+`.count_insert()`); err != nil {
		t.Fatal(err)
	}

	const steps = 30
	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "Next", func(_ duro.ActivityContext, i int) (int, error) { return i + 1, nil })
	duro.RegisterOrchestration(reg, "Chain", func(ctx *duro.OrchestrationContext, _ int) (int, error) {
		i := 0
		for range steps {
			if err := ctx.CallActivity("Next", i).Await(&i); err != nil {
				return 0, err
			}
		}
		return i, nil
	})
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c := duro.NewClient(be, nil)
	id, err := c.Start(ctx, "Chain", 0)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if inst, err := c.Wait(wctx, id); err != nil || inst.Status != duro.StatusCompleted {
		t.Fatalf("instance %+v, %v", inst, err)
	}
	if err := w.Stop(wctx); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	// Most results are committed fused; under load the worker leaves a few
	// to the unfused path (their activity claimed by its loop, not eagerly
	// by the step), and those go through the inbox, as the checks count.
	if st.FusedCommits < steps/2 {
		t.Fatalf("%d fused commits for %d activities; the test needs at least half of them: %+v", st.FusedCommits, steps, st)
	}
	var inserts int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+s+`.inbox_inserts`).Scan(&inserts); err != nil {
		t.Fatal(err)
	}
	if want := 1 + steps - int(st.FusedCommits); inserts != want {
		t.Errorf("%d messages went through the inbox with %d fused commits of %d results; want %d (the start's, and the results not fused)",
			inserts, st.FusedCommits, steps, want)
	}

	// The backend's connections report their statistics as they end.
	_ = be.Close()
	closed = true
	var upd, hot int64
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := conn.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
			WHERE schemaname = $1 AND relname = 'instances'`, schema).Scan(&upd, &hot); err != nil {
			t.Fatal(err)
		}
		if upd >= 2*steps || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if upd < 2*steps {
		t.Fatalf("the statistics show %d updates of the instance's row, want at least %d (a claim and a step per activity)", upd, 2*steps)
	}
	// A fused step's updates are HOT (up to 10% of all updates may not
	// be); a result that was not fused moves the ready summary twice (into
	// the inbox and out of it), two updates that change the claim indexes.
	unfused := int64(steps) - int64(st.FusedCommits)
	if cold := upd - hot; cold > 2*unfused+upd/10 {
		t.Errorf("%d of %d updates of the instance's row were not HOT, with %d results not fused; want at most %d",
			cold, upd, unfused, 2*unfused+upd/10)
	}
	t.Logf("instance row: %d updates, %d HOT; inbox: %d inserts; %d fused commits", upd, hot, inserts, st.FusedCommits)
}

// TestFusedResultBehindAFullStep caps a step at one message and raises an
// event to the instance while its activity runs: the step the activity's
// completion claims takes the event, the one message it may take, and the
// result goes to the inbox behind it, for the next step (without that, the
// result is lost).
func TestFusedResultBehindAFullStep(t *testing.T) {
	url := testURL(t)
	be := open(t, url, freshSchema(t, url), &postgres.Options{MaxStepMessages: 1})
	ctx := t.Context()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	claim := func(at time.Duration) *backend.ClaimParams {
		return &backend.ClaimParams{Owner: "test", LeaseDuration: time.Minute, Now: t0.Add(at)}
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	step := func(wi *backend.OrchestrationWorkItem, at time.Duration) *backend.CompleteOrchestrationStepParams {
		p := &backend.CompleteOrchestrationStepParams{InstanceID: wi.Instance.ID, ExecutionID: wi.Instance.ExecutionID,
			Attempt: wi.Attempt, Status: backend.StatusRunning, Now: t0.Add(at),
			NewEvents: []*backend.Event{{Type: backend.EventOrchestratorStarted, Timestamp: t0.Add(at)}}}
		for _, m := range wi.Messages {
			p.ConsumedMessageIDs = append(p.ConsumedMessageIDs, m.ID)
			p.NewEvents = append(p.NewEvents, m.Event)
		}
		return p
	}
	ids := func(wi *backend.OrchestrationWorkItem) []string {
		var out []string
		for _, m := range wi.Messages {
			out = append(out, m.ID)
		}
		return out
	}
	must("create", be.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "a", Name: "orch", ExecutionID: "a-e1", Now: t0}))
	wi, err := be.ClaimOrchestrationStep(ctx, claim(0))
	must("claim the first step", err)
	tk := &backend.ActivityTask{ID: backend.TaskMessageID("a", "a-e1", 1), InstanceID: "a", ExecutionID: "a-e1", TaskID: 1, Name: "act"}
	p := step(wi, 0)
	p.ActivityTasks = []*backend.ActivityTask{tk}
	p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventTaskScheduled, Timestamp: t0, TaskID: 1, Name: "act"})
	must("commit the first step", be.CompleteOrchestrationStep(ctx, p))
	awi, err := be.ClaimActivity(ctx, claim(time.Second))
	must("claim the task", err)
	if awi == nil || awi.Task.ID != tk.ID {
		t.Fatalf("claimed %+v, want task %s", awi, tk.ID)
	}
	must("raise", be.EnqueueMessage(ctx, &backend.Message{ID: "news", InstanceID: "a",
		Event: &backend.Event{Type: backend.EventEventRaised, Name: "go", Input: []byte(`"news"`)}}))
	result := backend.ResultMessageID(tk.ID)
	var given []string
	out, err := be.CompleteActivityStep(ctx, &backend.CompleteActivityParams{TaskID: tk.ID, Attempt: awi.Attempt,
		InstanceID: "a", ExecutionID: "a-e1", Now: t0.Add(2 * time.Second),
		Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: 1, Result: []byte(`"done"`), Attempt: awi.Attempt, Timestamp: t0.Add(2 * time.Second)}},
		claim(2*time.Second), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
			given = ids(wi)
			return &backend.StepCommit{Params: step(wi, 2*time.Second)}
		})
	must("CompleteActivityStep", err)
	if out == nil || out.Step == nil || !out.Committed {
		t.Fatalf("outcome %+v; want the step committed with the completion", out)
	}
	if !slices.Equal(given, []string{"news"}) {
		t.Fatalf("the fused step was given %q, want the event alone (one message per step)", given)
	}
	next, err := be.ClaimOrchestrationStep(ctx, claim(3*time.Second))
	must("claim the next step", err)
	if next == nil || !slices.Equal(ids(next), []string{result}) {
		t.Fatalf("next step %+v; want the result %s", next, result)
	}
	must("commit the next step", be.CompleteOrchestrationStep(ctx, step(next, 3*time.Second)))
}
