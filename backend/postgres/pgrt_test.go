package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
)

// stepper runs steps of instance i1 (execution i1-e1) in the tests below.
type stepper struct {
	t   *testing.T
	ctx context.Context
}

// step claims the step of i1 on be, records the claimed messages and an
// EventRaised named name, and completes with status.
func (s stepper) step(be *postgres.Backend, name string, status backend.Status) *backend.OrchestrationWorkItem {
	s.t.Helper()
	wi, err := be.ClaimOrchestrationStep(s.ctx, claim(t0))
	if err != nil || wi == nil {
		s.t.Fatalf("claim for %s: %+v %v", name, wi, err)
	}
	p := s.params(wi, name, status)
	if err := be.CompleteOrchestrationStep(s.ctx, p); err != nil {
		s.t.Fatal(err)
	}
	return wi
}

// params are the completion of wi that step makes.
func (s stepper) params(wi *backend.OrchestrationWorkItem, name string, status backend.Status) *backend.CompleteOrchestrationStepParams {
	p := &backend.CompleteOrchestrationStepParams{InstanceID: wi.Instance.ID, ExecutionID: wi.Instance.ExecutionID,
		Attempt: wi.Attempt, Status: status, Now: t0}
	for _, m := range wi.Messages {
		p.ConsumedMessageIDs = append(p.ConsumedMessageIDs, m.ID)
		p.NewEvents = append(p.NewEvents, m.Event)
	}
	p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventEventRaised, Name: name, Timestamp: t0})
	if status == backend.StatusCompleted {
		p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventExecutionCompleted,
			Status: backend.StatusCompleted, Timestamp: t0})
	}
	return p
}

func (s stepper) raise(be *postgres.Backend, id string) {
	s.t.Helper()
	if err := be.EnqueueMessage(s.ctx, &backend.Message{ID: id, InstanceID: "i1",
		Event: &backend.Event{Type: backend.EventEventRaised, Name: id, Timestamp: t0}}); err != nil {
		s.t.Fatal(err)
	}
}

// names are the names of the events of h.
func names(h []*backend.Event) string {
	var b strings.Builder
	for _, e := range h {
		b.WriteString(string(e.Type) + ":" + e.Name + " ")
	}
	return b.String()
}

// TestHistoryCacheAcrossBackends checks that a claim never hands out a
// cached history prefix that another backend (another process) replaced:
// instance i1 is stepped through backend a, whose cache then holds its
// history; backend b, on the same schema, appends to it (a's next claim
// reads the new rows after its prefix), then finishes it, purges it,
// creates it again with the same execution ID and steps it to a history
// as long as the one a cached; a's next claim must see b's history.
func TestHistoryCacheAcrossBackends(t *testing.T) {
	url := testURL(t)
	schema := freshSchema(t, url)
	a := open(t, url, schema, nil)
	b := open(t, url, schema, nil)
	s := stepper{t, t.Context()}
	check := func(wi *backend.OrchestrationWorkItem, want string) {
		t.Helper()
		h, err := b.GetHistory(s.ctx, "i1")
		if err != nil {
			t.Fatal(err)
		}
		if got := names(wi.History); got != want || !strings.HasPrefix(names(h), got) {
			t.Fatalf("claimed history %q, stored %q, want %q", got, names(h), want)
		}
	}
	create(t, a, "i1")
	s.step(a, "a1", backend.StatusRunning)
	s.raise(a, "m1")
	wi := s.step(a, "a2", backend.StatusRunning) // a caches [ExecutionStarted, a1]
	check(wi, "ExecutionStarted:orch EventRaised:a1 ")
	// b appends; a's prefix is still the stored one.
	s.raise(b, "m2")
	s.step(b, "b1", backend.StatusRunning)
	s.raise(b, "m3")
	wi = s.step(a, "a3", backend.StatusRunning)
	check(wi, "ExecutionStarted:orch EventRaised:a1 EventRaised:m1 EventRaised:a2 EventRaised:m2 EventRaised:b1 ")
	// a caches those 6 events. b replaces the history with one of the
	// same execution ID and the same length.
	s.raise(b, "m4")
	s.step(b, "end", backend.StatusCompleted)
	if err := b.PurgeInstance(s.ctx, "i1"); err != nil {
		t.Fatal(err)
	}
	create(t, b, "i1")
	for _, n := range []string{"c1", "c2", "c3"} {
		s.step(b, n, backend.StatusRunning)
		s.raise(b, "r"+n)
	}
	h, err := b.GetHistory(s.ctx, "i1")
	if err != nil || len(h) != 6 {
		t.Fatalf("b's new history: %d events, %v", len(h), err)
	}
	wi, err = a.ClaimOrchestrationStep(s.ctx, claim(t0))
	if err != nil || wi == nil {
		t.Fatalf("claim: %+v %v", wi, err)
	}
	check(wi, "ExecutionStarted:orch EventRaised:c1 EventRaised:rc1 EventRaised:c2 EventRaised:rc2 EventRaised:c3 ")
}

