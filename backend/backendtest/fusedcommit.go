package backendtest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// fusedCommitTests check backend.ActivityStepCommitter; they skip on
// backends without it.
func fusedCommitTests() []test {
	return []test{
		{"CommitsTheStep", testFusedCommit},
		{"CommitsTheLastStep", testFusedCommitLast},
		{"NilRunCommitsTheClaim", testFusedCommitNil},
		{"DeclinedStepStaysValid", testFusedCommitDeclined},
		{"ResultAfterWaitingMessages", testFusedCommitOrder},
		{"UnconsumedResultStays", testFusedCommitUnconsumed},
		{"StaleRunsNothing", testFusedCommitStale},
		{"NoRunWhileTasksRemain", testFusedCommitFanIn},
		{"ConcurrentFanOut", testFusedCommitFanOut},
	}
}

func (e *env) fusedCommitter() backend.ActivityStepCommitter {
	e.t.Helper()
	c, ok := e.b.(backend.ActivityStepCommitter)
	if !ok {
		e.t.Skip("backend does not implement backend.ActivityStepCommitter")
	}
	return c
}

// completeStep completes wi at now through CompleteActivityStep with a
// claim for fusedOwner at now; run is called with the claimed step.
func (e *env) completeStep(wi *backend.ActivityWorkItem, now time.Time,
	run func(*backend.OrchestrationWorkItem) *backend.StepCommit) (*backend.ActivityStep, error) {
	e.t.Helper()
	claim := e.claimParams(now)
	claim.Owner = fusedOwner
	return e.fusedCommitter().CompleteActivityStep(e.ctx, completed(wi, now), claim, run)
}

// wantFusedCommit checks what a fused transaction that committed step p
// of instance id left, as after CompleteOrchestrationStepClaim: tk claimed
// eagerly (out.Activities, attempt 1), the step's lease released, nothing
// to claim; and that the commit counts as the delivery's (committed_steps):
// repeating it, as after a lost reply, is recognised and changes nothing.
func (e *env) wantFusedCommit(id string, p *backend.CompleteOrchestrationStepParams, out *backend.ActivityStep, tk *backend.ActivityTask) {
	e.t.Helper()
	if len(out.Activities) != 1 || out.Activities[0].Task.ID != tk.ID || out.Activities[0].Attempt != 1 {
		e.t.Fatalf("eager claims %+v; want %s, attempt 1", out.Activities, tk.ID)
	}
	if owner, _, ok := e.stepLease(id); ok && owner != "" {
		e.t.Fatalf("step lease still held by %q after the commit", owner)
	}
	e.noStep(e.at(time.Hour), "the step consumed its messages and released the lease")
	e.noActivity(e.at(30*time.Second), "the step's task is leased by the eager claim")
	n := len(e.history(id))
	if err := e.b.CompleteOrchestrationStep(e.ctx, p); err != nil {
		e.t.Fatalf("repeating the committed step: %v", err)
	}
	if got := len(e.history(id)); got != n {
		e.t.Fatalf("repeating the committed step changed the history: %d events, was %d", got, n)
	}
}

// nextTask is the step that schedules task n of the instance created with
// c, as the step after wi.
func nextTask(c *backend.CreateInstanceParams, wi *backend.OrchestrationWorkItem, n int, now time.Time) *backend.CompleteOrchestrationStepParams {
	p := stepParams(wi, now)
	tk := task(c, n)
	p.ActivityTasks = []*backend.ActivityTask{tk}
	p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventTaskScheduled, Timestamp: now, TaskID: tk.TaskID, Name: tk.Name, Input: tk.Input})
	return p
}

