package backendtest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// startMarkTests check the start marks that make at-most-once precise: a
// delivery marks itself started (StartActivity, StartOrchestrationStep)
// before it runs code that must run at most once; the next deliveries see
// the mark, and the deliveries released unstarted; only the newest
// delivery may start.
func startMarkTests() []test {
	return []test{
		{"ActivityMarkSeenByNextDelivery", testActivityStartMark},
		{"ActivityReleasedUnstarted", testActivityReleasedUnstarted},
		{"ActivityStartFenced", testActivityStartFenced},
		{"OnlyNewestDeliveryStarts", testOnlyNewestStarts},
		{"EagerClaimUnstarted", testEagerClaimUnstarted},
		{"StepMarkUntilCommit", testStepStartMark},
		{"StepStartFenced", testStepStartFenced},
		{"MarksPersist", testStartMarksPersist},
	}
}

// testActivityStartMark: a delivery that lapses without marking leaves no
// mark; one that marks is seen by every later delivery as StartedAttempt.
func testActivityStartMark(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	id := tasks[0].ID
	first := e.claimActivity(id, e.at(time.Second))
	if first.StartedAttempt != 0 || first.Released != 0 {
		t.Fatalf("first delivery: StartedAttempt %d, Released %d; want 0, 0", first.StartedAttempt, first.Released)
	}
	// Lapses unstarted (a crash before the code): no mark.
	second := e.claimActivity(id, e.at(2*time.Minute))
	if second.Attempt != 2 || second.StartedAttempt != 0 || second.Released != 0 {
		t.Fatalf("after a lapsed unstarted delivery: attempt %d, StartedAttempt %d, Released %d; want 2, 0, 0",
			second.Attempt, second.StartedAttempt, second.Released)
	}
	e.noErr("StartActivity", e.b.StartActivity(e.ctx, &backend.StartParams{ID: id, Attempt: int64(second.Attempt)}))
	// A repeated start of the same delivery is harmless.
	e.noErr("StartActivity again", e.b.StartActivity(e.ctx, &backend.StartParams{ID: id, Attempt: int64(second.Attempt)}))
	// Handed back after starting (Unstarted is ignored for a started
	// delivery).
	e.noErr("AbandonActivity", e.b.AbandonActivity(e.ctx, &backend.AbandonParams{ID: id, Attempt: int64(second.Attempt), Unstarted: true}))
	third := e.claimActivity(id, e.at(3*time.Minute))
	if third.Attempt != 3 || third.StartedAttempt != 2 || third.Released != 0 {
		t.Fatalf("after a started delivery: attempt %d, StartedAttempt %d, Released %d; want 3, 2, 0",
			third.Attempt, third.StartedAttempt, third.Released)
	}
	fourth := e.claimActivity(id, e.at(5*time.Minute))
	if fourth.StartedAttempt != 2 {
		t.Fatalf("two deliveries after the start: StartedAttempt %d, want 2 (the mark stays)", fourth.StartedAttempt)
	}
	e.noErr("CompleteActivity", e.b.CompleteActivity(e.ctx, completed(fourth, e.at(5*time.Minute))))
}

// testActivityReleasedUnstarted: AbandonParams.Unstarted counts the
// delivery as released; a plain abandon does not, nor does Unstarted for a
// delivery that marked itself started.
func testActivityReleasedUnstarted(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	id := tasks[0].ID
	now := e.at(time.Second)
	for i, tc := range []struct {
		start, unstarted  bool
		released, started int // what this delivery sees
	}{
		{false, true, 0, 0},
		{false, false, 1, 0},
		{true, true, 1, 0},
		{false, true, 1, 3},
		{false, false, 2, 3},
	} {
		wi := e.claimActivity(id, now)
		if wi.Attempt != i+1 || wi.Released != tc.released || wi.StartedAttempt != tc.started {
			t.Fatalf("delivery %d: attempt %d, Released %d, StartedAttempt %d; want %d, %d, %d",
				i+1, wi.Attempt, wi.Released, wi.StartedAttempt, i+1, tc.released, tc.started)
		}
		if tc.start {
			e.noErr("StartActivity", e.b.StartActivity(e.ctx, &backend.StartParams{ID: id, Attempt: int64(wi.Attempt)}))
		}
		e.noErr("AbandonActivity", e.b.AbandonActivity(e.ctx,
			&backend.AbandonParams{ID: id, Attempt: int64(wi.Attempt), Unstarted: tc.unstarted}))
	}
}

