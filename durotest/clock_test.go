package durotest_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/durotest"
)

var start = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// A 30-day durable timer completes at once, and the orchestration wakes
// exactly 30 days after it started.
func TestThirtyDayTimer(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start))
	duro.RegisterOrchestration(env.Registry(), "Wait30", func(ctx *duro.OrchestrationContext, _ struct{}) (time.Time, error) {
		if err := ctx.Sleep(30 * 24 * time.Hour); err != nil {
			return time.Time{}, err
		}
		return ctx.Now(), nil
	})
	began := time.Now()
	inst := env.Run("Wait30", struct{}{})
	t.Logf("a 30-day timer took %v of real time", time.Since(began))
	if inst.Status != duro.StatusCompleted {
		t.Fatalf("status %s: %v", inst.Status, inst.Err())
	}
	var at time.Time
	if err := inst.Output(&at); err != nil {
		t.Fatal(err)
	}
	if want := start.Add(30 * 24 * time.Hour); !at.Equal(want) || !env.Now().Equal(want) {
		t.Fatalf("woke at %v, clock at %v; want %v", at, env.Now(), want)
	}
	env.AssertHistory(t, inst.ID, "TimerCreated #0 in=720h0m0s", "TimerFired #0", "ExecutionCompleted status=Completed")
}

// A year of monthly timers through ContinueAsNew, with a sub-orchestration
// each month: every durable wait is skipped.
func TestContinueAsNewAndChildren(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start))
	duro.RegisterOrchestration(env.Registry(), "Bill", func(ctx *duro.OrchestrationContext, month int) (string, error) {
		return fmt.Sprintf("billed %d at %s", month, ctx.Now().Format("2006-01-02")), nil
	})
	duro.RegisterOrchestration(env.Registry(), "Monthly", func(ctx *duro.OrchestrationContext, month int) (int, error) {
		if month == 12 {
			return month, nil
		}
		if err := ctx.Sleep(30 * 24 * time.Hour); err != nil {
			return 0, err
		}
		var s string
		if err := ctx.CallSubOrchestration("Bill", month+1).Await(&s); err != nil {
			return 0, err
		}
		return 0, ctx.ContinueAsNew(month + 1)
	})
	inst := env.Run("Monthly", 0)
	var month int
	if err := inst.Output(&month); err != nil || month != 12 {
		t.Fatalf("output %d, %v (status %s)", month, err, inst.Status)
	}
	if want := start.Add(12 * 30 * 24 * time.Hour); !env.Now().Equal(want) {
		t.Fatalf("clock at %v; want %v", env.Now(), want)
	}
}

// A retry policy's backoff is skipped: the retries happen 1h and then 2h
// of virtual time after the failures.
func TestRetryBackoffSkipped(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start))
	var calls []time.Time
	duro.RegisterActivity(env.Registry(), "Flaky", func(ctx duro.ActivityContext, _ struct{}) (string, error) {
		calls = append(calls, env.Now())
		if len(calls) < 3 {
			return "", errors.New("unavailable")
		}
		return "ok", nil
	}, duro.ActivityOptions{RetryPolicy: &duro.RetryPolicy{MaxAttempts: 5, InitialInterval: time.Hour}})
	duro.RegisterOrchestration(env.Registry(), "Call", func(ctx *duro.OrchestrationContext, _ struct{}) (string, error) {
		var s string
		err := ctx.CallActivity("Flaky", struct{}{}).Await(&s)
		return s, err
	})
	inst := env.Run("Call", struct{}{})
	if inst.Status != duro.StatusCompleted {
		t.Fatalf("status %s: %v", inst.Status, inst.Err())
	}
	want := []time.Time{start, start.Add(time.Hour), start.Add(3 * time.Hour)}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("tries at %v; want %v", calls, want)
	}
	env.AssertActivityCalled(t, inst.ID, "Flaky", 3)
	env.AssertHistory(t, inst.ID, `TaskFailed #0 attempt=1 failure="unavailable"`, "TimerCreated #1 in=1h0m0s",
		"TimerCreated #3 in=2h0m0s", `TaskCompleted #4 attempt=1 result="ok"`)
}

// approval waits a day for an "approve" event and says what came first.
func approval(ctx *duro.OrchestrationContext, _ struct{}) (string, error) {
	var who string
	err := ctx.WaitForEvent("approve", 24*time.Hour).Await(&who)
	if errors.Is(err, duro.ErrTimeout) {
		return "timed out at +" + ctx.Now().Sub(start).String(), nil
	}
	if err != nil {
		return "", err
	}
	return "approved by " + who + " at +" + ctx.Now().Sub(start).String(), nil
}

func TestWaitForEventTimeout(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start))
	duro.RegisterOrchestration(env.Registry(), "Approval", approval)
	if got := output[string](t, env.Run("Approval", struct{}{})); got != "timed out at +24h0m0s" {
		t.Fatalf("output %q", got)
	}
}

// An event raised at a virtual time arrives then: before the timeout it
// wins, after it the timeout does.
func TestEventRaisedAtVirtualTime(t *testing.T) {
	for _, c := range []struct {
		after time.Duration
		want  string
	}{
		{2 * time.Hour, "approved by ann at +2h0m0s"},
		{25 * time.Hour, "timed out at +24h0m0s"},
	} {
		t.Run(c.after.String(), func(t *testing.T) {
			env := durotest.New(t, durotest.WithStartTime(start))
			duro.RegisterOrchestration(env.Registry(), "Approval", approval)
			id := env.Start("Approval", struct{}{})
			env.RaiseEventAfter(c.after, id, "approve", "ann")
			if got := output[string](t, env.Wait(id)); got != c.want {
				t.Fatalf("output %q; want %q", got, c.want)
			}
		})
	}
}

