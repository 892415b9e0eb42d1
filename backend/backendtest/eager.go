package backendtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// eagerTests check backend.StepActivityClaimer; they skip on backends
// without it.
func eagerTests() []test {
	return []test{
		{"ClaimsTasksOfTheStep", testEagerClaims},
		{"RespectsMax", testEagerMax},
		{"FencedWithTheStep", testEagerFenced},
		{"SkipsTasksThatExist", testEagerSkipsExisting},
		{"NothingWhenTheStepFinishes", testEagerFinish},
		{"SurvivesReopen", testEagerReopen},
		{"ThroughTheSDK", testEagerSDK},
	}
}

func (e *env) eager() backend.StepActivityClaimer {
	e.t.Helper()
	c, ok := e.b.(backend.StepActivityClaimer)
	if !ok {
		e.t.Skip("backend does not implement backend.StepActivityClaimer")
	}
	return c
}

// commitClaim completes wi's step at now scheduling tasks, claiming up to
// max of them.
func (e *env) commitClaim(wi *backend.OrchestrationWorkItem, now time.Time, tasks []*backend.ActivityTask, max int,
	edit func(*backend.CompleteOrchestrationStepParams)) ([]*backend.ActivityWorkItem, error) {
	e.t.Helper()
	p := stepParams(wi, now)
	p.ActivityTasks = tasks
	for _, tk := range tasks {
		p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventTaskScheduled, Timestamp: now, TaskID: tk.TaskID, Name: tk.Name, Input: tk.Input})
	}
	if edit != nil {
		edit(p)
	}
	return e.eager().CompleteOrchestrationStepClaim(e.ctx, p, e.claimParams(now), max)
}

func testEagerClaims(t *testing.T, e *env) {
	e.eager()
	c := e.create("a", nil)
	tasks := []*backend.ActivityTask{task(c, 1), task(c, 2)}
	tasks[1].PriorAttempts = 3 // a rewound task continues its numbering
	tasks[1].Options.AtMostOnce = true
	wis, err := e.commitClaim(e.claimStep("a", e.t0), e.t0, tasks, 10, nil)
	e.noErr("CompleteOrchestrationStepClaim", err)
	if len(wis) != 2 {
		t.Fatalf("claimed %d tasks, want 2", len(wis))
	}
	for i, wi := range wis {
		if wi.Task.ID != tasks[i].ID || wi.Task.Name != tasks[i].Name || string(wi.Task.Input) != string(tasks[i].Input) {
			t.Fatalf("claim %d: task %+v, want %+v", i, wi.Task, tasks[i])
		}
		e.wantActivityAttempt(wi, tasks[i].PriorAttempts+1, time.Time{})
		e.wantTime("LeaseExpiresAt", wi.LeaseExpiresAt, e.t0.Add(time.Minute))
	}
	if !wis[1].Task.Options.AtMostOnce || wis[0].Task.Options.AtMostOnce {
		t.Fatalf("options not carried: %+v, %+v", wis[0].Task.Options, wis[1].Task.Options)
	}
	// The claims hold leases like any claim: nobody else gets the tasks
	// until they lapse, and then with the next attempt number.
	e.noActivity(e.at(30*time.Second), "the step claimed both tasks")
	e.wantActivityAttempt(e.claimActivity(tasks[0].ID, e.at(2*time.Minute)), 2, e.t0)
	// The eager delivery of task 2 completes with its attempt number; the
	// result reaches the instance.
	e.noErr("CompleteActivity", e.b.CompleteActivity(e.ctx, completed(wis[1], e.at(time.Second))))
	e.wantMessages(e.claimStep("a", e.at(3*time.Minute)), backend.ResultMessageID(tasks[1].ID))
	// The stale delivery of task 1 is fenced.
	e.wantErr("CompleteActivity of the stale eager delivery", e.b.CompleteActivity(e.ctx, completed(wis[0], e.at(3*time.Minute))), backend.ErrLeaseLost)
}

