package backendtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// sdkOperatorTests check operators' actions end to end: a rewind and a
// retry decision give the task a fresh delivery budget.
func sdkOperatorTests() []test {
	return []test{
		{"RewoundPoisonedActivityRuns", testRewoundPoisonedActivityRuns},
		{"RetryDecisionGetsFreshBudget", testRetryDecisionGetsFreshBudget},
		{"TerminateDuringAtMostOnceActivityKeepsResult", testTerminateKeepsLateResult},
		{"SecondResumeWhileOneIsQueuedRefused", testSecondResumeRefused},
		{"ResumeRefusedWhenTasksChangedIsVisible", testResumeRefusedVisible},
		{"EntityResumeOutcome", testEntityResumeOutcome},
	}
}

// registerShip registers "Ship": one "Label" call limited to two
// deliveries, whose result is the output.
func registerShip(r *duro.Registry) {
	duro.RegisterOrchestration(r, "Ship", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
		var s string
		err := ctx.CallActivity("Label", "parcel", duro.CallOptions{MaxDeliveries: 2}).Await(&s)
		return s, err
	})
}

// testRewoundPoisonedActivityRuns poisons an activity (two deliveries die
// before their code finishes, as crashed workers' would; the third is over
// the call's MaxDeliveries of 2), then rewinds: the rewound task is
// delivered once more, with the next attempt number, and its code runs
// instead of being poisoned again for the deliveries before the rewind.
func testRewoundPoisonedActivityRuns(t *testing.T, e *env) {
	// The orchestration worker does not register Label, so it claims no
	// Label task: the deliveries below are the only ones until the activity
	// worker starts.
	first := newSDKEnv(t, e.b, registerShip)
	ctx := bg(t)
	id, err := first.client.Start(ctx, "Ship", nil)
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 2; n++ {
		var wi *backend.ActivityWorkItem
		if !poll(30*time.Second, func() bool {
			wi, err = e.b.ClaimActivity(ctx, &backend.ClaimParams{Owner: "crashed", LeaseDuration: time.Millisecond})
			return err != nil || wi != nil
		}) || err != nil {
			t.Fatalf("claim %d of Label: %v", n, err)
		}
		if wi.Task.Name != "Label" || wi.Attempt != n {
			t.Fatalf("claim %d: %s attempt %d", n, wi.Task.Name, wi.Attempt)
		}
	}

	var runs atomic.Int32
	var attempt atomic.Int64
	second := newSDKEnv(t, e.b, func(r *duro.Registry) {
		registerShip(r)
		duro.RegisterActivity(r, "Label", func(ctx duro.ActivityContext, in string) (string, error) {
			runs.Add(1)
			attempt.Store(int64(ctx.Attempt()))
			return "label for " + in, nil
		})
	})
	inst, err := second.client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Status != duro.StatusFailed || inst.Failure == nil || inst.Failure.Type != duro.FailureTypePoisoned || runs.Load() != 0 {
		t.Fatalf("before the rewind: %s, failure %+v, code ran %d times; want Failed, poisoned, not run",
			inst.Status, inst.Failure, runs.Load())
	}
	if err := second.client.Rewind(ctx, id, "looked into it"); err != nil {
		t.Fatal(err)
	}
	inst, err = second.client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Status != duro.StatusCompleted {
		t.Fatalf("after the rewind: %s, failure %+v, code ran %d times; want Completed (the rewind starts a fresh delivery budget)",
			inst.Status, inst.Failure, runs.Load())
	}
	if got := mustOutput[string](t, inst); got != "label for parcel" || runs.Load() != 1 {
		t.Fatalf("after the rewind: %q, code ran %d times", got, runs.Load())
	}
	// Attempt numbers continue past the three poisoned deliveries (A1).
	if got := attempt.Load(); got != 4 {
		t.Fatalf("rewound delivery ran as attempt %d, want 4", got)
	}
}

// testRetryDecisionGetsFreshBudget suspends an at-most-once task limited to
// two deliveries for a decision at its second delivery; the operator's
// RetryTask runs the code as attempt 3, which is the retried task's first
// delivery, not a third one beyond the limit.
func testRetryDecisionGetsFreshBudget(t *testing.T, e *env) {
	var runs atomic.Int32
	second := countingCharge(&runs)
	opts := duro.CallOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend, MaxDeliveries: 2}
	id, client, _ := redeliverUntil(t, e.b, opts, second, duro.StatusSuspended)
	ctx := bg(t)
	inst, err := client.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s := inst.Suspension; s == nil || len(s.Pending) != 1 || s.Pending[0].Attempt != 2 {
		t.Fatalf("suspension %+v", s)
	}
	if err := client.Resume(ctx, id, "the provider has no charge", duro.RetryTask(0)); err != nil {
		t.Fatal(err)
	}
	inst, err = client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustOutput[string](t, inst); got != "charged on attempt 3" || runs.Load() != 1 {
		t.Fatalf("after RetryTask: %q, code ran %d times; want \"charged on attempt 3\" after 1 run", got, runs.Load())
	}
}

