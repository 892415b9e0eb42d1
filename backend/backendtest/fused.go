package backendtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// fusedTests check backend.ActivityStepClaimer; they skip on backends
// without it.
func fusedTests() []test {
	return []test{
		{"ClaimsTheStep", testFusedClaims},
		{"NothingWhenLeased", testFusedLeased},
		{"NothingWhileTasksRemain", testFusedFanIn},
		{"StaleClaimsNothing", testFusedStale},
		{"FencedLikeAnyClaim", testFusedFenced},
		{"NothingWhenSuspended", testFusedSuspended},
		{"NothingWhenFinished", testFusedFinished},
		{"ConcurrentFanOut", testFusedFanOut},
		{"ThroughTheSDK", testFusedSDK},
	}
}

func (e *env) fused() backend.ActivityStepClaimer {
	e.t.Helper()
	c, ok := e.b.(backend.ActivityStepClaimer)
	if !ok {
		e.t.Skip("backend does not implement backend.ActivityStepClaimer")
	}
	return c
}

// fusedOwner is the lease owner of the suite's fused claims, so that a
// claim another owner holds tells them apart.
const fusedOwner = "backendtest-fused"

// completeClaim completes wi at now with a fused claim at now.
func (e *env) completeClaim(wi *backend.ActivityWorkItem, now time.Time) (*backend.OrchestrationWorkItem, error) {
	e.t.Helper()
	claim := e.claimParams(now)
	claim.Owner = fusedOwner
	return e.fused().CompleteActivityClaim(e.ctx, completed(wi, now), claim)
}

// stepLease returns the owner and attempt of instance id's step lease, read
// with a claim-free view when the backend has one (InFlightReader).
func (e *env) stepLease(id string) (owner string, attempt int64, ok bool) {
	e.t.Helper()
	r, has := e.b.(backend.InFlightReader)
	if !has {
		return "", 0, false
	}
	f, err := r.InFlight(e.ctx, id)
	e.noErr("InFlight", err)
	return f.Step.Owner, f.Step.Attempt, true
}

func testFusedClaims(t *testing.T, e *env) {
	e.fused()
	_, tasks := e.startWithTasks("a", 1)
	before := e.history("a")
	awi := e.claimActivity(tasks[0].ID, e.at(time.Second))
	wi, err := e.completeClaim(awi, e.at(2*time.Second))
	e.noErr("CompleteActivityClaim", err)
	if wi == nil {
		t.Fatal("CompleteActivityClaim claimed nothing; the instance was ready and free")
	}
	if wi.Instance.ID != "a" || wi.Instance.ExecutionID != "a-e1" || wi.Instance.Status != backend.StatusRunning {
		t.Fatalf("claimed instance %+v", wi.Instance)
	}
	// A1: the first step was attempt 1; this claim is the next delivery.
	if wi.Attempt != 2 || wi.Deliveries != 1 || wi.StartedAttempt != 0 {
		t.Fatalf("Attempt %d, Deliveries %d, StartedAttempt %d; want 2, 1, 0", wi.Attempt, wi.Deliveries, wi.StartedAttempt)
	}
	e.wantTime("LeaseExpiresAt", wi.LeaseExpiresAt, e.at(2*time.Second).Add(lease))
	e.wantMessages(wi, backend.ResultMessageID(tasks[0].ID))
	e.wantEvents("the claimed step's history", wi.History, before)
	if got := wi.Messages[0].Event; got.Type != backend.EventTaskCompleted || string(got.Result) != fmt.Sprintf(`"result of attempt %d"`, awi.Attempt) {
		t.Fatalf("result message %+v", got)
	}
	if owner, attempt, ok := e.stepLease("a"); ok && (owner != fusedOwner || attempt != 2) {
		t.Fatalf("step lease held by %q attempt %d; want %q attempt 2", owner, attempt, fusedOwner)
	}
	// The lease keeps the step from every other claim until it lapses.
	e.noStep(e.at(30*time.Second), "the fused completion holds the step")
	e.noActivity(e.at(30*time.Second), "the task was completed")
	// The step commits like any other and the instance moves on.
	e.commit(wi, e.at(3*time.Second), nil)
	e.noStep(e.at(time.Hour), "the step consumed the result")
	h := e.history("a")
	if last := h[len(h)-1]; last.Type != backend.EventTaskCompleted {
		t.Fatalf("last history event %s, want the TaskCompleted the fused step consumed", last.Type)
	}
}

