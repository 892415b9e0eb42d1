package backendtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// operatorTests check what operators' actions need from a backend: a task
// enqueued again by a decision or a rewind tells its claims how many
// deliveries came before it (its poison budget starts afresh), and a result
// that arrives after its instance ended is kept in the instance's history.
func operatorTests() []test {
	return []test{
		{"ClaimsReturnPriorAttempts", testClaimsReturnPriorAttempts},
		{"LateResultKeptInHistory", testLateResultKept},
		{"LateResultAfterRewindOrPurgeRejected", testLateResultAfterRewindOrPurge},
		{"ExclusiveMessageRefusedWhileOneIsQueued", testExclusiveMessage},
		{"ExclusiveMessageUnderConcurrency", testExclusiveConcurrent},
		{"ResumeOutcomesStored", testResumeOutcomesStored},
	}
}

// testClaimsReturnPriorAttempts enqueues tasks with and without earlier
// deliveries and claims them through every claim path: each work item
// carries the task's PriorAttempts, on every delivery, so the worker can
// count the deliveries since the task was enqueued (Attempt -
// PriorAttempts) while attempt numbers continue.
func testClaimsReturnPriorAttempts(t *testing.T, e *env) {
	c := e.start("a", nil)
	fresh, retried := task(c, 1), task(c, 2)
	retried.ID += "/retry3"
	retried.PriorAttempts = 3
	e.enqueue(raised("a", "go", "go"))
	now := e.at(time.Minute)
	e.commit(e.claimStep("a", now), now, func(p *backend.CompleteOrchestrationStepParams) {
		p.ActivityTasks = []*backend.ActivityTask{fresh, retried}
	})
	want := map[string]int{fresh.ID: 0, retried.ID: 3}
	check := func(how string, wi *backend.ActivityWorkItem, attempt int) {
		t.Helper()
		if got := wi.Task.PriorAttempts; got != want[wi.Task.ID] {
			t.Fatalf("%s of %q: PriorAttempts = %d, want %d", how, wi.Task.ID, got, want[wi.Task.ID])
		}
		if wi.Attempt != attempt {
			t.Fatalf("%s of %q: Attempt = %d, want %d", how, wi.Task.ID, wi.Attempt, attempt)
		}
	}
	check("ClaimActivity", e.claimActivity(fresh.ID, now), 1)
	check("ClaimActivity", e.claimActivity(retried.ID, now), 4)
	// The leases lapse: the next deliveries keep the task's PriorAttempts.
	later := e.at(5 * time.Minute)
	if bc, ok := e.b.(backend.BatchClaimer); ok {
		wis, err := bc.ClaimActivities(e.ctx, e.claimParams(later), 10)
		e.noErr("ClaimActivities", err)
		if len(wis) != 2 {
			t.Fatalf("ClaimActivities claimed %d tasks, want 2", len(wis))
		}
		for _, wi := range wis {
			check("ClaimActivities", wi, want[wi.Task.ID]+2)
			e.noErr("CompleteActivity", e.b.CompleteActivity(e.ctx, completed(wi, later)))
		}
	} else {
		for _, tk := range []*backend.ActivityTask{fresh, retried} {
			wi := e.claimActivity(tk.ID, later)
			check("ClaimActivity", wi, want[tk.ID]+2)
			e.noErr("CompleteActivity", e.b.CompleteActivity(e.ctx, completed(wi, later)))
		}
	}

	// A task claimed by the step that enqueues it carries it too.
	sc, ok := e.b.(backend.StepActivityClaimer)
	if !ok {
		return
	}
	eager := task(c, 3)
	eager.ID += "/rewind1"
	eager.PriorAttempts = 7
	want[eager.ID] = 7
	e.enqueue(raised("a", "go-eager", "go-eager"))
	at := e.at(6 * time.Minute)
	wi := e.claimStep("a", at) // with the two results
	p := stepParams(wi, at)
	p.ActivityTasks = []*backend.ActivityTask{eager}
	wis, err := sc.CompleteOrchestrationStepClaim(e.ctx, p, e.claimParams(at), 1)
	e.noErr("CompleteOrchestrationStepClaim", err)
	if len(wis) != 1 {
		t.Fatalf("CompleteOrchestrationStepClaim claimed %d tasks, want 1", len(wis))
	}
	check("CompleteOrchestrationStepClaim", wis[0], 8)
	check("ClaimActivity after the eager lease lapsed", e.claimActivity(eager.ID, e.at(10*time.Minute)), 9)
}