// logRecords is a slog.Handler that keeps the messages of the records it
// handles, with their attributes, for tests that check what a worker logs.
type logRecords struct {
	mu    *sync.Mutex
	lines *[]string
	attrs []slog.Attr
}

func newLogRecords() *logRecords { return &logRecords{mu: &sync.Mutex{}, lines: new([]string)} }

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.lines = append(*h.lines, b.String())
	return nil
}

func (h *logRecords) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *logRecords) WithGroup(string) slog.Handler { return h }

// find returns the records whose message contains s.
func (h *logRecords) find(s string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, l := range *h.lines {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// testTerminateKeepsLateResult terminates an instance while its
// at-most-once Charge runs. When Charge returns, its result is kept in the
// instance's history (a LateResult event with the charge), and the worker
// logs that the instance had ended rather than that a newer delivery holds
// the task.
func testTerminateKeepsLateResult(t *testing.T, e *env) {
	logs := newLogRecords()
	started, release := make(chan struct{}), make(chan struct{})
	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
		close(started)
		<-release
		return "ch_1", nil
	})
	duro.RegisterOrchestration(reg, "Checkout", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
		var ch string
		err := ctx.CallActivity("Charge", 42, duro.CallOptions{Guarantee: duro.AtMostOnce}).Await(&ch)
		return ch, err
	})
	w, err := duro.NewWorker(e.b, reg, &duro.WorkerOptions{PollInterval: 10 * time.Millisecond, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("worker stop: %v", err)
		}
	})
	client := duro.NewClient(e.b, &duro.ClientOptions{WaitPollInterval: 10 * time.Millisecond})
	ctx := bg(t)
	id, err := client.Start(ctx, "Checkout", nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("Charge never ran")
	}
	if err := client.Terminate(ctx, id, "customer left"); err != nil {
		t.Fatal(err)
	}
	if inst, err := client.Wait(ctx, id); err != nil || inst.Status != duro.StatusTerminated {
		t.Fatalf("after Terminate: %+v, %v", inst, err)
	}
	close(release)
	released = true

	var late *backend.Event
	waitUntil(t, func() bool {
		h, err := client.History(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range h {
			if ev.Type == backend.EventLateResult {
				late = ev
			}
		}
		return late != nil || len(logs.find("newer delivery")) > 0
	})
	if late == nil {
		t.Fatalf("the charge's result is not in the history; the worker logged %q", logs.find("duro: "))
	}
	if late.Name != "Charge" || string(late.Result) != `"ch_1"` || late.Status != duro.StatusTerminated || late.Attempt != 1 {
		t.Fatalf("late result %+v", late)
	}
	waitUntil(t, func() bool { return len(logs.find("after its instance ended")) > 0 })
	if got := logs.find("newer delivery"); len(got) > 0 {
		t.Fatalf("the worker logged %q", got)
	}
	if got := logs.find("after its instance ended"); !strings.Contains(got[0], "status=Terminated") {
		t.Fatalf("the log does not say how the instance ended: %q", got)
	}
}

// testSecondResumeRefused: while a resume (RetryTask) is queued, a second
// one (CompleteTask) is refused at once with ErrResumePending instead of
// being queued and silently ignored; the first one's outcome is pending
// until a worker applies it, then applied, decision by decision.
func testSecondResumeRefused(t *testing.T, e *env) {
	var runs atomic.Int32
	second := countingCharge(&runs)
	opts := duro.CallOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend}
	id, client, w := redeliverUntil(t, e.b, opts, second, duro.StatusSuspended)
	ctx := bg(t)
	if err := w.Stop(ctx); err != nil { // no step applies the resume yet
		t.Fatal(err)
	}
	rid, err := client.RequestResume(ctx, id, "the provider has no charge", duro.RetryTask(0))
	if err != nil {
		t.Fatal(err)
	}
	if o, err := client.ResumeOutcome(ctx, id, rid); err != nil || o.Status != duro.ResumePending {
		t.Fatalf("outcome of the queued resume: %+v, %v; want Pending", o, err)
	}
	err = client.Resume(ctx, id, "the provider has the charge", duro.CompleteTask(0, "ch_by_hand"))
	if !errors.Is(err, duro.ErrResumePending) {
		t.Fatalf("a second resume while the first is queued: %v; want ErrResumePending", err)
	}

	third := newSDKEnv(t, e.b, second)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	o, err := third.client.WaitResume(wctx, id, rid)
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != rid || o.Status != duro.ResumeApplied || len(o.Decisions) != 1 || o.Decisions[0].TaskID != 0 ||
		o.Decisions[0].Action != duro.DecisionRetry || o.Decisions[0].Status != duro.ResumeApplied {
		t.Fatalf("outcome %+v (decisions %+v); want the retry applied", o, o.Decisions)
	}
	inst, err := third.client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustOutput[string](t, inst); got != "charged on attempt 3" || runs.Load() != 1 {
		t.Fatalf("got %q after %d runs", got, runs.Load())
	}
	if inst.LastResume == nil || inst.LastResume.ID != rid || inst.LastResume.Status != duro.ResumeApplied {
		t.Fatalf("LastResume %+v", inst.LastResume)
	}
}