func testFusedCommit(t *testing.T, e *env) {
	e.fusedCommitter()
	c, tasks := e.startWithTasks("a", 1)
	before := e.history("a")
	awi := e.claimActivity(tasks[0].ID, e.at(time.Second))
	var params *backend.CompleteOrchestrationStepParams
	calls := 0
	out, err := e.completeStep(awi, e.at(2*time.Second), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		calls++
		// The claim is CompleteActivityClaim's: attempt 2 (A1), the
		// result among its messages, the history so far.
		if wi.Attempt != 2 || wi.Instance.ID != "a" {
			t.Errorf("run got attempt %d of %q; want attempt 2 of a", wi.Attempt, wi.Instance.ID)
		}
		e.wantMessages(wi, backend.ResultMessageID(tasks[0].ID))
		e.wantEvents("the claimed step's history", wi.History, before)
		params = nextTask(c, wi, 2, e.at(2*time.Second))
		claim := e.claimParams(e.at(2 * time.Second))
		claim.Owner = fusedOwner
		return &backend.StepCommit{Params: params, ActivityClaim: claim, MaxActivities: 1}
	})
	e.noErr("CompleteActivityStep", err)
	if calls != 1 || out == nil || out.Step == nil || !out.Committed {
		t.Fatalf("run called %d times, outcome %+v; want one call and the step committed", calls, out)
	}
	// The step's effects, as after CompleteOrchestrationStepClaim.
	e.wantEvents("the history after the step", e.history("a"), append(slices.Clone(before), params.NewEvents...))
	e.wantFusedCommit("a", params, out, task(c, 2))
	// The eagerly claimed task runs and completes like any claimed one.
	_, err = e.completeStep(out.Activities[0], e.at(3*time.Second), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		return &backend.StepCommit{Params: stepParams(wi, e.at(3*time.Second))}
	})
	e.noErr("CompleteActivityStep of the eager task", err)
	if n := len(e.history("a")); n != len(before)+len(params.NewEvents)+2 {
		t.Fatalf("history has %d events after the second fused step", n)
	}
}

// testFusedCommitLast has run end the instance: whether the backend
// commits that step with the completion or declines it, the instance ends
// Completed with its output, and nothing of it is left to claim.
func testFusedCommitLast(t *testing.T, e *env) {
	e.fusedCommitter()
	_, tasks := e.startWithTasks("a", 1)
	awi := e.claimActivity(tasks[0].ID, e.at(time.Second))
	var params *backend.CompleteOrchestrationStepParams
	out, err := e.completeStep(awi, e.at(2*time.Second), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		params = stepParams(wi, e.at(2*time.Second))
		params.Status, params.Output = backend.StatusCompleted, []byte(`"done"`)
		params.NewEvents = append(params.NewEvents, &backend.Event{Type: backend.EventExecutionCompleted,
			Status: backend.StatusCompleted, Result: params.Output, Timestamp: e.at(2 * time.Second)})
		return &backend.StepCommit{Params: params}
	})
	e.noErr("CompleteActivityStep", err)
	if out == nil || out.Step == nil {
		t.Fatalf("outcome %+v; want the step claimed", out)
	}
	t.Logf("the last step committed with the completion: %v", out.Committed)
	if !out.Committed {
		e.commit(out.Step, e.at(2*time.Second), func(p *backend.CompleteOrchestrationStepParams) { *p = *params })
	}
	e.wantStatus("a", backend.StatusCompleted)
	inst, err := e.b.GetInstance(e.ctx, "a")
	e.noErr("GetInstance", err)
	if string(inst.Output) != `"done"` {
		t.Fatalf("output %s, want \"done\"", inst.Output)
	}
	e.noStep(e.at(time.Hour), "the instance finished")
	e.noActivity(e.at(time.Hour), "the instance finished")
}

func testFusedCommitNil(t *testing.T, e *env) {
	e.fusedCommitter()
	_, tasks := e.startWithTasks("a", 1)
	awi := e.claimActivity(tasks[0].ID, e.at(time.Second))
	out, err := e.completeStep(awi, e.at(2*time.Second), func(*backend.OrchestrationWorkItem) *backend.StepCommit { return nil })
	e.noErr("CompleteActivityStep", err)
	if out == nil || out.Step == nil || out.Committed {
		t.Fatalf("outcome %+v; want the step claimed, not committed", out)
	}
	if owner, attempt, ok := e.stepLease("a"); ok && (owner != fusedOwner || attempt != out.Step.Attempt) {
		t.Fatalf("step lease held by %q attempt %d; want %q attempt %d", owner, attempt, fusedOwner, out.Step.Attempt)
	}
	e.noStep(e.at(30*time.Second), "the claim holds the step")
	e.noActivity(e.at(30*time.Second), "the task was completed")
	e.commit(out.Step, e.at(3*time.Second), nil)
	e.noStep(e.at(time.Hour), "the step consumed the result")
}