// testLateResultKept ends instances (Terminated, Completed, Failed) while
// a delivery of one of their activity tasks runs. The delivery keeps its
// lease (it may renew it), nobody else gets the task, and its result,
// success or failure, is appended to the instance's history as a
// LateResult event (with the activity's name and the status the instance
// had), once: CompleteActivity says so with ErrInstanceFinished, and a
// second try is ErrLeaseLost. A task nobody was running is gone with the
// instance.
func testLateResultKept(t *testing.T, e *env) {
	for i, status := range []backend.Status{backend.StatusTerminated, backend.StatusCompleted, backend.StatusFailed} {
		id := fmt.Sprintf("late-%d", i)
		_, tasks := e.startWithTasks(id, 3)
		running := e.claimActivity(tasks[0].ID, e.t0)
		failing := e.claimActivity(tasks[1].ID, e.t0)
		// tasks[2] was never delivered.
		e.end(id, status, e.at(time.Second))
		before := len(e.history(id))

		e.noErr("RenewActivityLease of a delivery whose instance ended",
			e.b.RenewActivityLease(e.ctx, heartbeat(running, e.at(2*time.Second), nil)))
		e.noActivity(e.at(time.Hour), "the instance ended: its tasks are not delivered again")

		res := completed(running, e.at(3*time.Second))
		res.Result.Result = []byte(`"ch_1"`)
		err := e.b.CompleteActivity(e.ctx, res)
		e.wantErr(fmt.Sprintf("CompleteActivity after the instance was %s", status), err, backend.ErrInstanceFinished)
		if errors.Is(err, backend.ErrLeaseLost) {
			t.Fatalf("CompleteActivity after the instance was %s: %v, which also wraps ErrLeaseLost", status, err)
		}
		fail := &backend.CompleteActivityParams{TaskID: failing.Task.ID, Attempt: failing.Attempt, Now: e.at(4 * time.Second),
			Result: &backend.Event{Type: backend.EventTaskFailed, Timestamp: e.at(4 * time.Second), TaskID: failing.Task.TaskID,
				Attempt: failing.Attempt, Failure: &backend.Failure{Message: "card declined", Type: "Declined"}}}
		e.wantErr("CompleteActivity(TaskFailed) after the instance ended", e.b.CompleteActivity(e.ctx, fail), backend.ErrInstanceFinished)

		h := e.history(id)
		e.wantEvents(fmt.Sprintf("history of the %s instance after the late results", status), h[before:], []*backend.Event{
			{Type: backend.EventLateResult, Timestamp: e.at(3 * time.Second), TaskID: running.Task.TaskID, Name: "act",
				Attempt: running.Attempt, Result: []byte(`"ch_1"`), Status: status},
			{Type: backend.EventLateResult, Timestamp: e.at(4 * time.Second), TaskID: failing.Task.TaskID, Name: "act",
				Attempt: failing.Attempt, Failure: fail.Result.Failure, Status: status},
		})
		e.wantErr("CompleteActivity again", e.b.CompleteActivity(e.ctx, res), backend.ErrLeaseLost)
		e.wantErr("CompleteActivity of the task nobody ran", e.b.CompleteActivity(e.ctx,
			&backend.CompleteActivityParams{TaskID: tasks[2].ID, Attempt: 1, Result: res.Result, Now: e.at(5 * time.Second)}), backend.ErrLeaseLost)
		if got := len(e.history(id)); got != before+2 {
			t.Fatalf("history has %d events, want %d: a rejected completion appended one", got, before+2)
		}
		e.wantStatus(id, status)
	}
	e.noStep(e.at(time.Hour), "finished instances take no results")
}