// testActivityStartFenced: StartActivity takes the newest delivery only;
// a stale, an unknown and an undelivered task are ErrLeaseLost.
func testActivityStartFenced(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 2)
	e.wantErr("StartActivity of an undelivered task",
		e.b.StartActivity(e.ctx, &backend.StartParams{ID: tasks[1].ID, Attempt: 1}), backend.ErrLeaseLost)
	e.wantErr("StartActivity of an unknown task",
		e.b.StartActivity(e.ctx, &backend.StartParams{ID: "no-such-task", Attempt: 1}), backend.ErrLeaseLost)
	first := e.claimActivity(tasks[0].ID, e.at(time.Second))
	other := e.claimActivity(tasks[1].ID, e.at(time.Second))
	e.noErr("CompleteActivity", e.b.CompleteActivity(e.ctx, completed(other, e.at(time.Second))))
	second := e.claimActivity(tasks[0].ID, e.at(2*time.Minute)) // the first lapsed
	e.wantErr("StartActivity of a superseded delivery",
		e.b.StartActivity(e.ctx, &backend.StartParams{ID: first.Task.ID, Attempt: int64(first.Attempt)}), backend.ErrLeaseLost)
	e.noErr("StartActivity of the newest delivery",
		e.b.StartActivity(e.ctx, &backend.StartParams{ID: second.Task.ID, Attempt: int64(second.Attempt)}))
	e.noErr("CompleteActivity", e.b.CompleteActivity(e.ctx, completed(second, e.at(2*time.Minute))))
	e.wantErr("StartActivity of a completed task",
		e.b.StartActivity(e.ctx, &backend.StartParams{ID: second.Task.ID, Attempt: int64(second.Attempt)}), backend.ErrLeaseLost)
	if err := e.b.StartActivity(e.ctx, &backend.StartParams{ID: "", Attempt: 1}); err == nil {
		t.Fatal("StartActivity with an empty ID: nil error")
	}
	if err := e.b.StartActivity(e.ctx, nil); err == nil {
		t.Fatal("StartActivity(nil): nil error")
	}
}

// testOnlyNewestStarts: deliveries 1..n of a task, each claimed after the
// previous one lapsed, all try to start at once: exactly the newest one
// does, so two deliveries never both start, and the next delivery sees it.
func testOnlyNewestStarts(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	id := tasks[0].ID
	const n = 8
	var wis []*backend.ActivityWorkItem
	for i := range n {
		wis = append(wis, e.claimActivity(id, e.at(time.Duration(i)*2*lease+time.Second)))
	}
	var wg sync.WaitGroup
	started := make(chan int, n)
	for _, wi := range wis {
		wg.Go(func() {
			err := e.b.StartActivity(e.ctx, &backend.StartParams{ID: id, Attempt: int64(wi.Attempt)})
			switch {
			case err == nil:
				started <- wi.Attempt
			case !errors.Is(err, backend.ErrLeaseLost):
				t.Errorf("StartActivity(attempt %d): %v", wi.Attempt, err)
			}
		})
	}
	wg.Wait()
	close(started)
	var got []int
	for a := range started {
		got = append(got, a)
	}
	if len(got) != 1 || got[0] != n {
		t.Fatalf("deliveries that started: %v; want only the newest, %d", got, n)
	}
	next := e.claimActivity(id, e.at(time.Duration(n)*2*lease+time.Second))
	if next.StartedAttempt != n {
		t.Fatalf("next delivery: StartedAttempt %d, want %d", next.StartedAttempt, n)
	}
}

// testEagerClaimUnstarted: a task claimed in the commit that schedules it
// and lost before it started (a crash right after the commit) leaves no
// mark: the next delivery is attempt 2 with StartedAttempt 0.
func testEagerClaimUnstarted(t *testing.T, e *env) {
	ec, ok := e.b.(backend.StepActivityClaimer)
	if !ok {
		t.Skip("backend has no eager activity dispatch")
	}
	c := e.create("a", nil)
	wi := e.claimStep("a", e.t0)
	p := stepParams(wi, e.t0)
	tk := task(c, 1)
	tk.Options = backend.ActivityOptions{AtMostOnce: true}
	p.ActivityTasks = []*backend.ActivityTask{tk}
	claim := e.claimParams(e.t0)
	items, err := ec.CompleteOrchestrationStepClaim(e.ctx, p, claim, 1)
	if err != nil || len(items) != 1 {
		t.Fatalf("CompleteOrchestrationStepClaim: %d items, %v", len(items), err)
	}
	if items[0].StartedAttempt != 0 || items[0].Released != 0 {
		t.Fatalf("eager claim: StartedAttempt %d, Released %d; want 0, 0", items[0].StartedAttempt, items[0].Released)
	}
	next := e.claimActivity(tk.ID, e.at(2*lease))
	if next.Attempt != 2 || next.StartedAttempt != 0 {
		t.Fatalf("after the eager claim lapsed unstarted: attempt %d, StartedAttempt %d; want 2, 0", next.Attempt, next.StartedAttempt)
	}
}