// rowState is what a step writes, read straight from the tables: i1's
// history length, inbox size and activity tasks, and its row's completed
// attempt and lease owner.
type rowState struct {
	history, inbox, tasks int
	completed             int64
	owner                 string
}

func readState(t *testing.T, be *postgres.Backend) rowState {
	t.Helper()
	var st rowState
	q := func(sql string, dest ...any) {
		t.Helper()
		if err := be.Pool().QueryRow(t.Context(), strings.ReplaceAll(sql, "{s}", be.Schema()), "i1").Scan(dest...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	q(`SELECT count(*) FROM {s}.history WHERE instance_id = $1`, &st.history)
	q(`SELECT count(*) FROM {s}.inbox WHERE instance_id = $1`, &st.inbox)
	q(`SELECT count(*) FROM {s}.activity_tasks WHERE instance_id = $1`, &st.tasks)
	q(`SELECT completed_attempt, lock_owner FROM {s}.instances WHERE id = $1`, &st.completed, &st.owner)
	return st
}

// withTask adds an activity task to a step's completion.
func withTask(p *backend.CompleteOrchestrationStepParams) *backend.CompleteOrchestrationStepParams {
	p.ActivityTasks = append(p.ActivityTasks, &backend.ActivityTask{ID: p.InstanceID + "-t1", InstanceID: p.InstanceID,
		ExecutionID: p.ExecutionID, TaskID: 1, Name: "act", Input: []byte(`1`)})
	return p
}

// stepFixture creates i1 and claims its first step.
func stepFixture(t *testing.T) (*postgres.Backend, stepper, *backend.OrchestrationWorkItem) {
	url := testURL(t)
	be := open(t, url, freshSchema(t, url), nil)
	s := stepper{t, t.Context()}
	create(t, be, "i1")
	wi, err := be.ClaimOrchestrationStep(s.ctx, claim(t0))
	if err != nil || wi == nil {
		t.Fatalf("claim: %+v %v", wi, err)
	}
	return be, s, wi
}

// TestOneTripStepFenced checks that a stale delivery's completion (a
// simple step, written in one round trip fenced in SQL) commits nothing:
// delivery 1 is abandoned and delivery 2 claimed; delivery 1's completion
// fails with ErrLeaseLost and leaves the history, inbox, tasks and lease
// as they were; delivery 2's then commits.
func TestOneTripStepFenced(t *testing.T) {
	be, s, wi1 := stepFixture(t)
	if err := be.AbandonOrchestrationStep(s.ctx, &backend.AbandonParams{ID: "i1", Attempt: wi1.Attempt,
		ExecutionID: wi1.Instance.ExecutionID}); err != nil {
		t.Fatal(err)
	}
	wi2, err := be.ClaimOrchestrationStep(s.ctx, claim(t0))
	if err != nil || wi2 == nil || wi2.Attempt != wi1.Attempt+1 {
		t.Fatalf("second claim: %+v %v", wi2, err)
	}
	before := readState(t, be)
	err = be.CompleteOrchestrationStep(s.ctx, withTask(s.params(wi1, "stale", backend.StatusRunning)))
	if !errors.Is(err, backend.ErrLeaseLost) {
		t.Fatalf("stale completion: %v, want ErrLeaseLost", err)
	}
	if after := readState(t, be); after != before {
		t.Fatalf("a stale completion changed the tables: %+v, before %+v", after, before)
	}
	if err := be.CompleteOrchestrationStep(s.ctx, withTask(s.params(wi2, "live", backend.StatusRunning))); err != nil {
		t.Fatal(err)
	}
	if st := readState(t, be); st != (rowState{history: 2, inbox: 0, tasks: 1, completed: wi2.Attempt}) {
		t.Fatalf("after the live completion: %+v", st)
	}
}

// TestStepFailsMidBatch checks that a step whose pipeline fails at a
// statement after others ran (a CHECK constraint on the instance row,
// which is written after the inbox and the history) commits none of it,
// returns the statement's error, and leaves the lease with the delivery,
// which then completes the step.
func TestStepFailsMidBatch(t *testing.T) {
	be, s, wi := stepFixture(t)
	if _, err := be.Pool().Exec(s.ctx, `ALTER TABLE `+be.Schema()+`.instances
		ADD CONSTRAINT no_boom CHECK (custom_status IS DISTINCT FROM 'boom'::bytea)`); err != nil {
		t.Fatal(err)
	}
	before := readState(t, be)
	p := withTask(s.params(wi, "x", backend.StatusRunning))
	p.CustomStatus = []byte("boom")
	err := be.CompleteOrchestrationStep(s.ctx, p)
	if err == nil || !strings.Contains(err.Error(), "no_boom") || errors.Is(err, backend.ErrLeaseLost) {
		t.Fatalf("completion: %v, want the no_boom violation", err)
	}
	if after := readState(t, be); after != before || after.owner == "" {
		t.Fatalf("a failed step changed the tables: %+v, before %+v", after, before)
	}
	p.CustomStatus = []byte("fine")
	if err := be.CompleteOrchestrationStep(s.ctx, p); err != nil {
		t.Fatal(err)
	}
	if st := readState(t, be); st != (rowState{history: 2, inbox: 0, tasks: 1, completed: wi.Attempt}) {
		t.Fatalf("after the completion: %+v", st)
	}
}

// TestStepCommitFails checks a step whose COMMIT, sent in the step's one
// pipeline, fails (a deferred constraint trigger refuses the history): the
// error is reported as a commit failure, nothing is committed, and the
// delivery can complete the step once the trigger is gone.
func TestStepCommitFails(t *testing.T) {
	be, s, wi := stepFixture(t)
	sc := be.Schema()
	for _, sql := range []string{
		`CREATE FUNCTION ` + sc + `.refuse() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'test refuses the commit'; END $$`,
		`CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON ` + sc + `.history
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ` + sc + `.refuse()`,
	} {
		if _, err := be.Pool().Exec(s.ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	before := readState(t, be)
	p := withTask(s.params(wi, "x", backend.StatusRunning))
	err := be.CompleteOrchestrationStep(s.ctx, p)
	if err == nil || !strings.Contains(err.Error(), "commit: ") || !strings.Contains(err.Error(), "test refuses the commit") {
		t.Fatalf("completion: %v, want the commit's failure", err)
	}
	if after := readState(t, be); after != before {
		t.Fatalf("a step whose commit failed changed the tables: %+v, before %+v", after, before)
	}
	if _, err := be.Pool().Exec(s.ctx, `DROP TRIGGER refuse ON `+sc+`.history`); err != nil {
		t.Fatal(err)
	}
	if err := be.CompleteOrchestrationStep(s.ctx, p); err != nil {
		t.Fatal(err)
	}
	if st := readState(t, be); st != (rowState{history: 2, inbox: 0, tasks: 1, completed: wi.Attempt}) {
		t.Fatalf("after the completion: %+v", st)
	}
}

// TestStepReadySummary checks the ready summary (ready_at, ready_key) a
// step's commit leaves on its instance's row against the one recomputed
// from the inbox it leaves: the minimum visible_at and sort_at of the
// messages a claim may take, only the control ones while the instance is
// Suspended. Messages that arrive while the step runs stay in the inbox;
// a step that sends a message to its own instance (a timer) counts it too.
func TestStepReadySummary(t *testing.T) {
	later := t0.Add(time.Hour)
	cases := []struct {
		name    string
		status  backend.Status
		arrive  []*backend.Event // enqueued while the step runs
		timer   bool             // the step sends itself a timer, visible later
		wantNil bool             // nothing claimable or pending
	}{
		{name: "running/empty", status: backend.StatusRunning, wantNil: true},
		{name: "running/arrived", status: backend.StatusRunning,
			arrive: []*backend.Event{{Type: backend.EventEventRaised, Name: "e", Timestamp: t0}}},
		{name: "suspended/arrived", status: backend.StatusSuspended, wantNil: true,
			arrive: []*backend.Event{{Type: backend.EventEventRaised, Name: "e", Timestamp: t0}}},
		{name: "suspended/control", status: backend.StatusSuspended,
			arrive: []*backend.Event{{Type: backend.EventEventRaised, Name: "e", Timestamp: t0},
				{Type: backend.EventExecutionResumed, Timestamp: t0}}},
		{name: "running/timer", status: backend.StatusRunning, timer: true},
		{name: "running/timer+arrived", status: backend.StatusRunning, timer: true,
			arrive: []*backend.Event{{Type: backend.EventEventRaised, Name: "e", Timestamp: t0}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			be, s, wi := stepFixture(t)
			for i, ev := range c.arrive {
				if err := be.EnqueueMessage(s.ctx, &backend.Message{ID: fmt.Sprintf("m%d", i), InstanceID: "i1", Event: ev}); err != nil {
					t.Fatal(err)
				}
			}
			p := s.params(wi, "x", c.status)
			if c.status == backend.StatusSuspended {
				p.Suspension = &backend.Suspension{Reason: "test"}
			}
			if c.timer {
				p.Messages = append(p.Messages, &backend.Message{ID: "i1-timer", InstanceID: "i1", ExecutionID: wi.Instance.ExecutionID,
					VisibleAt: later, Event: &backend.Event{Type: backend.EventTimerFired, TaskID: 1, FireAt: later, Timestamp: t0}})
			}
			if err := be.CompleteOrchestrationStep(s.ctx, p); err != nil {
				t.Fatal(err)
			}
			var readyAt, readyKey, wantAt, wantKey *int64
			if err := be.Pool().QueryRow(s.ctx, strings.ReplaceAll(`SELECT i.ready_at, i.ready_key,
				(SELECT MIN(m.visible_at) FROM {s}.inbox m WHERE m.instance_id = i.id AND (i.status <> 'Suspended' OR m.control)),
				(SELECT MIN(m.sort_at) FROM {s}.inbox m WHERE m.instance_id = i.id AND (i.status <> 'Suspended' OR m.control))
				FROM {s}.instances i WHERE i.id = 'i1'`, "{s}", be.Schema())).Scan(&readyAt, &readyKey, &wantAt, &wantKey); err != nil {
				t.Fatal(err)
			}
			str := func(p *int64) string {
				if p == nil {
					return "NULL"
				}
				return fmt.Sprint(*p)
			}
			if str(readyAt) != str(wantAt) || str(readyKey) != str(wantKey) || (readyAt == nil) != c.wantNil {
				t.Fatalf("ready summary after the step: (%s, %s); the inbox gives (%s, %s); want nothing pending: %v",
					str(readyAt), str(readyKey), str(wantAt), str(wantKey), c.wantNil)
			}
		})
	}
}

// TestFusedStepWriteFails checks CompleteActivityStep when the step's
// writes fail (a CHECK constraint on the instance row, written after the
// completion's statements ran in the same transaction): nothing of the
// transaction commits, the completion is then made alone with a new claim
// of the step, which is handed back to be run afresh, and the delivery that
// holds that claim commits the step.
func TestFusedStepWriteFails(t *testing.T) {
	be, s, wi := stepFixture(t)
	if err := be.CompleteOrchestrationStep(s.ctx, withTask(s.params(wi, "first", backend.StatusRunning))); err != nil {
		t.Fatal(err)
	}
	awi, err := be.ClaimActivity(s.ctx, claim(t0))
	if err != nil || awi == nil {
		t.Fatalf("claim activity: %+v %v", awi, err)
	}
	if _, err := be.Pool().Exec(s.ctx, `ALTER TABLE `+be.Schema()+`.instances
		ADD CONSTRAINT no_boom CHECK (custom_status IS DISTINCT FROM 'boom'::bytea)`); err != nil {
		t.Fatal(err)
	}
	var given *backend.OrchestrationWorkItem
	out, err := be.CompleteActivityStep(s.ctx, &backend.CompleteActivityParams{TaskID: awi.Task.ID, Attempt: awi.Attempt,
		Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: 1, Result: []byte(`1`), Timestamp: t0}},
		claim(t0), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
			given = wi
			p := s.params(wi, "boom", backend.StatusRunning)
			p.CustomStatus = []byte("boom")
			return &backend.StepCommit{Params: p}
		})
	if err != nil {
		t.Fatalf("CompleteActivityStep: %v", err)
	}
	if given == nil || out.Committed || out.Step == nil || out.Step == given {
		t.Fatalf("outcome %+v (run given %p); want a new claim, not committed", out, given)
	}
	if out.Step.Attempt != given.Attempt || len(out.Step.Messages) != 1 || out.Step.Messages[0].Event.Type != backend.EventTaskCompleted {
		t.Fatalf("new claim: attempt %d (run's %d), messages %+v; want the same attempt and the result", out.Step.Attempt, given.Attempt, out.Step.Messages)
	}
	st := readState(t, be)
	if st.tasks != 0 || st.inbox != 1 || st.owner == "" {
		t.Fatalf("after the failed step: %+v; want the task completed, its result in the inbox, the step leased", st)
	}
	if err := be.CompleteOrchestrationStep(s.ctx, s.params(out.Step, "fine", backend.StatusRunning)); err != nil {
		t.Fatal(err)
	}
	if st := readState(t, be); st.inbox != 0 || st.owner != "" {
		t.Fatalf("after the step: %+v", st)
	}
}