func testFusedLeased(t *testing.T, e *env) {
	e.fused()
	_, tasks := e.startWithTasks("a", 1)
	awi := e.claimActivity(tasks[0].ID, e.at(time.Second))
	// Another worker's step holds the instance (woken by an event).
	e.enqueue(raised("a", "ev", "go"))
	held := e.claimStep("a", e.at(time.Second))
	wi, err := e.completeClaim(awi, e.at(2*time.Second))
	e.noErr("CompleteActivityClaim while another step holds the instance", err)
	if wi != nil {
		t.Fatalf("CompleteActivityClaim claimed attempt %d of a leased instance", wi.Attempt)
	}
	if owner, attempt, ok := e.stepLease("a"); ok && (owner != "backendtest" || attempt != held.Attempt) {
		t.Fatalf("step lease now held by %q attempt %d; want the other worker's attempt %d", owner, attempt, held.Attempt)
	}
	// The completion took effect: the task is gone, and its result waits
	// for the step after the one in progress.
	e.noActivity(e.at(time.Hour), "the task was completed")
	e.commit(held, e.at(3*time.Second), nil)
	next := e.claimStep("a", e.at(4*time.Second))
	e.wantMessages(next, backend.ResultMessageID(tasks[0].ID))
	if next.Attempt != held.Attempt+1 {
		t.Fatalf("next step attempt %d, want %d: the fused completion must not have claimed", next.Attempt, held.Attempt+1)
	}
}

// testFusedFanIn completes the two tasks of a fan-out: the first, with the
// other still in flight, claims nothing; the last claims the step with
// both results.
func testFusedFanIn(t *testing.T, e *env) {
	e.fused()
	_, tasks := e.startWithTasks("a", 2)
	first := e.claimActivity(tasks[0].ID, e.t0)
	second := e.claimActivity(tasks[1].ID, e.t0)
	wi, err := e.completeClaim(first, e.at(time.Second))
	e.noErr("CompleteActivityClaim of the first task", err)
	if wi != nil {
		t.Fatalf("the first result of two claimed attempt %d; the other task is in flight", wi.Attempt)
	}
	wi, err = e.completeClaim(second, e.at(2*time.Second))
	e.noErr("CompleteActivityClaim of the last task", err)
	if wi == nil {
		t.Fatal("the last result claimed nothing; the instance was ready and free")
	}
	if wi.Attempt != 2 {
		t.Fatalf("Attempt %d, want 2", wi.Attempt)
	}
	e.wantMessages(wi, backend.ResultMessageID(tasks[0].ID), backend.ResultMessageID(tasks[1].ID))
}

