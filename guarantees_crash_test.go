package duro_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/internal/fault"
)

// registerPay registers the "Pay" orchestration used by the crash matrix: it
// calls the "Charge" activity once with the guarantee named by its input and
// reports what came back. Charge appends to the ledger (outside the engine)
// before doing its work; with DURO_CRASH_IN_CODE set, its first attempt then
// kills the process, mid-code.
func registerPay(reg *duro.Registry, ledger string) {
	appendLedger := func(line string) {
		f, err := os.OpenFile(ledger, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			panic(err)
		}
		fmt.Fprintln(f, line)
		if err := f.Sync(); err != nil {
			panic(err)
		}
		f.Close()
	}
	duro.RegisterActivity(reg, "Charge", func(ctx duro.ActivityContext, _ string) (string, error) {
		appendLedger(fmt.Sprintf("charge attempt=%d", ctx.Attempt()))
		if os.Getenv("DURO_CRASH_IN_CODE") != "" && ctx.Attempt() == 1 {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return "charged", nil
	}, duro.ActivityOptions{
		Reconcile: func(ctx duro.ActivityContext, _ *duro.Payload) (duro.ReconcileDecision, error) {
			appendLedger(fmt.Sprintf("reconcile attempt=%d", ctx.Attempt()))
			if strings.Contains(readFile(ledger), "charge attempt=") {
				return duro.ReconcileResult("charged-reconciled"), nil
			}
			return duro.ReconcileRetry(), nil
		},
	})
	duro.RegisterOrchestration(reg, "PayThenNotes", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
		var out string
		err := ctx.CallActivity("Charge", "card-1", duro.CallOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend}).Await(&out)
		if err != nil {
			out = "error: " + err.Error()
		}
		for range 3 {
			var note string
			if err := ctx.WaitForEvent("note", -1).Await(&note); err != nil {
				return "", err
			}
			out += " " + note
		}
		return out, nil
	})
	duro.RegisterOrchestration(reg, "Pay", func(ctx *duro.OrchestrationContext, policy string) (string, error) {
		opts := duro.CallOptions{Guarantee: duro.AtLeastOnce}
		switch policy {
		case "amo-fail":
			opts = duro.CallOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateFail}
		case "amo-reconcile":
			opts = duro.CallOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateReconcile}
		}
		var out string
		err := ctx.CallActivity("Charge", "card-1", opts).Await(&out)
		var dup *duro.PossibleDuplicateError
		if errors.As(err, &dup) {
			return fmt.Sprintf("duplicate attempt=%d", dup.Attempt), nil
		}
		return out, err
	})
}

// TestCrashMatrix kills a worker process at each point of an activity's life
// for each guarantee, lets a second process finish, and checks the ledger:
// at-most-once code never runs twice; at-least-once code runs until it
// completes, with attempts in order; the orchestration gets one result.
func TestCrashMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	type want struct {
		ledger string // ledger lines, in order, joined by "|"
		output string
	}
	crashes := []struct {
		point  string // a fault point, or "in-code"
		alo    want
		fail   want
		recon  want
		reason string
	}{
		{point: fault.ActivityClaimBeforeCommit, reason: "attempt never recorded: the next delivery is attempt 1 again",
			alo:   want{"charge attempt=1", "charged"},
			fail:  want{"charge attempt=1", "charged"},
			recon: want{"charge attempt=1", "charged"}},
		{point: fault.ActivityAfterClaim, reason: "attempt 1 claimed in the scheduling step's commit (eager), not started: not a duplicate",
			alo:   want{"charge attempt=2", "charged"},
			fail:  want{"charge attempt=2", "charged"},
			recon: want{"charge attempt=2", "charged"}},
		{point: fault.ActivityAfterClaim + lazyClaim, reason: "attempt 1 claimed by the activity loop, not started: not a duplicate",
			alo:   want{"charge attempt=2", "charged"},
			fail:  want{"charge attempt=2", "charged"},
			recon: want{"charge attempt=2", "charged"}},
		{point: fault.ActivityAfterStart, reason: "attempt 1 marked started, code not run yet: the engine cannot know, and counts it",
			alo:   want{notApplicable, ""}, // at-least-once deliveries do not mark
			fail:  want{"", "duplicate attempt=2"},
			recon: want{"reconcile attempt=2|charge attempt=2", "charged"}},
		{point: "in-code", reason: "code ran (part of) its work, then the process died",
			alo:   want{"charge attempt=1|charge attempt=2", "charged"},
			fail:  want{"charge attempt=1", "duplicate attempt=2"},
			recon: want{"charge attempt=1|reconcile attempt=2", "charged-reconciled"}},
		{point: fault.ActivityBeforeComplete, reason: "code returned, completion not committed",
			alo:   want{"charge attempt=1|charge attempt=2", "charged"},
			fail:  want{"charge attempt=1", "duplicate attempt=2"},
			recon: want{"charge attempt=1|reconcile attempt=2", "charged-reconciled"}},
		{point: fault.ActivityAfterComplete, reason: "completion committed: nothing runs again",
			alo:   want{"charge attempt=1", "charged"},
			fail:  want{"charge attempt=1", "charged"},
			recon: want{"charge attempt=1", "charged"}},
		{point: fault.StepBeforeCommit, reason: "the scheduling step is redone; the task is enqueued once",
			alo:   want{"charge attempt=1", "charged"},
			fail:  want{"charge attempt=1", "charged"},
			recon: want{"charge attempt=1", "charged"}},
	}
	for _, c := range crashes {
		for _, pol := range []struct {
			name string
			want want
		}{{"alo", c.alo}, {"amo-fail", c.fail}, {"amo-reconcile", c.recon}} {
			if pol.want.ledger == notApplicable {
				continue
			}
			t.Run(c.point+"/"+pol.name, func(t *testing.T) {
				t.Parallel()
				got := runCrashCase(t, c.point, pol.name)
				if got.ledger != pol.want.ledger || got.output != pol.want.output {
					t.Fatalf("%s (%s):\nledger %q, output %q\nwant   %q, output %q",
						c.point, c.reason, got.ledger, got.output, pol.want.ledger, pol.want.output)
				}
			})
		}
	}
}

