package backendtest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

func fencingTests() []test {
	return []test{
		{"ActivityStaleDeliveryRejected", testActivityStale},
		{"ActivityUnknownAttemptRejected", testActivityUnknownAttempt},
		{"ActivityLapsedLeaseMayComplete", testActivityLapsedCompletes},
		{"ActivityRenewExtendsLease", testActivityRenew},
		{"StepStaleDeliveryRejected", testStepStale},
		{"StepCompleteTwiceAppliedOnce", testStepCompleteTwice},
		{"StepUnknownAttemptRejected", testStepUnknownAttempt},
		{"StepLapsedLeaseMayComplete", testStepLapsedCompletes},
		{"StepRenewExtendsLease", testStepRenew},
		{"StaleStepCannotCompleteLaterStep", testStaleStepLaterStep},
		{"StaleStepCannotCompleteReplacement", testStaleStepReplacement},
		{"StaleStepCannotCompleteRecreatedAfterPurge", testStaleStepAfterPurge},
		{"ConcurrentClaimsOneWinner", testConcurrentClaimsOneWinner},
		{"ConcurrentActivityCompletions", testConcurrentActivityCompletions},
		{"ConcurrentStepCompletions", testConcurrentStepCompletions},
	}
}

func renewActivity(wi *backend.ActivityWorkItem, now time.Time) *backend.RenewLeaseParams {
	return &backend.RenewLeaseParams{ID: wi.Task.ID, Attempt: int64(wi.Attempt), LeaseDuration: lease, Now: now}
}

func testActivityStale(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	old := e.claimActivity(tasks[0].ID, e.t0)
	cur := e.claimActivity(tasks[0].ID, e.at(2*time.Minute))
	now := e.at(2*time.Minute + 10*time.Second)

	e.wantErr("CompleteActivity from a superseded delivery", e.b.CompleteActivity(e.ctx, completed(old, now)), backend.ErrLeaseLost)
	e.noStep(e.at(time.Hour), "a rejected completion enqueues no result")
	e.wantErr("RenewActivityLease from a superseded delivery", e.b.RenewActivityLease(e.ctx, renewActivity(old, now)), backend.ErrLeaseLost)
	err := e.b.AbandonActivity(e.ctx, &backend.AbandonParams{ID: old.Task.ID, Attempt: int64(old.Attempt)})
	e.wantErr("AbandonActivity from a superseded delivery", err, backend.ErrLeaseLost)
	e.noActivity(e.at(2*time.Minute+30*time.Second), "the current delivery's lease survives a stale abandon")

	e.noErr("CompleteActivity from the current delivery", e.b.CompleteActivity(e.ctx, completed(cur, now)))
	e.wantErr("second CompleteActivity", e.b.CompleteActivity(e.ctx, completed(cur, now)), backend.ErrLeaseLost)
	e.wantErr("RenewActivityLease after completion", e.b.RenewActivityLease(e.ctx, renewActivity(cur, now)), backend.ErrLeaseLost)
	e.wantErr("CompleteActivity from a superseded delivery after completion", e.b.CompleteActivity(e.ctx, completed(old, now)), backend.ErrLeaseLost)

	wi := e.claimStep("a", e.at(time.Hour))
	e.wantMessages(wi, backend.ResultMessageID(tasks[0].ID))
	e.wantBytes("result", wi.Messages[0].Event.Result, completed(cur, now).Result.Result)
}

func testActivityUnknownAttempt(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	wi := e.claimActivity(tasks[0].ID, e.t0)
	now := e.at(time.Second)
	for _, n := range []int{0, wi.Attempt + 1, wi.Attempt + 100} {
		p := completed(wi, now)
		p.Attempt = n
		e.wantErr(fmt.Sprintf("CompleteActivity with attempt %d of 1", n), e.b.CompleteActivity(e.ctx, p), backend.ErrLeaseLost)
		r := renewActivity(wi, now)
		r.Attempt = int64(n)
		e.wantErr(fmt.Sprintf("RenewActivityLease with attempt %d of 1", n), e.b.RenewActivityLease(e.ctx, r), backend.ErrLeaseLost)
	}
	p := completed(wi, now)
	p.TaskID = "no-such-task"
	e.wantErr("CompleteActivity of an unknown task", e.b.CompleteActivity(e.ctx, p), backend.ErrLeaseLost)
	e.noStep(e.at(time.Hour), "rejected completions enqueue no result")
	e.noErr("CompleteActivity from the real delivery", e.b.CompleteActivity(e.ctx, completed(wi, now)))
}