// testLateResultAfterRewindOrPurge: a delivery still running when its
// instance failed belongs to the failed run; after a rewind (which
// enqueues the task again if it must run) or a purge its completion is
// stale (ErrLeaseLost) and delivers nothing. A handed-back delivery of a
// finished instance's task leaves nothing to deliver again.
func testLateResultAfterRewindOrPurge(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("rw", 1)
	wi := e.claimActivity(tasks[0].ID, e.t0)
	e.end("rw", backend.StatusFailed, e.at(time.Second))
	e.noErr("RewindInstance", e.b.RewindInstance(e.ctx, &backend.RewindParams{InstanceID: "rw", MessageID: "rewind", Reason: "fixed", Now: e.at(2 * time.Second)}))
	e.wantErr("CompleteActivity of the failed run's delivery after a rewind", e.b.CompleteActivity(e.ctx, completed(wi, e.at(3*time.Second))), backend.ErrLeaseLost)
	e.wantMessages(e.claimStep("rw", e.at(4*time.Second)), "rewind")

	_, tasks = e.startWithTasks("pg", 1)
	wi = e.claimActivity(tasks[0].ID, e.t0)
	e.end("pg", backend.StatusTerminated, e.at(time.Second))
	e.noErr("PurgeInstance", e.b.PurgeInstance(e.ctx, "pg"))
	e.wantErr("CompleteActivity after a purge", e.b.CompleteActivity(e.ctx, completed(wi, e.at(3*time.Second))), backend.ErrLeaseLost)

	_, tasks = e.startWithTasks("ab", 1)
	wi = e.claimActivity(tasks[0].ID, e.t0)
	e.end("ab", backend.StatusTerminated, e.at(time.Second))
	e.droppedResult("AbandonActivity of a finished instance's task", e.b.AbandonActivity(e.ctx,
		&backend.AbandonParams{ID: wi.Task.ID, Attempt: int64(wi.Attempt)}))
	e.noActivity(e.at(time.Hour), "a handed-back task of a finished instance is not delivered again")
	e.wantErr("CompleteActivity after handing the task back", e.b.CompleteActivity(e.ctx, completed(wi, e.at(3*time.Second))), backend.ErrLeaseLost)
}

// exclusiveResume is an exclusive resume request, as Client.Resume sends.
func exclusiveResume(id, msgID string) *backend.Message {
	m := control(id, msgID, backend.EventExecutionResumed)
	m.Exclusive = true
	return m
}

// testExclusiveMessage: an exclusive message is refused with
// ErrMessageQueued while the inbox holds another message of its type, and
// changes nothing; the same ID again is the usual no-op; other types, and
// non-exclusive messages, are not affected; once the queued message is
// consumed, the next exclusive one is accepted.
func testExclusiveMessage(t *testing.T, e *env) {
	e.start("a", nil)
	e.suspend("a", e.at(time.Second), &backend.Suspension{Reason: "hold", Since: e.at(time.Second)}, nil)
	e.enqueue(exclusiveResume("a", "resume-1"))
	err := e.b.EnqueueMessage(e.ctx, exclusiveResume("a", "resume-2"))
	e.wantErr("exclusive resume while another is queued", err, backend.ErrMessageQueued)
	e.noErr("the queued exclusive resume sent again", e.b.EnqueueMessage(e.ctx, exclusiveResume("a", "resume-1")))
	sus := control("a", "suspend-x", backend.EventExecutionSuspended)
	sus.Exclusive = true
	e.noErr("an exclusive message of another type", e.b.EnqueueMessage(e.ctx, sus))
	e.enqueue(control("a", "resume-plain", backend.EventExecutionResumed)) // not exclusive
	e.enqueue(raised("a", "held", "held"))

	now := e.at(time.Minute)
	wi := e.claimStep("a", now)
	e.wantMessages(wi, "resume-1", "suspend-x", "resume-plain")
	e.wantErr("exclusive resume during the step that consumes the queued one",
		e.b.EnqueueMessage(e.ctx, exclusiveResume("a", "resume-3")), backend.ErrMessageQueued)
	e.commit(wi, now, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusSuspended
		p.Suspension = &backend.Suspension{Reason: "hold", Since: now}
	})
	e.noErr("exclusive resume once the queued ones are consumed", e.b.EnqueueMessage(e.ctx, exclusiveResume("a", "resume-3")))
	e.wantMessages(e.claimStep("a", e.at(2*time.Minute)), "resume-3")

	_, err = e.b.GetInstance(e.ctx, "nope")
	e.wantErr("GetInstance(nope)", err, backend.ErrInstanceNotFound)
	e.wantErr("exclusive message to an unknown instance", e.b.EnqueueMessage(e.ctx, exclusiveResume("nope", "r")), backend.ErrInstanceNotFound)
}