func testFusedStale(t *testing.T, e *env) {
	e.fused()
	_, tasks := e.startWithTasks("a", 1)
	stale := e.claimActivity(tasks[0].ID, e.t0)
	fresh := e.claimActivity(tasks[0].ID, e.at(2*time.Minute)) // the first lease lapsed
	// The instance is ready (an event waits), so only the fence keeps the
	// stale completion from claiming.
	e.enqueue(raised("a", "ev", "go"))
	wi, err := e.completeClaim(stale, e.at(2*time.Minute))
	e.wantErr("CompleteActivityClaim of a stale delivery", err, backend.ErrLeaseLost)
	if wi != nil {
		t.Fatalf("a stale completion claimed attempt %d", wi.Attempt)
	}
	// Nothing changed: the newest delivery still holds the task, and the
	// step's next claim has the next attempt number with only the event.
	if _, attempt, ok := e.stepLease("a"); ok && attempt != 1 {
		t.Fatalf("step attempt %d after a stale fused completion; want 1", attempt)
	}
	step := e.claimStep("a", e.at(2*time.Minute))
	if step.Attempt != 2 {
		t.Fatalf("step attempt %d, want 2", step.Attempt)
	}
	e.wantMessages(step, "ev")
	e.commit(step, e.at(2*time.Minute), nil)
	e.noErr("CompleteActivity of the newest delivery", e.b.CompleteActivity(e.ctx, completed(fresh, e.at(3*time.Minute))))
	e.wantMessages(e.claimStep("a", e.at(3*time.Minute)), backend.ResultMessageID(tasks[0].ID))

	// A stale completion of a task that is gone (its newest delivery
	// completed) claims nothing either, though its result is in the inbox.
	_, tasks = e.startWithTasks("b", 1)
	old := e.claimActivity(tasks[0].ID, e.t0)
	newer := e.claimActivity(tasks[0].ID, e.at(2*time.Minute))
	e.noErr("CompleteActivity", e.b.CompleteActivity(e.ctx, completed(newer, e.at(2*time.Minute))))
	wi, err = e.completeClaim(old, e.at(2*time.Minute))
	e.wantErr("CompleteActivityClaim of a completed task", err, backend.ErrLeaseLost)
	if wi != nil {
		t.Fatalf("a stale completion of a gone task claimed attempt %d", wi.Attempt)
	}
	step = e.claimStep("b", e.at(2*time.Minute))
	if step.Attempt != 2 {
		t.Fatalf("step attempt %d, want 2", step.Attempt)
	}
}

func testFusedFenced(t *testing.T, e *env) {
	e.fused()
	_, tasks := e.startWithTasks("a", 1)
	wi, err := e.completeClaim(e.claimActivity(tasks[0].ID, e.t0), e.at(time.Second))
	e.noErr("CompleteActivityClaim", err)
	if wi == nil {
		t.Fatal("CompleteActivityClaim claimed nothing")
	}
	// The fused claim's lease lapses; a claim takes the next delivery.
	next := e.claimStep("a", e.at(2*time.Minute))
	if next.Attempt != wi.Attempt+1 || next.Deliveries != 2 {
		t.Fatalf("redelivery attempt %d deliveries %d; want %d and 2", next.Attempt, next.Deliveries, wi.Attempt+1)
	}
	e.wantMessages(next, backend.ResultMessageID(tasks[0].ID))
	// A2: the fused delivery is stale now; every call it makes is fenced.
	e.wantErr("RenewOrchestrationLease of the stale fused step", e.b.RenewOrchestrationLease(e.ctx, &backend.RenewLeaseParams{
		ID: "a", ExecutionID: "a-e1", Attempt: wi.Attempt, LeaseDuration: lease, Now: e.at(2 * time.Minute)}), backend.ErrLeaseLost)
	e.wantErr("CompleteOrchestrationStep of the stale fused step",
		e.b.CompleteOrchestrationStep(e.ctx, stepParams(wi, e.at(2*time.Minute))), backend.ErrLeaseLost)
	e.commit(next, e.at(2*time.Minute), nil)
	if h := e.history("a"); h[len(h)-1].Type != backend.EventTaskCompleted {
		t.Fatalf("history ends with %s", h[len(h)-1].Type)
	}
}

func testFusedSuspended(t *testing.T, e *env) {
	e.fused()
	_, tasks := e.startWithTasks("a", 1)
	awi := e.claimActivity(tasks[0].ID, e.t0)
	e.enqueue(raised("a", "ev", "go"))
	e.commit(e.claimStep("a", e.t0), e.t0, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusSuspended
		p.Suspension = &backend.Suspension{Reason: "operator"}
	})
	wi, err := e.completeClaim(awi, e.at(time.Second))
	e.noErr("CompleteActivityClaim of a suspended instance's task", err)
	if wi != nil {
		t.Fatalf("a result alone claimed attempt %d of a Suspended instance", wi.Attempt)
	}
	e.noStep(e.at(time.Hour), "a Suspended instance with only a result is not claimable")
}