func testActivityLapsedCompletes(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	wi := e.claimActivity(tasks[0].ID, e.t0)
	late := e.at(10 * time.Minute) // the lease lapsed at t0+1m; nobody claimed since
	e.noErr("CompleteActivity after the lease lapsed", e.b.CompleteActivity(e.ctx, completed(wi, late)))
	e.wantMessages(e.claimStep("a", late), backend.ResultMessageID(tasks[0].ID))
	e.noActivity(e.at(time.Hour), "the task is done")
}

func testActivityRenew(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	wi := e.claimActivity(tasks[0].ID, e.t0)
	// Renewed at t0+50s for another minute: the lease lasts until t0+1m50s.
	e.noErr("RenewActivityLease", e.b.RenewActivityLease(e.ctx, renewActivity(wi, e.at(50*time.Second))))
	e.noActivity(e.at(100*time.Second), "the renewed lease is live until t0+1m50s")
	e.noErr("CompleteActivity within the renewed lease", e.b.CompleteActivity(e.ctx, completed(wi, e.at(105*time.Second))))
	e.noActivity(e.at(time.Hour), "the task is done")
}

func testStepStale(t *testing.T, e *env) {
	e.create("a", nil)
	old := e.claimStep("a", e.t0)
	cur := e.claimStep("a", e.at(2*time.Minute))
	now := e.at(2*time.Minute + 10*time.Second)

	e.wantErr("RenewOrchestrationLease from a superseded delivery",
		e.b.RenewOrchestrationLease(e.ctx, &backend.RenewLeaseParams{ID: "a", Attempt: old.Attempt, LeaseDuration: lease, Now: now}), backend.ErrLeaseLost)
	e.wantErr("AbandonOrchestrationStep from a superseded delivery",
		e.b.AbandonOrchestrationStep(e.ctx, &backend.AbandonParams{ID: "a", Attempt: old.Attempt}), backend.ErrLeaseLost)
	e.noStep(e.at(2*time.Minute+30*time.Second), "the current delivery's lease survives a stale abandon")
	e.wantErr("CompleteOrchestrationStep from a superseded delivery",
		e.b.CompleteOrchestrationStep(e.ctx, stepParams(old, now)), backend.ErrLeaseLost)
	if h := e.history("a"); len(h) != 0 {
		t.Fatalf("a rejected step appended %d events", len(h))
	}
	e.wantStatus("a", backend.StatusPending)

	e.commit(cur, now, nil)
	e.wantStatus("a", backend.StatusRunning)
	e.wantErr("CompleteOrchestrationStep from a superseded delivery after the current one committed",
		e.b.CompleteOrchestrationStep(e.ctx, stepParams(old, now)), backend.ErrLeaseLost)
}

func testStepCompleteTwice(t *testing.T, e *env) {
	e.create("a", nil)
	wi := e.claimStep("a", e.t0)
	p := e.commit(wi, e.t0, nil)
	// The second call is the delivery's own retry: recognised, not applied
	// again (replies.go has more).
	e.noErr("second CompleteOrchestrationStep of one delivery", e.b.CompleteOrchestrationStep(e.ctx, p))
	e.wantEvents("history after a repeated commit", e.history("a"), p.NewEvents)
	e.wantErr("RenewOrchestrationLease after the commit",
		e.b.RenewOrchestrationLease(e.ctx, &backend.RenewLeaseParams{ID: "a", Attempt: wi.Attempt, LeaseDuration: lease, Now: e.t0}), backend.ErrLeaseLost)
}

func testStepUnknownAttempt(t *testing.T, e *env) {
	e.create("a", nil)
	wi := e.claimStep("a", e.t0)
	now := e.at(time.Second)
	for _, n := range []int64{0, wi.Attempt + 1, wi.Attempt + 100} {
		p := stepParams(wi, now)
		p.Attempt = n
		e.wantErr(fmt.Sprintf("CompleteOrchestrationStep with attempt %d of 1", n), e.b.CompleteOrchestrationStep(e.ctx, p), backend.ErrLeaseLost)
		err := e.b.RenewOrchestrationLease(e.ctx, &backend.RenewLeaseParams{ID: "a", Attempt: n, LeaseDuration: lease, Now: now})
		e.wantErr(fmt.Sprintf("RenewOrchestrationLease with attempt %d of 1", n), err, backend.ErrLeaseLost)
	}
	p := stepParams(wi, now)
	p.InstanceID = "no-such-instance"
	err := e.b.CompleteOrchestrationStep(e.ctx, p)
	if !errors.Is(err, backend.ErrLeaseLost) && !errors.Is(err, backend.ErrInstanceNotFound) {
		t.Fatalf("CompleteOrchestrationStep of an unknown instance: err = %v, want ErrLeaseLost or ErrInstanceNotFound", err)
	}
	if h := e.history("a"); len(h) != 0 {
		t.Fatalf("rejected steps appended %d events", len(h))
	}
	e.commit(wi, now, nil)
}