// testResumeRefusedVisible: an operator decides the one task the instance
// waits for, but before the step applies the resume a parallel
// at-most-once task becomes a possible duplicate too. The step refuses the
// resume (a decision for the new task is missing), and the refusal is
// visible: its outcome names the reason, its decision is marked refused,
// the instance's LastResume and its history say so. A resume deciding
// both tasks is then applied.
func testResumeRefusedVisible(t *testing.T, e *env) {
	amo := duro.CallOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend}
	pair := func(r *duro.Registry) {
		duro.RegisterOrchestration(r, "PayTwo", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			a, b := ctx.CallActivity("A", 1, amo), ctx.CallActivity("B", 2, amo)
			var sa, sb string
			if err := a.Await(&sa); err != nil {
				return "", err
			}
			if err := b.Await(&sb); err != nil {
				return "", err
			}
			return sa + "+" + sb, nil
		})
	}
	running := make(chan string, 2)
	first := newSDKEnv(t, e.b, func(r *duro.Registry) {
		pair(r)
		for _, name := range []string{"A", "B"} {
			duro.RegisterActivity(r, name, func(ctx duro.ActivityContext, _ int) (string, error) {
				running <- name
				<-ctx.Done()
				return "", ctx.Err()
			})
		}
	})
	ctx := bg(t)
	id, err := first.client.Start(ctx, "PayTwo", nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case <-running:
		case <-ctx.Done():
			t.Fatal("A and B never both ran")
		}
	}
	stopped, stop := context.WithCancel(ctx)
	stop()
	_ = first.worker.Stop(stopped) // both deliveries abandoned after their code started

	// Act as B's next delivery on an activity worker: hold it for now.
	var bwi *backend.ActivityWorkItem
	var others []*backend.ActivityWorkItem
	for bwi == nil {
		wi, err := e.b.ClaimActivity(ctx, &backend.ClaimParams{Owner: "test", LeaseDuration: time.Hour})
		if err != nil || wi == nil {
			t.Fatalf("ClaimActivity: %+v, %v", wi, err)
		}
		if wi.Task.Name == "B" {
			bwi = wi
		} else {
			others = append(others, wi)
		}
	}
	for _, wi := range others { // A's delivery did not start: hand it back
		if err := e.b.AbandonActivity(ctx, &backend.AbandonParams{ID: wi.Task.ID, Attempt: int64(wi.Attempt)}); err != nil {
			t.Fatal(err)
		}
	}
	var runs atomic.Int32
	second := func(r *duro.Registry) {
		pair(r)
		duro.RegisterActivity(r, "A", func(ctx duro.ActivityContext, _ int) (string, error) {
			runs.Add(1)
			return "a-ok", nil
		})
		duro.RegisterActivity(r, "B", func(ctx duro.ActivityContext, _ int) (string, error) {
			runs.Add(1)
			return "b-ok", nil
		})
	}
	w2 := newSDKEnv(t, e.b, second)
	waitStatus(t, w2.client, id, duro.StatusSuspended)
	if err := w2.worker.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	client := w2.client
	inst, err := client.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s := inst.Suspension; s == nil || len(s.Pending) != 1 || s.Pending[0].Name != "A" {
		t.Fatalf("suspension %+v", s)
	}
	aTask := inst.Suspension.Pending[0].TaskID
	// B's delivery finds a possible duplicate too; the step that records
	// it has not run when the operator resumes, deciding A only.
	dup := &backend.Event{Type: backend.EventTaskDuplicate, TaskID: bwi.Task.TaskID, Name: "B", Attempt: bwi.Attempt,
		FireAt: bwi.PreviousDeliveryAt, Timestamp: time.Now().UTC()}
	if err := e.b.CompleteActivity(ctx, &backend.CompleteActivityParams{TaskID: bwi.Task.ID, Attempt: bwi.Attempt, Result: dup}); err != nil {
		t.Fatal(err)
	}
	rid, err := client.RequestResume(ctx, id, "A checked", duro.RetryTask(aTask))
	if err != nil {
		t.Fatal(err)
	}

	w3 := newSDKEnv(t, e.b, second)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	o, err := w3.client.WaitResume(wctx, id, rid)
	if err != nil {
		t.Fatalf("outcome of the resume: %v", err)
	}
	want := fmt.Sprintf("task %d awaits a decision", bwi.Task.TaskID)
	if o.Status != duro.ResumeRefused || !strings.Contains(o.Reason, want) || len(o.Decisions) != 1 ||
		o.Decisions[0].TaskID != aTask || o.Decisions[0].Status != duro.ResumeRefused {
		t.Fatalf("outcome %+v (decisions %+v); want refused, %q, its decision refused", o, o.Decisions, want)
	}
	inst, err = client.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Status != duro.StatusSuspended || len(inst.Suspension.Pending) != 2 {
		t.Fatalf("after the refusal: %s, suspension %+v", inst.Status, inst.Suspension)
	}
	if inst.LastResume == nil || inst.LastResume.ID != rid || inst.LastResume.Status != duro.ResumeRefused {
		t.Fatalf("LastResume %+v", inst.LastResume)
	}
	h, err := client.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	inHistory := false
	for _, ev := range h {
		inHistory = inHistory || ev.ResumeOutcome != nil && ev.ResumeOutcome.ID == rid && ev.ResumeOutcome.Status == duro.ResumeRefused
	}
	if !inHistory {
		t.Fatal("the refusal is not in the history")
	}
	if runs.Load() != 0 {
		t.Fatalf("code ran %d times before any decision applied", runs.Load())
	}

	rid2, err := client.RequestResume(ctx, id, "both checked", duro.RetryTask(aTask), duro.CompleteTask(bwi.Task.TaskID, "b-by-hand"))
	if err != nil {
		t.Fatal(err)
	}
	if o, err := w3.client.WaitResume(wctx, id, rid2); err != nil || o.Status != duro.ResumeApplied || len(o.Decisions) != 2 {
		t.Fatalf("second resume: %+v, %v", o, err)
	}
	inst, err = client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustOutput[string](t, inst); got != "a-ok+b-by-hand" || runs.Load() != 1 {
		t.Fatalf("got %q after %d runs", got, runs.Load())
	}
}