// testStepStartMark: a step delivery that marks itself started is seen by
// the next deliveries of the same step; a committed step clears it; a
// delivery that did not mark leaves none.
func testStepStartMark(t *testing.T, e *env) {
	e.create("a", nil)
	first := e.claimStep("a", e.t0)
	if first.StartedAttempt != 0 {
		t.Fatalf("first step delivery: StartedAttempt %d, want 0", first.StartedAttempt)
	}
	e.noErr("AbandonOrchestrationStep", e.b.AbandonOrchestrationStep(e.ctx,
		&backend.AbandonParams{ID: "a", ExecutionID: first.Instance.ExecutionID, Attempt: first.Attempt}))
	second := e.claimStep("a", e.at(time.Second))
	if second.StartedAttempt != 0 || second.Deliveries != 2 {
		t.Fatalf("after an unstarted hand-back: StartedAttempt %d, Deliveries %d; want 0, 2", second.StartedAttempt, second.Deliveries)
	}
	e.noErr("StartOrchestrationStep", e.b.StartOrchestrationStep(e.ctx,
		&backend.StartParams{ID: "a", ExecutionID: second.Instance.ExecutionID, Attempt: second.Attempt}))
	third := e.claimStep("a", e.at(time.Second+2*lease)) // the second lapsed
	if third.StartedAttempt != second.Attempt {
		t.Fatalf("after a started delivery: StartedAttempt %d, want %d", third.StartedAttempt, second.Attempt)
	}
	e.commit(third, e.at(time.Second+2*lease), nil)
	e.enqueue(raised("a", "m1", "go"))
	next := e.claimStep("a", e.at(time.Second+3*lease))
	if next.StartedAttempt != 0 || next.Deliveries != 1 {
		t.Fatalf("the next step: StartedAttempt %d, Deliveries %d; want 0, 1 (a committed step clears the mark)",
			next.StartedAttempt, next.Deliveries)
	}
}

// testStepStartFenced: StartOrchestrationStep takes the newest delivery
// of the current execution only.
func testStepStartFenced(t *testing.T, e *env) {
	e.create("a", nil)
	first := e.claimStep("a", e.t0)
	second := e.claimStep("a", e.at(2*lease))
	exec := first.Instance.ExecutionID
	e.wantErr("StartOrchestrationStep of a superseded delivery", e.b.StartOrchestrationStep(e.ctx,
		&backend.StartParams{ID: "a", ExecutionID: exec, Attempt: first.Attempt}), backend.ErrLeaseLost)
	e.wantErr("StartOrchestrationStep of another execution", e.b.StartOrchestrationStep(e.ctx,
		&backend.StartParams{ID: "a", ExecutionID: "other", Attempt: second.Attempt}), backend.ErrLeaseLost)
	e.wantErr("StartOrchestrationStep of an unknown instance", e.b.StartOrchestrationStep(e.ctx,
		&backend.StartParams{ID: "nobody", Attempt: 1}), backend.ErrLeaseLost)
	e.noErr("StartOrchestrationStep", e.b.StartOrchestrationStep(e.ctx,
		&backend.StartParams{ID: "a", ExecutionID: exec, Attempt: second.Attempt}))
	e.commit(second, e.at(2*lease), nil)
	e.wantErr("StartOrchestrationStep of a committed delivery", e.b.StartOrchestrationStep(e.ctx,
		&backend.StartParams{ID: "a", ExecutionID: exec, Attempt: second.Attempt}), backend.ErrLeaseLost)
}

// testStartMarksPersist: marks and released counts survive a reopen.
func testStartMarksPersist(t *testing.T, e *env) {
	e.needReopen()
	_, tasks := e.startWithTasks("a", 2)
	now := e.at(time.Second)
	a := e.claimActivity(tasks[0].ID, now)
	e.noErr("StartActivity", e.b.StartActivity(e.ctx, &backend.StartParams{ID: a.Task.ID, Attempt: int64(a.Attempt)}))
	b := e.claimActivity(tasks[1].ID, now)
	e.noErr("AbandonActivity", e.b.AbandonActivity(e.ctx, &backend.AbandonParams{ID: b.Task.ID, Attempt: int64(b.Attempt), Unstarted: true}))
	e.reopen()
	later := e.at(2 * lease)
	seen := map[string]*backend.ActivityWorkItem{}
	for range 2 {
		wi := e.tryClaimActivity(later)
		if wi == nil {
			t.Fatal("a task is missing after the reopen")
		}
		seen[wi.Task.ID] = wi
	}
	if wi := seen[tasks[0].ID]; wi == nil || wi.StartedAttempt != 1 {
		t.Fatalf("started task after reopen: %+v; want StartedAttempt 1", wi)
	}
	if wi := seen[tasks[1].ID]; wi == nil || wi.Released != 1 || wi.StartedAttempt != 0 {
		t.Fatalf("released task after reopen: %+v; want Released 1, StartedAttempt 0", wi)
	}
}