func testStepLapsedCompletes(t *testing.T, e *env) {
	e.create("a", nil)
	wi := e.claimStep("a", e.t0)
	late := e.at(10 * time.Minute)
	e.commit(wi, late, nil)
	e.wantStatus("a", backend.StatusRunning)
	e.noStep(e.at(time.Hour), "the step consumed the start message")
}

func testStepRenew(t *testing.T, e *env) {
	e.create("a", nil)
	wi := e.claimStep("a", e.t0)
	// Details mean nothing to an orchestration lease and are ignored.
	err := e.b.RenewOrchestrationLease(e.ctx, &backend.RenewLeaseParams{
		ID: "a", Attempt: wi.Attempt, LeaseDuration: lease, Details: []byte("ignored"), Now: e.at(50 * time.Second),
	})
	e.noErr("RenewOrchestrationLease", err)
	e.noStep(e.at(100*time.Second), "the renewed lease is live until t0+1m50s")
	e.wantStepAttempt(e.claimStep("a", e.at(2*time.Minute)), 2)
}

// testStaleStepLaterStep: a delivery of step 1 that lost its lease wakes up
// after step 1 was committed by another delivery and step 2 was claimed.
func testStaleStepLaterStep(t *testing.T, e *env) {
	e.create("a", nil)
	stale := e.claimStep("a", e.t0)
	retry := e.claimStep("a", e.at(2*time.Minute))
	p1 := e.commit(retry, e.at(2*time.Minute), nil)
	e.enqueue(raised("a", "e1", "e1"))
	step2 := e.claimStep("a", e.at(3*time.Minute))

	p := stepParams(stale, e.at(3*time.Minute))
	p.Status = backend.StatusCompleted
	e.wantErr("CompleteOrchestrationStep of step 1's stale delivery during step 2",
		e.b.CompleteOrchestrationStep(e.ctx, p), backend.ErrLeaseLost)
	e.wantStatus("a", backend.StatusRunning)
	e.wantEvents("history", e.history("a"), p1.NewEvents)
	e.commit(step2, e.at(3*time.Minute), nil)
}

// testStaleStepReplacement: a delivery of a finished instance that lost its
// lease wakes up after the instance was replaced (IfExistsReplaceFinished,
// or a sub-orchestration restarted under the same ID) and the replacement's
// first step was claimed. It holds no lease of the replacement.
func testStaleStepReplacement(t *testing.T, e *env) {
	e.create("a", nil)
	stale := e.claimStep("a", e.t0)
	final := e.claimStep("a", e.at(2*time.Minute))
	e.commit(final, e.at(2*time.Minute), func(p *backend.CompleteOrchestrationStepParams) { p.Status = backend.StatusCompleted })
	e.noErr("CreateInstance(IfExistsReplaceFinished)", e.b.CreateInstance(e.ctx, &backend.CreateInstanceParams{
		ID: "a", Name: orchName, ExecutionID: "a-e2", IfExists: backend.IfExistsReplaceFinished, Now: e.at(3 * time.Minute),
	}))
	// A backend that numbered the replacement's deliveries afresh would
	// hand this one the stale delivery's number, 1.
	cur := e.claimStep("a", e.at(4*time.Minute))
	p := stepParams(stale, cur.LeaseExpiresAt.Add(-time.Second))
	p.Status = backend.StatusFailed
	p.Failure = &backend.Failure{Message: "from the old instance"}
	e.wantErr("CompleteOrchestrationStep of the replaced instance's stale delivery",
		e.b.CompleteOrchestrationStep(e.ctx, p), backend.ErrLeaseLost)
	e.wantStatus("a", backend.StatusPending)
	if h := e.history("a"); len(h) != 0 {
		t.Fatalf("the stale delivery appended %d events to the replacement", len(h))
	}
}

// testConcurrentClaimsOneWinner: claimers racing at one instant for one
// step and one activity task; exactly one of them gets each.
func testConcurrentClaimsOneWinner(t *testing.T, e *env) {
	e.startWithTasks("a", 1)
	e.enqueue(raised("a", "e1", "e1"))
	now := e.at(time.Minute)
	var steps, acts sync.Map
	e.race(16, func(i int) error {
		p := &backend.ClaimParams{Owner: fmt.Sprint("worker-", i), LeaseDuration: lease, Now: now}
		wi, err := e.b.ClaimOrchestrationStep(e.ctx, p)
		if err != nil {
			return err
		}
		if wi != nil {
			steps.Store(i, wi.Attempt)
		}
		a, err := e.b.ClaimActivity(e.ctx, p)
		if a != nil {
			acts.Store(i, a.Attempt)
		}
		return err
	})
	if n, m := count(&steps), count(&acts); n != 1 || m != 1 {
		t.Fatalf("16 simultaneous claimers: %d got the step and %d the activity task, want 1 and 1", n, m)
	}
}