// testFusedCommitDeclined has run return a step that sends an event to
// another instance: the backend may commit it with the completion, or
// decline it, and then the same work item stays claimed and its step
// commits as after any claim.
func testFusedCommitDeclined(t *testing.T, e *env) {
	e.fusedCommitter()
	_, tasks := e.startWithTasks("a", 1)
	e.start("b", nil)
	awi := e.claimActivity(tasks[0].ID, e.at(time.Second))
	var given *backend.OrchestrationWorkItem
	var params *backend.CompleteOrchestrationStepParams
	out, err := e.completeStep(awi, e.at(2*time.Second), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		given = wi
		params = stepParams(wi, e.at(2*time.Second))
		params.Messages = []*backend.Message{raised("b", "a-to-b", "hello")}
		return &backend.StepCommit{Params: params}
	})
	e.noErr("CompleteActivityStep", err)
	if out == nil || out.Step == nil || out.Step != given {
		t.Fatalf("outcome %+v; want the step run was given", out)
	}
	if !out.Committed {
		e.noStep(e.at(30*time.Second), "the declined step's claim holds it")
		if err := e.b.CompleteOrchestrationStep(e.ctx, params); err != nil {
			t.Fatalf("committing the declined step: %v", err)
		}
	}
	wi := e.claimStep("b", e.at(3*time.Second))
	e.wantMessages(wi, "a-to-b")
	e.commit(wi, e.at(3*time.Second), nil)
	e.noStep(e.at(time.Hour), "a's step consumed its result, b's its message")
}

// testFusedCommitOrder raises an event to the instance while its task
// runs: the step the completion claims gets the event first, then the
// result, the order in which they arrived, and consumes both.
func testFusedCommitOrder(t *testing.T, e *env) {
	e.fusedCommitter()
	_, tasks := e.startWithTasks("a", 1)
	awi := e.claimActivity(tasks[0].ID, e.at(time.Second))
	e.enqueue(raised("a", "while-it-ran", "news"))
	var given *backend.OrchestrationWorkItem
	out, err := e.completeStep(awi, e.at(2*time.Second), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		given = wi
		return &backend.StepCommit{Params: stepParams(wi, e.at(2*time.Second))}
	})
	e.noErr("CompleteActivityStep", err)
	if out == nil || out.Step == nil || out.Step != given {
		t.Fatalf("outcome %+v; want the step run was given", out)
	}
	e.wantMessages(given, "while-it-ran", backend.ResultMessageID(tasks[0].ID))
	if !out.Committed {
		e.commit(given, e.at(2*time.Second), nil)
	}
	e.noStep(e.at(time.Hour), "the step consumed the event and the result")
}

// testFusedCommitUnconsumed has run return a step that consumes none of
// its messages: the result stays for the next step, which gets it with
// the next attempt number.
func testFusedCommitUnconsumed(t *testing.T, e *env) {
	e.fusedCommitter()
	_, tasks := e.startWithTasks("a", 1)
	awi := e.claimActivity(tasks[0].ID, e.at(time.Second))
	var params *backend.CompleteOrchestrationStepParams
	out, err := e.completeStep(awi, e.at(2*time.Second), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		params = stepParams(wi, e.at(2*time.Second))
		params.ConsumedMessageIDs, params.NewEvents = nil, params.NewEvents[:1]
		return &backend.StepCommit{Params: params}
	})
	e.noErr("CompleteActivityStep", err)
	if out == nil || out.Step == nil {
		t.Fatalf("outcome %+v; want the claimed step", out)
	}
	if !out.Committed {
		if err := e.b.CompleteOrchestrationStep(e.ctx, params); err != nil {
			t.Fatalf("committing the declined step: %v", err)
		}
	}
	wi := e.claimStep("a", e.at(3*time.Second))
	e.wantMessages(wi, backend.ResultMessageID(tasks[0].ID))
	if wi.Attempt <= out.Step.Attempt {
		t.Fatalf("the next step has attempt %d, the fused one had %d", wi.Attempt, out.Step.Attempt)
	}
	e.commit(wi, e.at(3*time.Second), nil)
	e.noStep(e.at(time.Hour), "the second step consumed the result")
}