func testFusedFinished(t *testing.T, e *env) {
	e.fused()
	_, tasks := e.startWithTasks("a", 1)
	awi := e.claimActivity(tasks[0].ID, e.t0)
	e.end("a", backend.StatusCompleted, e.at(time.Second))
	wi, err := e.completeClaim(awi, e.at(2*time.Second))
	e.wantErr("CompleteActivityClaim after the instance finished", err, backend.ErrInstanceFinished)
	if wi != nil {
		t.Fatalf("a finished instance's step was claimed (attempt %d)", wi.Attempt)
	}
	e.wantStatus("a", backend.StatusCompleted)
	e.noStep(e.at(time.Hour), "the instance finished")
	e.noActivity(e.at(time.Hour), "the late result completed the task")
}

// testFusedFanOut completes the tasks of one fan-out from many goroutines at
// once, each with a fused claim, while another worker claims steps too:
// at most one delivery holds the step at any time, every result is
// processed exactly once, and the step attempts are all different. (Which
// completion, if any, claims is up to the race: only one that finds no
// other task left may.)
func testFusedFanOut(t *testing.T, e *env) {
	fc := e.fused()
	const n = 24
	_, tasks := e.startWithTasks("a", n)
	now := e.at(time.Second)
	var wis []*backend.ActivityWorkItem
	for range n {
		wis = append(wis, e.tryClaimActivity(now))
	}
	var (
		live     atomic.Int32 // deliveries that hold the step
		mu       sync.Mutex
		consumed []string
		attempts = map[int64]bool{}
		fusedN   int
		failures []string
		// committed counts the steps committed; the completions come in
		// waves of four, each after a step, so that they meet the step
		// free as well as held.
		committed int
		moved     = sync.NewCond(&mu)
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
		moved.Broadcast() // the waves wait no more
	}
	// run processes a claimed step: it checks that no other delivery holds
	// the step, then commits, consuming its messages.
	run := func(wi *backend.OrchestrationWorkItem) {
		if l := live.Add(1); l != 1 {
			fail("%d deliveries hold the step at once (attempt %d)", l, wi.Attempt)
		}
		mu.Lock()
		if attempts[wi.Attempt] {
			failures = append(failures, fmt.Sprintf("attempt %d delivered twice", wi.Attempt))
		}
		attempts[wi.Attempt] = true
		consumed = append(consumed, msgIDs(wi.Messages)...)
		mu.Unlock()
		live.Add(-1) // before the commit releases the lease
		if err := e.b.CompleteOrchestrationStep(e.ctx, stepParams(wi, now)); err != nil {
			fail("CompleteOrchestrationStep(attempt %d): %v", wi.Attempt, err)
		}
		mu.Lock()
		committed++
		mu.Unlock()
		moved.Broadcast()
	}
	ctx, cancel := context.WithCancel(e.ctx)
	var other sync.WaitGroup
	other.Add(1)
	go func() { // another worker claiming steps
		defer other.Done()
		p := &backend.ClaimParams{Owner: "other", LeaseDuration: lease, Now: now}
		for ctx.Err() == nil {
			wi, err := e.b.ClaimOrchestrationStep(ctx, p)
			if err != nil {
				if ctx.Err() == nil {
					fail("ClaimOrchestrationStep: %v", err)
				}
				return
			}
			if wi != nil {
				run(wi)
			}
		}
	}()
	var wg sync.WaitGroup
	for i, awi := range wis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			for committed < i/4 && len(failures) == 0 {
				moved.Wait()
			}
			mu.Unlock()
			claim := &backend.ClaimParams{Owner: fusedOwner, LeaseDuration: lease, Now: now}
			wi, err := fc.CompleteActivityClaim(e.ctx, completed(awi, now), claim)
			if err != nil {
				fail("CompleteActivityClaim(%s): %v", awi.Task.ID, err)
				return
			}
			if wi != nil {
				mu.Lock()
				fusedN++
				mu.Unlock()
				run(wi)
			}
		}()
	}
	wg.Wait()
	cancel()
	other.Wait()
	// Whatever is left is claimable now, and only once.
	for wi := e.tryClaimStep(now); wi != nil; wi = e.tryClaimStep(now) {
		run(wi)
	}
	for _, f := range failures {
		t.Error(f)
	}
	e.wantEachResultOnce("a", tasks, consumed)
	t.Logf("%d of %d completions claimed the step; %d steps in all", fusedN, n, len(attempts))
}