func count(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

// testStaleStepAfterPurge: as testStaleStepReplacement, with the finished
// instance purged and an instance of the same ID created anew.
func testStaleStepAfterPurge(t *testing.T, e *env) {
	e.create("a", nil)
	stale := e.claimStep("a", e.t0)
	final := e.claimStep("a", e.at(2*time.Minute))
	e.commit(final, e.at(2*time.Minute), func(p *backend.CompleteOrchestrationStepParams) { p.Status = backend.StatusCompleted })
	e.noErr("PurgeInstance", e.b.PurgeInstance(e.ctx, "a"))
	e.create("a", func(p *backend.CreateInstanceParams) { p.ExecutionID = "a-e2"; p.Now = e.at(3 * time.Minute) })
	cur := e.claimStep("a", e.at(4*time.Minute))

	p := stepParams(stale, cur.LeaseExpiresAt.Add(-time.Second))
	p.Status = backend.StatusFailed
	p.Failure = &backend.Failure{Message: "from the purged instance"}
	e.wantErr(fmt.Sprintf("CompleteOrchestrationStep (attempt %d) of the purged instance's stale delivery, while the new instance's delivery %d holds the lease", stale.Attempt, cur.Attempt),
		e.b.CompleteOrchestrationStep(e.ctx, p), backend.ErrLeaseLost)
	e.wantStatus("a", backend.StatusPending)
}

// deliveries claims n deliveries of one work item in a row, each after the
// previous lease lapsed, and returns the time of the last claim.
func (e *env) deliveries(n int, claim func(now time.Time)) time.Time {
	var now time.Time
	for i := range n {
		now = e.at(time.Duration(i) * 2 * lease)
		claim(now)
	}
	return now
}

func testConcurrentActivityCompletions(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	var wis []*backend.ActivityWorkItem
	last := e.deliveries(10, func(now time.Time) { wis = append(wis, e.claimActivity(tasks[0].ID, now)) })
	ok := e.race(len(wis), func(i int) error {
		return e.b.CompleteActivity(e.ctx, completed(wis[i], last.Add(time.Second)))
	})
	if len(ok) != 1 || ok[0] != len(wis)-1 {
		t.Fatalf("concurrent completions of %d deliveries: deliveries %v succeeded, want only the newest (%d)", len(wis), ok, len(wis)-1)
	}
	wi := e.claimStep("a", e.at(24*time.Hour))
	e.wantMessages(wi, backend.ResultMessageID(tasks[0].ID))
	e.wantBytes("result", wi.Messages[0].Event.Result, completed(wis[len(wis)-1], last).Result.Result)
}

func testConcurrentStepCompletions(t *testing.T, e *env) {
	e.create("a", nil)
	var wis []*backend.OrchestrationWorkItem
	last := e.deliveries(10, func(now time.Time) { wis = append(wis, e.claimStep("a", now)) })
	ok := e.race(len(wis), func(i int) error {
		p := stepParams(wis[i], last.Add(time.Second))
		p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventEventRaised, Name: fmt.Sprint("delivery-", i)})
		return e.b.CompleteOrchestrationStep(e.ctx, p)
	})
	if len(ok) != 1 || ok[0] != len(wis)-1 {
		t.Fatalf("concurrent commits of %d deliveries: deliveries %v succeeded, want only the newest (%d)", len(wis), ok, len(wis)-1)
	}
	h := e.history("a")
	if len(h) == 0 || h[len(h)-1].Name != fmt.Sprint("delivery-", len(wis)-1) {
		t.Fatalf("history after concurrent commits: %v, want exactly the newest delivery's events", eventTypes(h))
	}
	if len(h) != len(stepParams(wis[0], last).NewEvents)+1 {
		t.Fatalf("history has %d events, want the %d of one step", len(h), len(stepParams(wis[0], last).NewEvents)+1)
	}
}

// race calls f(0..n-1) concurrently and returns the indexes that returned
// nil; it fails on errors other than ErrLeaseLost.
func (e *env) race(n int, f func(i int) error) []int {
	e.t.Helper()
	var (
		mu   sync.Mutex
		ok   []int
		errs []error
		wg   sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			err := f(i)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok = append(ok, i)
			} else if !errors.Is(err, backend.ErrLeaseLost) {
				errs = append(errs, fmt.Errorf("delivery %d: %w", i, err))
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		e.t.Fatalf("concurrent calls: %d failed with an error other than ErrLeaseLost; first: %v", len(errs), errs[0])
	}
	return ok
}
