// Package durotest runs duro orchestrations in tests, with time skipping.
//
// An Env is one worker and one client on a private in-memory store
// (package backend/memory) whose clock is virtual: the store, the worker
// and the client all read it. The clock stands still while anything can
// run. When nothing can — no store call is in progress, no delivery is
// running, and the worker looked for work after the last change and found
// none — it jumps to the next due time: a durable timer, a retry
// policy's backoff, a WaitForEvent timeout, a delayed start, a step or
// task handed back with a delay, or the lease of a delivery that crashed.
// So a 30-day timer fires at once, and ctx.Now() in the orchestration
// says 30 days later. Time moves only inside the calls that run the
// environment (Wait, Run, WaitSuspended, Advance), so what a test does
// between them happens at a known time.
//
// A test registers its code in env.Registry() (or passes its own with
// WithRegistry), starts instances and waits for them:
//
//	env := durotest.New(t)
//	app.Register(env.Registry())
//	inst := env.Run("Renewal", input)
//
// and drives them with the helpers:
//
//   - events: RaiseEvent now, RaiseEventAfter at a virtual time (before or
//     after a WaitForEvent timeout), AfterFunc for anything else;
//   - activities: OnActivity replaces an activity's code and keeps its
//     options;
//   - crashes: CrashAfterStart and CrashAfterRun make the next delivery
//     of an activity vanish, so the next one is a possible duplicate and
//     the activity's OnDuplicate policy (Fail, Suspend, Reconcile) or its
//     MayBeDuplicate handling is exercised;
//   - decisions: WaitSuspended, PendingDecisions and Resume with
//     duro.CompleteTask, duro.RetryTask or duro.FailTask;
//   - history: History, HistoryText (one line an event, Describe),
//     AssertHistory and AssertActivityCalled.
//
// An Env fails the test it was created with and is closed by its
// Cleanup. The store is the SQLite engine that production uses, so the
// semantics are the same; only time is simulated. Activity code that
// reads the real clock (time.Now) does not see the virtual one: give it
// the time as input, or read env.Now() in a mock.
package durotest