// testEntityResumeOutcome: a resume of an entity suspended for a decision
// has an outcome too.
func testEntityResumeOutcome(t *testing.T, e *env) {
	fb := &failingCommits{Backend: e.b, prefix: "@wallet@"}
	env := newSDKEnv(t, fb, func(r *duro.Registry) {
		duro.RegisterEntityOperation(r, "wallet", "debit", func(ctx duro.EntityContext, s *counter, n int) (int, error) {
			s.Value -= n
			return s.Value, nil
		}, duro.OperationOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend})
		duro.RegisterOrchestration(r, "Debit", func(ctx *duro.OrchestrationContext, _ any) (int, error) {
			var v int
			err := ctx.CallEntity(duro.EntityID{Name: "wallet", Key: "w"}, "debit", 5).Await(&v)
			return v, err
		})
	})
	fb.left.Store(5) // the first batch runs the debit, then its commit fails
	ctx := bg(t)
	id, err := env.client.Start(ctx, "Debit", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, env.client, "@wallet@w", duro.StatusSuspended)
	rid, err := env.client.RequestResume(ctx, "@wallet@w", "checked", duro.CompleteTask(0, 42))
	if err != nil {
		t.Fatal(err)
	}
	o, err := env.client.WaitResume(ctx, "@wallet@w", rid)
	if err != nil || o.Status != duro.ResumeApplied || len(o.Decisions) != 1 || o.Decisions[0].Status != duro.ResumeApplied {
		t.Fatalf("entity resume outcome %+v, %v", o, err)
	}
	if inst, err := env.client.Wait(ctx, id); err != nil || mustOutput[int](t, inst) != 42 {
		t.Fatalf("%+v %v", inst, err)
	}
}

// countingCharge registers Pay and a Charge that counts its runs in runs
// and answers with its attempt number: the fixed build an operator's
// decision runs on.
func countingCharge(runs *atomic.Int32) func(r *duro.Registry) {
	return func(r *duro.Registry) {
		duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
			runs.Add(1)
			return fmt.Sprintf("charged on attempt %d", ctx.Attempt()), nil
		})
		registerPay(r)
	}
}