// Advance stops the clock at the time asked for, after what was due by
// then ran, and the test's calls then happen at that time.
func TestAdvance(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start))
	duro.RegisterOrchestration(env.Registry(), "Approval", approval)
	id := env.Start("Approval", struct{}{})
	env.Advance(3 * time.Hour)
	if !env.Now().Equal(start.Add(3 * time.Hour)) {
		t.Fatalf("clock at %v", env.Now())
	}
	env.AssertHistory(t, id, "TimerCreated #0 in=24h0m0s")
	env.RaiseEvent(id, "approve", "bob")
	if got := output[string](t, env.Wait(id)); got != "approved by bob at +3h0m0s" {
		t.Fatalf("output %q", got)
	}
}

// A Wait that cannot end fails the test with the reason, without waiting
// for the timeout.
func TestWaitStuck(t *testing.T) {
	msg := failure(t, func(ft *fakeT) {
		env := durotest.New(ft, durotest.WithStartTime(start))
		duro.RegisterOrchestration(env.Registry(), "Forever", func(ctx *duro.OrchestrationContext, _ struct{}) (string, error) {
			var s string
			err := ctx.WaitForEvent("never", -1).Await(&s)
			return s, err
		})
		env.Run("Forever", struct{}{}, duro.StartOptions{InstanceID: "forever"})
	})
	mustContain(t, msg, `instance "forever" is not finished`, "Running and nothing is due", "may wait for an event")

	msg = failure(t, func(ft *fakeT) {
		env := durotest.New(ft, durotest.WithStartTime(start))
		duro.RegisterOrchestration(env.Registry(), "Lost", func(ctx *duro.OrchestrationContext, _ struct{}) (string, error) {
			var s string
			err := ctx.CallActivity("Unregistered", nil).Await(&s)
			return s, err
		})
		env.Run("Lost", struct{}{})
	})
	mustContain(t, msg, `activity "Unregistered" (task 0) waits for a worker that registers it`)

	// An orchestration nobody registers is handed back until it is
	// poisoned (the backoffs between its deliveries skipped): the Wait
	// says so.
	msg = failure(t, func(ft *fakeT) {
		env := durotest.New(ft, durotest.WithStartTime(start))
		duro.RegisterOrchestration(env.Registry(), "Known", func(ctx *duro.OrchestrationContext, _ struct{}) (string, error) { return "", nil })
		env.Run("Unknown", struct{}{})
	})
	mustContain(t, msg, "Suspended and nothing is due", "poisoned", `"Unknown"`)
}

// output decodes a Completed instance's output.
func output[T any](t *testing.T, inst *duro.Instance) T {
	t.Helper()
	var v T
	if inst.Status != duro.StatusCompleted {
		t.Fatalf("instance %s is %s: %v", inst.ID, inst.Status, inst.Err())
	}
	if err := inst.Output(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// The environment wakes the worker after every change and every move of
// the clock: with a poll interval of an hour of real time, ten timers still
// fire at once.
func TestNoPolling(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start), durotest.WithTimeout(10*time.Second),
		durotest.WithWorkerOptions(duro.WorkerOptions{PollInterval: time.Hour}))
	duro.RegisterActivity(env.Registry(), "Step", func(ctx duro.ActivityContext, i int) (int, error) { return i + 1, nil })
	duro.RegisterOrchestration(env.Registry(), "Timers", func(ctx *duro.OrchestrationContext, _ struct{}) (int, error) {
		n := 0
		for range 10 {
			if err := ctx.Sleep(24 * time.Hour); err != nil {
				return 0, err
			}
			if err := ctx.CallActivity("Step", n).Await(&n); err != nil {
				return 0, err
			}
		}
		return n, nil
	})
	if got := output[int](t, env.Run("Timers", struct{}{})); got != 10 {
		t.Fatalf("output %d", got)
	}
}

// The client's control calls work between runs: a terminated instance
// ends without its timer, a suspended one keeps its timer until resumed.
func TestClientControl(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start))
	duro.RegisterOrchestration(env.Registry(), "Nap", func(ctx *duro.OrchestrationContext, _ struct{}) (time.Time, error) {
		err := ctx.Sleep(time.Hour)
		return ctx.Now(), err
	})
	id := env.Start("Nap", struct{}{})
	env.Advance(time.Minute)
	if err := env.Client().Terminate(t.Context(), id, "no nap"); err != nil {
		t.Fatal(err)
	}
	if inst := env.Wait(id); inst.Status != duro.StatusTerminated {
		t.Fatalf("status %s", inst.Status)
	}

	id = env.Start("Nap", struct{}{})
	env.Advance(time.Minute)
	if err := env.Client().Suspend(t.Context(), id, "hold"); err != nil {
		t.Fatal(err)
	}
	env.WaitSuspended(id)
	env.Advance(2 * time.Hour) // the timer fires, and waits
	if inst, _ := env.Client().Get(t.Context(), id); inst.Status != duro.StatusSuspended {
		t.Fatalf("status %s", inst.Status)
	}
	if err := env.Client().Resume(t.Context(), id, "go on"); err != nil {
		t.Fatal(err)
	}
	resumed := env.Now()
	woke := output[time.Time](t, env.Wait(id))
	if !woke.Equal(resumed) || !resumed.Equal(start.Add(2*time.Minute+2*time.Hour)) {
		t.Fatalf("woke at %v; want the resume's time, %v", woke, resumed)
	}
	env.AssertHistory(t, id, "TimerCreated #0 in=1h0m0s", "ExecutionSuspended", "ExecutionResumed", "TimerFired #0")
}