func testEagerMax(t *testing.T, e *env) {
	e.eager()
	c := e.create("a", nil)
	tasks := []*backend.ActivityTask{task(c, 1), task(c, 2), task(c, 3)}
	wis, err := e.commitClaim(e.claimStep("a", e.t0), e.t0, tasks, 2, nil)
	e.noErr("CompleteOrchestrationStepClaim", err)
	if len(wis) != 2 || wis[0].Task.ID != tasks[0].ID || wis[1].Task.ID != tasks[1].ID {
		t.Fatalf("claimed %d tasks, want the first 2", len(wis))
	}
	e.wantActivityAttempt(e.claimActivity(tasks[2].ID, e.t0), 1, time.Time{})
	e.noActivity(e.t0, "two were claimed by the step, one by ClaimActivity")

	// max 0 claims nothing: every task is left for the claims.
	c2 := e.create("b", nil)
	wis, err = e.commitClaim(e.claimStep("b", e.t0), e.t0, []*backend.ActivityTask{task(c2, 1)}, 0, nil)
	e.noErr("CompleteOrchestrationStepClaim(max 0)", err)
	if len(wis) != 0 {
		t.Fatalf("max 0 claimed %d tasks", len(wis))
	}
	e.wantActivityAttempt(e.claimActivity(task(c2, 1).ID, e.t0), 1, time.Time{})
}

func testEagerFenced(t *testing.T, e *env) {
	e.eager()
	c := e.create("a", nil)
	stale := e.claimStep("a", e.t0)
	fresh := e.claimStep("a", e.at(2*time.Minute)) // attempt 1's lease lapsed
	_, err := e.commitClaim(stale, e.at(2*time.Minute), []*backend.ActivityTask{task(c, 1)}, 5, nil)
	e.wantErr("CompleteOrchestrationStepClaim of a stale step", err, backend.ErrLeaseLost)
	e.noActivity(e.at(2*time.Minute), "the stale step's task must not exist")
	wis, err := e.commitClaim(fresh, e.at(2*time.Minute), []*backend.ActivityTask{task(c, 1)}, 5, nil)
	e.noErr("CompleteOrchestrationStepClaim", err)
	if len(wis) != 1 {
		t.Fatalf("claimed %d tasks, want 1", len(wis))
	}
	e.wantActivityAttempt(wis[0], 1, time.Time{})
}

func testEagerSkipsExisting(t *testing.T, e *env) {
	e.eager()
	c, tasks := e.startWithTasks("a", 1) // task 1 exists, unclaimed
	e.enqueue(raised("a", "ev", "go"))
	wis, err := e.commitClaim(e.claimStep("a", e.t0), e.t0, []*backend.ActivityTask{tasks[0], task(c, 2)}, 5, nil)
	e.noErr("CompleteOrchestrationStepClaim", err)
	if len(wis) != 1 || wis[0].Task.ID != task(c, 2).ID {
		t.Fatalf("claimed %d tasks, want only the new task 2", len(wis))
	}
	e.wantActivityAttempt(e.claimActivity(tasks[0].ID, e.t0), 1, time.Time{})
}

func testEagerFinish(t *testing.T, e *env) {
	e.eager()
	c := e.create("a", nil)
	wis, err := e.commitClaim(e.claimStep("a", e.t0), e.t0, []*backend.ActivityTask{task(c, 1)}, 5,
		func(p *backend.CompleteOrchestrationStepParams) {
			p.Status, p.Output = backend.StatusCompleted, []byte(`"done"`)
			p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventExecutionCompleted, Timestamp: e.t0,
				Status: backend.StatusCompleted, Result: p.Output})
		})
	e.noErr("CompleteOrchestrationStepClaim", err)
	if len(wis) != 0 {
		t.Fatalf("a step that completes its instance claimed %d tasks", len(wis))
	}
	e.wantStatus("a", backend.StatusCompleted)
	e.noActivity(e.t0, "a completed instance has no tasks")
}