type crashResult struct{ ledger, output string }

// notApplicable is the ledger of a crash matrix cell that does not exist.
const notApplicable = "n/a"

// lazyClaim, after a fault point in the crash matrix, runs the workers
// without eager activity dispatch: the activity loop claims the task.
const lazyClaim = "/lazy"

func runCrashCase(t *testing.T, point, policy string) crashResult {
	c := newCrashEnv(t, 90*time.Second, "Pay", policy)
	ctx, client, ledger, id := c.ctx, c.client, c.ledger, c.id
	var extra []string
	if p, ok := strings.CutSuffix(point, lazyClaim); ok {
		point, extra = p, []string{"DURO_CRASH_NO_EAGER=1"}
	}
	if point == "in-code" {
		c.runKilled(t, append(extra, "DURO_CRASH_IN_CODE=1")...)
	} else {
		c.runKilled(t, append(extra, "DURO_TEST_FAULT="+point)...)
	}
	if err := c.worker(t, extra...).Run(); err != nil {
		t.Fatalf("second worker: %v", err)
	}
	inst, err := client.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := inst.Output(&out); err != nil || inst.Status != duro.StatusCompleted {
		t.Fatalf("instance %s %v: %v", inst.Status, inst.Failure, err)
	}
	// Exactly one result reached the orchestration.
	h, err := client.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	results := 0
	for _, ev := range h {
		if ev.Type == "TaskCompleted" || ev.Type == "TaskFailed" {
			results++
		}
	}
	if results != 1 {
		t.Fatalf("%d task results in history, want 1", results)
	}
	return crashResult{ledger: strings.ReplaceAll(strings.TrimSpace(readFile(ledger)), "\n", "|"), output: out}
}

// TestCrashSuspendDecisions kills a worker process inside an at-most-once
// activity with the Suspend policy: the restarted worker suspends the
// instance instead of running the code again; events raised meanwhile wait;
// each operator decision completes the instance as decided.
func TestCrashSuspendDecisions(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	for _, tc := range []struct {
		name     string
		decision duro.Decision
		ledger   string
		output   string
	}{
		{"retry", duro.RetryTask(0), "charge attempt=1|charge attempt=3", "charged a b c"},
		{"result", duro.CompleteTask(0, "checked: charged once"), "charge attempt=1", "checked: charged once a b c"},
		{"fail", duro.FailTask(0, "refunded"), "charge attempt=1", `error: activity "Charge" (task 0) failed: refunded a b c`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCrashEnv(t, 90*time.Second, "PayThenNotes", nil)
			ctx, client, ledger, id := c.ctx, c.client, c.ledger, c.id
			c.runKilled(t, "DURO_CRASH_IN_CODE=1")
			second := c.worker(t)
			if err := second.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, func() bool {
				inst, err := client.Get(ctx, id)
				return err == nil && inst.Status == duro.StatusSuspended
			})
			for _, note := range []string{"a", "b", "c"} {
				if err := client.RaiseEvent(ctx, id, "note", note); err != nil {
					t.Fatal(err)
				}
			}
			pending, err := client.PendingDecisions(ctx)
			if err != nil || len(pending) != 1 || pending[0].Attempt != 2 || pending[0].Name != "Charge" {
				t.Fatalf("pending %+v %v", pending, err)
			}
			if got := strings.TrimSpace(readFile(ledger)); got != "charge attempt=1" {
				t.Fatalf("the code ran again before a decision: %q", got)
			}
			if err := client.Resume(ctx, id, "operator decided", tc.decision); err != nil {
				t.Fatal(err)
			}
			if err := second.Wait(); err != nil {
				t.Fatalf("second worker: %v", err)
			}
			inst, err := client.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var out string
			if err := inst.Output(&out); err != nil || inst.Status != duro.StatusCompleted {
				t.Fatalf("instance %s %+v: %v", inst.Status, inst.Failure, err)
			}
			got := strings.ReplaceAll(strings.TrimSpace(readFile(ledger)), "\n", "|")
			if got != tc.ledger || out != tc.output {
				t.Fatalf("ledger %q output %q, want %q and %q", got, out, tc.ledger, tc.output)
			}
		})
	}
}
