package backendtest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duro"
	"duro/backend"
)

// sdkOperatorTests check operators' actions end to end: a rewind and a
// retry decision give the task a fresh delivery budget.
func sdkOperatorTests() []test {
	return []test{
		{"RewoundPoisonedActivityRuns", testRewoundPoisonedActivityRuns},
		{"RetryDecisionGetsFreshBudget", testRetryDecisionGetsFreshBudget},
		{"TerminateDuringAtMostOnceActivityKeepsResult", testTerminateKeepsLateResult},
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

// testRewoundPoisonedActivityRuns poisons an activity (no worker has its
// code: every delivery is handed back), deploys the code and rewinds: the
// rewound task is delivered once more, with the next attempt number, and
// its code runs instead of being poisoned again for the deliveries before
// the rewind.
func testRewoundPoisonedActivityRuns(t *testing.T, e *env) {
	first := newSDKEnv(t, e.b, registerShip)
	ctx := bg(t)
	id, err := first.client.Start(ctx, "Ship", nil)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := first.client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Status != duro.StatusFailed || inst.Failure == nil || inst.Failure.Type != duro.FailureTypePoisoned {
		t.Fatalf("before the fix: %s, failure %+v; want Failed, poisoned", inst.Status, inst.Failure)
	}
	if err := first.worker.Stop(ctx); err != nil {
		t.Fatal(err)
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
	if err := second.client.Rewind(ctx, id, "Label deployed"); err != nil {
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
	second := func(r *duro.Registry) {
		duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
			runs.Add(1)
			return fmt.Sprintf("charged on attempt %d", ctx.Attempt()), nil
		})
		registerPay(r)
	}
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
