package durotest_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/durotest"
)

// trial sends a reminder after 29 days and ends the trial after 30,
// unless the customer upgrades first.
func trial(ctx *duro.OrchestrationContext, user string) (string, error) {
	if err := ctx.Sleep(29 * 24 * time.Hour); err != nil {
		return "", err
	}
	if err := ctx.CallActivity("SendReminder", user).Await(nil); err != nil {
		return "", err
	}
	var plan string
	err := ctx.WaitForEvent("upgrade", 24*time.Hour).Await(&plan)
	if errors.Is(err, duro.ErrTimeout) {
		return user + ": trial ended", nil
	}
	if err != nil {
		return "", err
	}
	return user + ": upgraded to " + plan, nil
}

// This example tests a 30-day trial in a fraction of a second: the timers
// and the event's timeout are skipped, and the upgrade event is raised at
// a virtual time. In a test, pass the test's *testing.T to New.
func Example() {
	t := &testing.T{} // in a test: the test's t
	env := durotest.New(t, durotest.WithStartTime(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)))
	defer env.Close() // in a test, t.Cleanup does it
	duro.RegisterOrchestration(env.Registry(), "Trial", trial)
	env.OnActivity("SendReminder", func(ctx duro.ActivityContext, user string) (any, error) {
		fmt.Println("reminder to", user, "on", env.Now().Format("Jan 2"))
		return nil, nil
	})

	fmt.Println(outputOf(env.Run("Trial", "ann")))

	id := env.Start("Trial", "bob")
	env.RaiseEventAfter(29*24*time.Hour+time.Hour, id, "upgrade", "pro")
	fmt.Println(outputOf(env.Wait(id)))
	// Output:
	// reminder to ann on Jan 30
	// ann: trial ended
	// reminder to bob on Mar 1
	// bob: upgraded to pro
}

// outputOf returns a Completed instance's string output, or the error.
func outputOf(inst *duro.Instance) string {
	var s string
	if err := inst.Output(&s); err != nil {
		return err.Error()
	}
	return s
}

// This example crashes an at-most-once activity after it marked itself
// started: the next delivery is a possible duplicate, the instance waits
// for a decision, and the test resumes it with the result an operator
// would have found.
func ExampleEnv_CrashAfterStart() {
	t := &testing.T{} // in a test: the test's t
	env := durotest.New(t)
	defer env.Close() // in a test, t.Cleanup does it
	duro.RegisterActivity(env.Registry(), "Charge", func(ctx duro.ActivityContext, order string) (string, error) {
		return "ch_" + order, nil
	}, duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend})
	duro.RegisterOrchestration(env.Registry(), "Checkout", func(ctx *duro.OrchestrationContext, order string) (string, error) {
		var charge string
		err := ctx.CallActivity("Charge", order).Await(&charge)
		return "paid " + charge, err
	})

	env.CrashAfterStart("Charge")
	id := env.Start("Checkout", "o1")
	env.WaitSuspended(id)
	for _, p := range env.PendingDecisions(id) {
		fmt.Printf("task %d (%s) waits for a decision at attempt %d\n", p.TaskID, p.Name, p.Attempt)
	}
	env.Resume(id, duro.CompleteTask(0, "ch_found"))
	fmt.Println(outputOf(env.Wait(id)))
	// Output:
	// task 0 (Charge) waits for a decision at attempt 2
	// paid ch_found
}
