package backendtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// fusedStartTests check backend.StartStepCommitter; they skip on backends
// without it, except the one through the SDK, which checks that a client
// with ClientOptions.Worker works on every backend.
func fusedStartTests() []test {
	return []test{
		{"CommitsTheFirstStep", testFusedStart},
		{"WorkItemAsAClaim", testFusedStartWorkItem},
		{"NilRunCommitsTheClaim", testFusedStartNil},
		{"DeclinedStepStaysValid", testFusedStartDeclined},
		{"UnconsumedStartStays", testFusedStartUnconsumed},
		{"ExistingInstance", testFusedStartExists},
		{"LaterStartRunsNothing", testFusedStartLater},
		{"ThroughTheSDK", testFusedStartSDK},
	}
}

func (e *env) startCommitter() backend.StartStepCommitter {
	e.t.Helper()
	c, ok := e.b.(backend.StartStepCommitter)
	if !ok {
		e.t.Skip("backend does not implement backend.StartStepCommitter")
	}
	return c
}

// createParams are the parameters e.create uses for instance id.
func (e *env) createParams(id string) *backend.CreateInstanceParams {
	return &backend.CreateInstanceParams{ID: id, Name: orchName, ExecutionID: id + "-e1",
		Input: []byte(`"input of ` + id + `"`), Now: e.t0}
}

// createStep creates c through CreateInstanceStep with a claim for
// fusedOwner at c's time; run is called with the claimed first step.
func (e *env) createStep(c *backend.CreateInstanceParams,
	run func(*backend.OrchestrationWorkItem) *backend.StepCommit) (*backend.ActivityStep, error) {
	e.t.Helper()
	claim := e.claimParams(e.t0)
	claim.Owner = fusedOwner
	return e.startCommitter().CreateInstanceStep(e.ctx, c, claim, run)
}

// testFusedStart commits a first step that schedules a task with the
// creation: the history, the eager claim and the released lease are those
// of a creation, a claim and CompleteOrchestrationStepClaim.
func testFusedStart(t *testing.T, e *env) {
	e.startCommitter()
	c := e.createParams("a")
	var params *backend.CompleteOrchestrationStepParams
	var given *backend.OrchestrationWorkItem
	calls := 0
	out, err := e.createStep(c, func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		calls++
		given = wi
		params = nextTask(c, wi, 1, e.t0)
		claim := e.claimParams(e.t0)
		claim.Owner = fusedOwner
		return &backend.StepCommit{Params: params, ActivityClaim: claim, MaxActivities: 1}
	})
	e.noErr("CreateInstanceStep", err)
	if calls != 1 || out == nil || out.Step != given || !out.Committed {
		t.Fatalf("run called %d times, outcome %+v; want one call and the step committed", calls, out)
	}
	if given.Attempt != 1 || given.Deliveries != 1 || len(given.History) != 0 {
		t.Fatalf("first step: attempt %d, deliveries %d, %d history events; want 1, 1 and none",
			given.Attempt, given.Deliveries, len(given.History))
	}
	e.wantMessages(given, backend.StartMessageID("a", "a-e1"))
	e.wantEvents("the history after the first step", e.history("a"), params.NewEvents)
	if s := e.instance("a").Status; s != backend.StatusRunning {
		t.Fatalf("status %s after the first step, want Running", s)
	}
	e.wantFusedCommit("a", params, out, task(c, 1))
	// Creating it again is refused, as any second creation is.
	if _, err := e.createStep(e.createParams("a"), nil); !errors.Is(err, backend.ErrInstanceExists) {
		t.Fatalf("a second CreateInstanceStep: %v, want ErrInstanceExists", err)
	}
}

