// Package backendtest is the conformance suite of duro backends: every
// requirement written on the backend.Backend interface, and the guarantees of
// the product spec that rest on the store (A1 attempt numbers, A2 fencing, O1
// atomic steps, deterministic message and task IDs), as tests that fail when
// a backend breaks them.
//
// A backend runs the whole suite from one test function:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Exercise(context.Background(), t, func(t *testing.T) backend.Backend {
//			b, err := mystore.Open(filepath.Join(t.TempDir(), "store"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return b
//		}, &backendtest.Options{Reopen: reopen})
//	}
//
// Exercise calls newBackend once per subtest, and every subtest runs in
// parallel with the others of its area, so each call must return a fresh,
// empty store. The suite closes the backends it is given; the constructor only
// cleans up what lies under them (t.TempDir does that for files). A persistent
// backend sets Options.Reopen to close a backend and open the same store
// again; the tests of attempts and leases across restarts then run, and are
// skipped for a store that lives in memory.
//
// Subtests are named by area, so one failure points at one requirement:
//
//	Instances/...          create, duplicate IDs, replacing finished instances, StartAt
//	Lifecycle/...          every status reached through CompleteOrchestrationStep
//	O1/...                 a step's effects land together, or not at all
//	Messages/..., Timers/  inbox order, duplicate IDs, dropped messages, VisibleAt
//	SubOrchestrations/...  children started by a step
//	Activities/...         activity tasks and their results
//	A1/...                 attempt numbers, across expiry, abandonment, reopening, concurrency
//	A2/...                 fencing of stale deliveries
//	History/..., Purge/..., List/..., Persistence/..., Close/..., WorkNotifier/...
//	SDK/...                the engine end to end (client, worker, replay) on the backend
//	ConcurrentCreate/...   one instance ID created by many callers at once: one wins, nothing is reset
//	StoreClock/...         leases and hand-backs by the store's clock for a worker whose clock is off
//
// Run one area or one test with go test -run, for example
// -run 'TestConformance/A2/'.
//
// Time is synthetic everywhere but in SDK/, which runs a real worker, and
// StoreClock/, which calls the backend as a worker does (no Now in claims
// and renewals, the worker's clock as a step's Now). Every
// method that takes a Now gets one from the suite, so leases expire and
// timers fire because a test passes a later Now, never because it sleeps; a
// backend must use p.Now, not its own clock, whenever p.Now is set. The
// suite's clock runs an hour ahead of the wall clock, so that what a backend
// stamps with its own clock (EnqueueMessage, an Abandon without RetryAt) is
// visible to the suite's claims.
//
// Where the interface leaves a choice open the suite accepts either answer,
// and says so in the test: for example, CompleteActivity for a task whose
// instance has finished may drop the result and return nil, or return
// ErrLeaseLost because the task went with the instance.
package backendtest
