package backendtest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"duro"
	"duro/backend"
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
		var running, most atomic.Int32
		e := newSDKEnvOpts(t, be.b, &duro.WorkerOptions{ActivityConcurrency: 4, DisableEagerActivities: disable},
			func(r *duro.Registry) {
				duro.RegisterActivity(r, "Square", func(ctx duro.ActivityContext, n int) (int, error) {
					now := running.Add(1)
					defer running.Add(-1)
					for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
					}
					time.Sleep(time.Millisecond)
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
			got := mustOutput[int](t, e.run(t, "Sum", 10, duro.StartOptions{InstanceID: fmt.Sprintf("sum-%v-%d", disable, run)}))
			if got != 385 {
				t.Fatalf("sum = %d, want 385", got)
			}
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
		if m := most.Load(); m > 4 {
			t.Fatalf("%d activities ran at once, ActivityConcurrency is 4", m)
		}
		// The next round's worker works alone.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := e.worker.Stop(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}