// testFusedStartWorkItem compares the work item run is given with the one
// a claim of an instance created alike returns.
func testFusedStartWorkItem(t *testing.T, e *env) {
	e.startCommitter()
	var given *backend.OrchestrationWorkItem
	_, err := e.createStep(e.createParams("a"), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		given = wi
		return nil
	})
	e.noErr("CreateInstanceStep", err)
	e.create("b", nil)
	claimed := e.claimStep("b", e.t0)
	if given == nil {
		t.Fatal("run was not called")
	}
	g, c := *given.Instance, *claimed.Instance
	g.ID, g.ExecutionID, g.Input = c.ID, c.ExecutionID, c.Input
	if gs, cs := fmt.Sprintf("%+v", g), fmt.Sprintf("%+v", c); gs != cs {
		t.Fatalf("the fused start's instance\n%s\ndiffers from a claim's\n%s", gs, cs)
	}
	if given.Attempt != claimed.Attempt || given.Deliveries != claimed.Deliveries || given.StartedAttempt != claimed.StartedAttempt ||
		len(given.History) != len(claimed.History) || len(given.Messages) != len(claimed.Messages) {
		t.Fatalf("work items differ: %+v and %+v", given, claimed)
	}
	gm, cm := *given.Messages[0].Event, *claimed.Messages[0].Event
	gm.ExecutionID, gm.Input = cm.ExecutionID, cm.Input
	if gs, cs := fmt.Sprintf("%+v", gm), fmt.Sprintf("%+v", cm); gs != cs {
		t.Fatalf("the fused start's ExecutionStarted\n%s\ndiffers from a claim's\n%s", gs, cs)
	}
}

// testFusedStartNil has run return nil: the creation and the claim commit,
// the work item stays valid for CompleteOrchestrationStep, and nothing is
// claimable in between.
func testFusedStartNil(t *testing.T, e *env) {
	e.startCommitter()
	var given *backend.OrchestrationWorkItem
	out, err := e.createStep(e.createParams("a"), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		given = wi
		return nil
	})
	e.noErr("CreateInstanceStep", err)
	if out == nil || out.Step == nil || out.Step != given || out.Committed {
		t.Fatalf("outcome %+v; want the claimed step, not committed", out)
	}
	if owner, attempt, ok := e.stepLease("a"); ok && (owner != fusedOwner || attempt != 1) {
		t.Fatalf("step lease %q at attempt %d, want %q at 1", owner, attempt, fusedOwner)
	}
	e.noStep(e.at(30*time.Second), "the claim holds the first step")
	p := stepParams(given, e.t0)
	if err := e.b.CompleteOrchestrationStep(e.ctx, p); err != nil {
		t.Fatalf("committing the first step after the claim: %v", err)
	}
	e.wantEvents("the history", e.history("a"), p.NewEvents)
	e.noStep(e.at(time.Hour), "the step consumed the start")
}

// testFusedStartDeclined has run return a first step that sends an event
// to another instance: committed with the creation or declined, the same
// work item's step commits, and the event arrives.
func testFusedStartDeclined(t *testing.T, e *env) {
	e.startCommitter()
	e.start("b", nil)
	var params *backend.CompleteOrchestrationStepParams
	var given *backend.OrchestrationWorkItem
	out, err := e.createStep(e.createParams("a"), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		given = wi
		params = stepParams(wi, e.t0)
		params.Messages = []*backend.Message{raised("b", "a-to-b", "hello")}
		return &backend.StepCommit{Params: params}
	})
	e.noErr("CreateInstanceStep", err)
	if out == nil || out.Step == nil || out.Step != given {
		t.Fatalf("outcome %+v; want the step run was given", out)
	}
	if !out.Committed {
		e.noStep(e.at(30*time.Second), "the declined step's claim holds it")
		if err := e.b.CompleteOrchestrationStep(e.ctx, params); err != nil {
			t.Fatalf("committing the declined step: %v", err)
		}
	}
	wi := e.claimStep("b", e.at(time.Second))
	e.wantMessages(wi, "a-to-b")
	e.commit(wi, e.at(time.Second), nil)
	e.noStep(e.at(time.Hour), "a's step consumed its start, b's its message")
}

// testFusedStartUnconsumed has run return a first step that consumes
// nothing: the start message stays for the next step, with the next
// attempt number.
func testFusedStartUnconsumed(t *testing.T, e *env) {
	e.startCommitter()
	var params *backend.CompleteOrchestrationStepParams
	out, err := e.createStep(e.createParams("a"), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		params = stepParams(wi, e.t0)
		params.ConsumedMessageIDs, params.NewEvents = nil, params.NewEvents[:1]
		return &backend.StepCommit{Params: params}
	})
	e.noErr("CreateInstanceStep", err)
	if out == nil || out.Step == nil {
		t.Fatalf("outcome %+v; want the claimed step", out)
	}
	if !out.Committed {
		if err := e.b.CompleteOrchestrationStep(e.ctx, params); err != nil {
			t.Fatalf("committing the declined step: %v", err)
		}
	}
	wi := e.claimStep("a", e.at(time.Second))
	e.wantMessages(wi, backend.StartMessageID("a", "a-e1"))
	if wi.Attempt != 2 {
		t.Fatalf("the next step has attempt %d, want 2", wi.Attempt)
	}
	e.commit(wi, e.at(time.Second), nil)
	e.noStep(e.at(time.Hour), "the second step consumed the start")
}