// testExclusiveConcurrent sends exclusive messages to one instance from
// many goroutines at once: exactly one is queued, every other call gets
// ErrMessageQueued, and the inbox holds the one accepted.
func testExclusiveConcurrent(t *testing.T, e *env) {
	e.start("a", nil)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = e.b.EnqueueMessage(e.ctx, exclusiveResume("a", fmt.Sprintf("resume-%d", i)))
		}()
	}
	close(start)
	wg.Wait()
	accepted := -1
	for i, err := range errs {
		switch {
		case err == nil && accepted >= 0:
			t.Fatalf("exclusive resumes %d and %d were both accepted", accepted, i)
		case err == nil:
			accepted = i
		case !errors.Is(err, backend.ErrMessageQueued):
			t.Fatalf("exclusive resume %d: %v, want nil or ErrMessageQueued", i, err)
		}
	}
	if accepted < 0 {
		t.Fatal("no exclusive resume was accepted")
	}
	e.wantMessages(e.claimStep("a", e.at(time.Minute)), fmt.Sprintf("resume-%d", accepted))
}

// testResumeOutcomesStored: a step's ResumeOutcomes replace the stored
// ones (nil keeps them); GetInstance, ListInstances and the next claim
// return them, times in UTC; they survive a continue-as-new and are
// cleared when a finished instance is replaced. History events carry a
// ResumeOutcome.
func testResumeOutcomesStored(t *testing.T, e *env) {
	e.start("a", nil)
	now := e.at(time.Minute)
	outs := []*backend.ResumeOutcome{
		{ID: "resume/1", Status: backend.ResumeRefused, Reason: "task 1 awaits a decision", At: now.In(time.FixedZone("x", 3600)),
			Decisions: []*backend.DecisionOutcome{{TaskID: 0, Action: backend.DecisionRetry, Status: backend.ResumeRefused, Reason: "not applied"}}},
		{ID: "resume/2", Status: backend.ResumeApplied, At: now},
	}
	resumed := &backend.Event{Type: backend.EventExecutionResumed, Timestamp: now, Reason: "checked", ResumeOutcome: outs[1]}
	e.enqueue(raised("a", "go", "go"))
	e.commit(e.claimStep("a", now), now, func(p *backend.CompleteOrchestrationStepParams) {
		p.ResumeOutcomes = outs
		p.NewEvents = append(p.NewEvents, resumed)
	})
	want := func(what string, got []*backend.ResumeOutcome) {
		t.Helper()
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(outs)
		for _, o := range got {
			if o.At.Location() != time.UTC {
				t.Fatalf("%s: ResumeOutcome.At %s is not in UTC", what, o.At)
			}
		}
		if !reflect.DeepEqual(normOutcomes(got), normOutcomes(outs)) {
			t.Fatalf("%s: ResumeOutcomes\ngot  %s\nwant %s", what, g, w)
		}
	}
	want("GetInstance", e.instance("a").ResumeOutcomes)
	page, err := e.b.ListInstances(e.ctx, &backend.ListInstancesParams{})
	e.noErr("ListInstances", err)
	want("ListInstances", page.Instances[0].ResumeOutcomes)
	h := e.history("a")
	if got := h[len(h)-1].ResumeOutcome; got == nil || got.ID != "resume/2" || got.Status != backend.ResumeApplied || !got.At.Equal(now) {
		t.Fatalf("history's ExecutionResumed event: ResumeOutcome %+v", got)
	}

	e.enqueue(raised("a", "go2", "go2"))
	later := e.at(2 * time.Minute)
	wi := e.claimStep("a", later)
	want("the claimed step's Instance", wi.Instance.ResumeOutcomes)
	e.commit(wi, later, func(p *backend.CompleteOrchestrationStepParams) {
		p.ContinueAsNew = &backend.ContinueAsNew{NewExecutionID: "a-e2"}
	})
	want("GetInstance after a step without ResumeOutcomes and a continue-as-new", e.instance("a").ResumeOutcomes)

	e.end("a", backend.StatusCompleted, e.at(3*time.Minute))
	e.create("a", func(p *backend.CreateInstanceParams) {
		p.ExecutionID, p.IfExists, p.Now = "a-e3", backend.IfExistsReplaceFinished, e.at(4*time.Minute)
	})
	if got := e.instance("a").ResumeOutcomes; len(got) != 0 {
		t.Fatalf("a replaced instance keeps the old one's resume outcomes: %+v", got)
	}
}

func normOutcomes(os []*backend.ResumeOutcome) []backend.ResumeOutcome {
	out := make([]backend.ResumeOutcome, len(os))
	for i, o := range os {
		out[i] = *o
		out[i].At = normTime(o.At)
	}
	return out
}