// wantEachResultOnce checks that the steps of instance id consumed the
// result of each of tasks exactly once (consumed: the message IDs they
// consumed) and that its history holds as many results.
func (e *env) wantEachResultOnce(id string, tasks []*backend.ActivityTask, consumed []string) {
	e.t.Helper()
	want := make([]string, len(tasks))
	for i, tk := range tasks {
		want[i] = backend.ResultMessageID(tk.ID)
	}
	slices.Sort(want)
	consumed = slices.Sorted(slices.Values(consumed))
	if !slices.Equal(consumed, want) {
		e.t.Fatalf("consumed %d messages %v; want each of the %d results once", len(consumed), consumed, len(tasks))
	}
	got := 0
	for _, ev := range e.history(id) {
		if ev.Type == backend.EventTaskCompleted {
			got++
		}
	}
	if got != len(tasks) {
		e.t.Fatalf("history has %d results, want %d", got, len(tasks))
	}
}

// testFusedSDK runs sequences of activities through the SDK with fused
// steps on and off: on a backend with the capability, on, the worker runs
// steps that activity completions claimed; off, or without it, none; the
// results are the same.
func testFusedSDK(t *testing.T, be *env) {
	_, capable := be.b.(backend.ActivityStepClaimer)
	_, committer := be.b.(backend.ActivityStepCommitter)
	for _, disable := range []bool{false, true} {
		e := newSDKEnvOpts(t, be.b, &duro.WorkerOptions{DisableFusedSteps: disable}, func(r *duro.Registry) {
			duro.RegisterActivity(r, "Inc", func(ctx duro.ActivityContext, n int) (int, error) { return n + 1, nil })
			duro.RegisterOrchestration(r, "Chain", func(ctx *duro.OrchestrationContext, n int) (int, error) {
				for range 3 {
					if err := ctx.CallActivity("Inc", n).Await(&n); err != nil {
						return 0, err
					}
				}
				return n, nil
			})
		})
		for run := range 3 {
			got := mustOutput[int](t, e.run(t, "Chain", run, duro.StartOptions{InstanceID: fmt.Sprintf("chain-%v-%d", disable, run)}))
			if got != run+3 {
				t.Fatalf("chain(%d) = %d, want %d", run, got, run+3)
			}
		}
		// The counters move after a commit, and the last commit may end
		// the instance, waking run before the worker counted it: the
		// worker is stopped (its deliveries finished) before they are read.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := e.worker.Stop(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		st := e.worker.Stats()
		switch {
		case disable && st.FusedSteps != 0:
			t.Fatalf("DisableFusedSteps: %d fused steps", st.FusedSteps)
		case !disable && capable && st.FusedSteps == 0:
			t.Fatalf("no fused steps on a backend.ActivityStepClaimer: %+v", st)
		case !capable && st.FusedSteps != 0:
			t.Fatalf("%d fused steps on a backend without the capability", st.FusedSteps)
		case !disable && committer && st.FusedCommits == 0:
			t.Fatalf("no fused step committed with its completion on a backend.ActivityStepCommitter: %+v", st)
		case !committer && st.FusedCommits != 0:
			t.Fatalf("%d fused commits on a backend without backend.ActivityStepCommitter", st.FusedCommits)
		}
		if st.ActivitiesCompleted != 9 || st.StaleCompletionsRejected != 0 {
			t.Fatalf("stats %+v; want 9 activities completed, none stale", st)
		}
	}
}