func testEagerReopen(t *testing.T, e *env) {
	e.eager()
	e.needReopen()
	c := e.create("a", nil)
	wis, err := e.commitClaim(e.claimStep("a", e.t0), e.t0, []*backend.ActivityTask{task(c, 1)}, 5, nil)
	e.noErr("CompleteOrchestrationStepClaim", err)
	if len(wis) != 1 {
		t.Fatalf("claimed %d tasks, want 1", len(wis))
	}
	e.reopen()
	e.noActivity(e.at(30*time.Second), "the eager claim's lease outlives the reopen")
	e.wantActivityAttempt(e.claimActivity(wis[0].Task.ID, e.at(2*time.Minute)), 2, e.t0)
}

// testEagerSDK runs fan-outs through the SDK: with eager dispatch on (the
// default) a backend with the capability hands activities to the worker
// with the step's commit, within ActivityConcurrency; off, or without the
// capability, none are; the results are the same.
func testEagerSDK(t *testing.T, be *env) {
	_, capable := be.b.(backend.StepActivityClaimer)
	for _, disable := range []bool{false, true} {
		// Each call waits until as many run at once as the worker may run
		// (4, or fewer when fewer calls of the run are left), so that the
		// most seen at once is 4 exactly: more breaks ActivityConcurrency,
		// fewer would leave the calls waiting.
		ov := &overlap{limit: 4, calls: 10}
		// The store counts what the worker asks for: it must never ask for
		// more tasks than it has free slots.
		var store backend.Backend = be.b
		counter := newClaimCounter(be.b)
		if counter != nil {
			store = counter
		}
		e := newSDKEnvOpts(t, store, &duro.WorkerOptions{ActivityConcurrency: 4, DisableEagerActivities: disable},
			func(r *duro.Registry) {
				duro.RegisterActivity(r, "Square", func(ctx duro.ActivityContext, n int) (int, error) {
					if err := ov.run(ctx); err != nil {
						return 0, err
					}
					return n * n, nil
				})
				duro.RegisterOrchestration(r, "Sum", func(ctx *duro.OrchestrationContext, n int) (int, error) {
					tasks := make([]*duro.Task, n)
					for i := range tasks {
						tasks[i] = ctx.CallActivity("Square", i+1)
					}
					if err := ctx.AwaitAll(tasks...); err != nil {
						return 0, err
					}
					sum := 0
					for _, tk := range tasks {
						var v int
						if err := tk.Await(&v); err != nil {
							return 0, err
						}
						sum += v
					}
					return sum, nil
				})
			})
		for run := range 3 {
			ov.nextRun()
			got := mustOutput[int](t, e.run(t, "Sum", 10, duro.StartOptions{InstanceID: fmt.Sprintf("sum-%v-%d", disable, run)}))
			if got != 385 {
				t.Fatalf("sum = %d, want 385", got)
			}
		}
		// The worker stops (its deliveries finished) before its counters
		// are read: the last commit can end the instance, waking run,
		// before the worker counted it. The next round's worker works alone.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := e.worker.Stop(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		st := e.worker.Stats()
		switch {
		case disable && st.EagerActivities != 0:
			t.Fatalf("DisableEagerActivities: %d eager activities", st.EagerActivities)
		case !disable && capable && st.EagerActivities == 0:
			t.Fatalf("no eager activities on a backend.StepActivityClaimer: %+v", st)
		case !capable && st.EagerActivities != 0:
			t.Fatalf("%d eager activities on a backend without the capability", st.EagerActivities)
		}
		if st.ActivitiesCompleted != 30 {
			t.Fatalf("%d activities completed, want 30", st.ActivitiesCompleted)
		}
		if m := ov.mostAtOnce(); m != 4 {
			t.Fatalf("%d activities ran at once, ActivityConcurrency is 4", m)
		}
		if counter != nil {
			if w := counter.worstAsked(); w > 4 {
				t.Fatalf("the worker held and asked for %d activity tasks at once, ActivityConcurrency is 4", w)
			}
		}
	}
}