func testFusedCommitStale(t *testing.T, e *env) {
	e.fusedCommitter()
	_, tasks := e.startWithTasks("a", 1)
	stale := e.claimActivity(tasks[0].ID, e.at(time.Second))
	fresh := e.claimActivity(tasks[0].ID, e.at(time.Second+lease+time.Millisecond)) // the lease lapsed
	called := false
	run := func(*backend.OrchestrationWorkItem) *backend.StepCommit { called = true; return nil }
	if _, err := e.completeStep(stale, e.at(lease+time.Minute), run); !errors.Is(err, backend.ErrLeaseLost) {
		t.Fatalf("stale CompleteActivityStep: %v, want ErrLeaseLost", err)
	}
	if called {
		t.Fatal("run was called for a stale completion")
	}
	e.noStep(e.at(time.Hour), "a stale completion delivers nothing")
	out, err := e.completeStep(fresh, e.at(lease+time.Minute), run)
	e.noErr("CompleteActivityStep of the live delivery", err)
	if out.Step == nil || !called {
		t.Fatalf("the live completion claimed %+v (run called: %v)", out.Step, called)
	}
}

func testFusedCommitFanIn(t *testing.T, e *env) {
	e.fusedCommitter()
	_, tasks := e.startWithTasks("a", 2)
	awi := e.claimActivity(tasks[0].ID, e.at(time.Second))
	out, err := e.completeStep(awi, e.at(2*time.Second), func(*backend.OrchestrationWorkItem) *backend.StepCommit {
		t.Error("run called while another task of the instance is in flight")
		return nil
	})
	e.noErr("CompleteActivityStep", err)
	if out == nil || out.Step != nil || out.Committed {
		t.Fatalf("outcome %+v; want nothing claimed", out)
	}
}

// testFusedCommitFanOut completes a fan-out's tasks from many goroutines,
// each through CompleteActivityStep whose run commits a step consuming
// the messages it was given: every result is processed exactly once, by
// steps of distinct attempts, and whatever no fused step took is claimable
// after.
func testFusedCommitFanOut(t *testing.T, e *env) {
	fc := e.fusedCommitter()
	const n = 24
	_, tasks := e.startWithTasks("a", n)
	now := e.at(time.Second)
	var wis []*backend.ActivityWorkItem
	for range n {
		wis = append(wis, e.tryClaimActivity(now))
	}
	var (
		mu       sync.Mutex
		consumed []string
		attempts = map[int64]bool{}
		failures []string
	)
	take := func(wi *backend.OrchestrationWorkItem) {
		mu.Lock()
		defer mu.Unlock()
		if attempts[wi.Attempt] {
			failures = append(failures, fmt.Sprintf("attempt %d delivered twice", wi.Attempt))
		}
		attempts[wi.Attempt] = true
		consumed = append(consumed, msgIDs(wi.Messages)...)
	}
	var wg sync.WaitGroup
	for _, awi := range wis {
		wg.Go(func() {
			claim := &backend.ClaimParams{Owner: fusedOwner, LeaseDuration: lease, Now: now}
			var last *backend.OrchestrationWorkItem
			out, err := fc.CompleteActivityStep(e.ctx, completed(awi, now), claim, func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
				last = wi
				return &backend.StepCommit{Params: stepParams(wi, now)}
			})
			switch {
			case err != nil:
				mu.Lock()
				failures = append(failures, fmt.Sprintf("CompleteActivityStep(%s): %v", awi.Task.ID, err))
				mu.Unlock()
			case out.Committed:
				take(last)
			case out.Step != nil:
				take(out.Step)
				if err := e.b.CompleteOrchestrationStep(e.ctx, stepParams(out.Step, now)); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("CompleteOrchestrationStep: %v", err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for wi := e.tryClaimStep(now); wi != nil; wi = e.tryClaimStep(now) {
		take(wi)
		e.commit(wi, now, nil)
	}
	for _, f := range failures {
		t.Error(f)
	}
	e.wantEachResultOnce("a", tasks, consumed)
}