// testFusedStartExists creates an instance whose ID exists: the creation
// is refused as CreateInstance refuses it, and run is not called.
func testFusedStartExists(t *testing.T, e *env) {
	e.startCommitter()
	e.create("a", nil)
	called := false
	_, err := e.createStep(e.createParams("a"), func(*backend.OrchestrationWorkItem) *backend.StepCommit {
		called = true
		return nil
	})
	if !errors.Is(err, backend.ErrInstanceExists) || called {
		t.Fatalf("CreateInstanceStep of an existing ID: %v (run called: %v), want ErrInstanceExists", err, called)
	}
	wi := e.claimStep("a", e.t0)
	if wi.Instance.ExecutionID != "a-e1" || wi.Attempt != 1 {
		t.Fatalf("the existing instance's step: %+v", wi)
	}
}

// testFusedStartLater creates an instance that starts later: it is
// created as CreateInstance creates it, run is not called, and the step is
// claimable once the start time has come.
func testFusedStartLater(t *testing.T, e *env) {
	e.startCommitter()
	c := e.createParams("a")
	c.StartAt = e.at(time.Minute)
	out, err := e.createStep(c, func(*backend.OrchestrationWorkItem) *backend.StepCommit {
		t.Error("run called for an instance that starts later")
		return nil
	})
	e.noErr("CreateInstanceStep", err)
	if out == nil || out.Step != nil {
		t.Fatalf("outcome %+v; want no step", out)
	}
	e.noStep(e.at(time.Second), "the instance starts in a minute")
	e.claimStep("a", e.at(time.Minute))
}

// testFusedStartSDK runs sequences of activities started by a client whose
// ClientOptions.Worker is the running worker: on a backend with the
// capability, each first step runs with its creation (FusedStarts); on
// one without, none does; the results are the same.
func testFusedStartSDK(t *testing.T, be *env) {
	_, capable := be.b.(backend.StartStepCommitter)
	e := newSDKEnvOpts(t, be.b, &duro.WorkerOptions{}, func(r *duro.Registry) {
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
	e.client = duro.NewClient(be.b, &duro.ClientOptions{WaitPollInterval: 10 * time.Millisecond, Worker: e.worker})
	// A first instance makes sure the worker's loops run (a worker that
	// just started may have no slot to reserve yet).
	mustOutput[int](t, e.run(t, "Chain", 0, duro.StartOptions{InstanceID: "warm-up"}))
	before := e.worker.Stats().FusedStarts
	for run := range 3 {
		got := mustOutput[int](t, e.run(t, "Chain", run, duro.StartOptions{InstanceID: fmt.Sprintf("chain-%d", run)}))
		if got != run+3 {
			t.Fatalf("chain(%d) = %d, want %d", run, got, run+3)
		}
	}
	// An orchestration the worker does not register is created for
	// another worker to claim.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.client.Start(ctx, "Unregistered", nil, duro.StartOptions{InstanceID: "other"}); err != nil {
		t.Fatalf("start of an orchestration the worker lacks: %v", err)
	}
	if err := e.worker.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	st := e.worker.Stats()
	switch {
	case capable && st.FusedStarts-before != 3:
		t.Fatalf("%d fused starts of 3 on a backend.StartStepCommitter: %+v", st.FusedStarts-before, st)
	case !capable && st.FusedStarts != 0:
		t.Fatalf("%d fused starts on a backend without backend.StartStepCommitter", st.FusedStarts)
	}
	if st.ActivitiesCompleted != 12 || st.StaleCompletionsRejected != 0 {
		t.Fatalf("stats %+v; want 12 activities completed, none stale", st)
	}
	if inst, err := e.be.GetInstance(ctx, "other"); err != nil || inst.Status != backend.StatusPending {
		t.Fatalf("the unregistered orchestration's instance: %+v, %v; want it Pending", inst, err)
	}
}