// overlap holds each activity call of a run until limit calls run at once,
// or every call of the run still to finish does, and records the most that
// ran at once.
type overlap struct {
	limit, calls int
	mu           sync.Mutex
	running      int
	done         int // calls of the current run that finished
	most         int
	changed      chan struct{} // closed and replaced when running or done change
}

// nextRun starts counting a new run of calls.
func (o *overlap) nextRun() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = 0
}

func (o *overlap) signal() {
	if o.changed != nil {
		close(o.changed)
	}
	o.changed = make(chan struct{})
}

// run is one call: it returns once enough calls run at once, or with
// ctx's error (the call then does not count as finished).
func (o *overlap) run(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.running++
	o.most = max(o.most, o.running)
	o.signal()
	var err error
	for err == nil && o.running < min(o.limit, o.calls-o.done) {
		ch := o.changed
		o.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			err = ctx.Err()
		}
		o.mu.Lock()
	}
	o.running--
	if err == nil {
		o.done++
	}
	o.signal()
	return err
}

func (o *overlap) mostAtOnce() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.most
}

// claimCounter is the store of a worker whose activity claims it counts: the
// deliveries the worker holds (claimed, not yet completed or handed back)
// plus the most that the claims in progress may return. A worker claims no
// more than its free slots, so the count stays within its
// ActivityConcurrency at every claim, however the calls interleave.
// claimCounter hides the store's wake-ups; the worker polls.
type claimCounter struct {
	backend.Backend
	batch backend.BatchClaimer
	eager backend.StepActivityClaimer
	mu    sync.Mutex
	held  int
	asked int
	worst int
}

// newClaimCounter wraps b, or returns nil if b lacks backend.BatchClaimer or
// backend.StepActivityClaimer (the wrapper must not hide or add either).
func newClaimCounter(b backend.Backend) *claimCounter {
	batch, ok1 := b.(backend.BatchClaimer)
	eager, ok2 := b.(backend.StepActivityClaimer)
	if !ok1 || !ok2 {
		return nil
	}
	return &claimCounter{Backend: b, batch: batch, eager: eager}
}

func (c *claimCounter) ask(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked += n
	c.worst = max(c.worst, c.held+c.asked)
}

func (c *claimCounter) got(asked, got int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked -= asked
	c.held += got
}

// ended counts a delivery as no longer held once its completion or
// hand-back has an answer that ends it (done, or fenced off).
func (c *claimCounter) ended(err error) {
	if err != nil && !errors.Is(err, backend.ErrLeaseLost) {
		return // retried
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held--
}

func (c *claimCounter) worstAsked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.worst
}

func (c *claimCounter) ClaimActivity(ctx context.Context, p *backend.ClaimParams) (*backend.ActivityWorkItem, error) {
	c.ask(1)
	wi, err := c.Backend.ClaimActivity(ctx, p)
	n := 0
	if wi != nil {
		n = 1
	}
	c.got(1, n)
	return wi, err
}

func (c *claimCounter) ClaimActivities(ctx context.Context, p *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	c.ask(max)
	wis, err := c.batch.ClaimActivities(ctx, p, max)
	c.got(max, len(wis))
	return wis, err
}

func (c *claimCounter) ClaimOrchestrationSteps(ctx context.Context, p *backend.ClaimParams, max int) ([]*backend.OrchestrationWorkItem, error) {
	return c.batch.ClaimOrchestrationSteps(ctx, p, max)
}

func (c *claimCounter) CompleteOrchestrationStepClaim(ctx context.Context, p *backend.CompleteOrchestrationStepParams, claim *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	c.ask(max)
	wis, err := c.eager.CompleteOrchestrationStepClaim(ctx, p, claim, max)
	c.got(max, len(wis))
	return wis, err
}

func (c *claimCounter) CompleteActivity(ctx context.Context, p *backend.CompleteActivityParams) error {
	err := c.Backend.CompleteActivity(ctx, p)
	c.ended(err)
	return err
}

func (c *claimCounter) AbandonActivity(ctx context.Context, p *backend.AbandonParams) error {
	err := c.Backend.AbandonActivity(ctx, p)
	c.ended(err)
	return err
}
