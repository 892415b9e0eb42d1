// Package duro is a durable task framework: workflows written as ordinary,
// deterministic Go functions (orchestrations) that call side-effecting steps
// (activities), survive crashes and restarts, and say exactly how often each
// step may run.
//
// # The pieces
//
// An orchestration is a function
//
//	func(ctx *duro.OrchestrationContext, input I) (O, error)
//
// that calls activities, sub-orchestrations, durable timers and external
// events through ctx. Every call is recorded in the instance's history, an
// append-only event log kept by a backend. After each step (for example,
// when an activity's result arrives) the worker re-runs the function from the
// start against that history — the function "replays" — until it reaches the
// point it had not passed before. (A worker may instead keep the function
// running, parked where it waits, and hand it only the new events; see
// WorkerOptions.StickyOrchestrations. The result is the same, which is why
// it may.) So orchestration code must be
// deterministic: it reads time from ctx.Now, makes IDs with ctx.NewUUID,
// waits only on Tasks, and leaves all I/O to activities. If replayed code
// schedules something other than what history recorded, the instance fails
// with a "NonDeterminism" failure that names both; ReplayHistory and
// ReplayHistoryDir check recorded histories against new code in tests. To
// change the code while instances run, branch on
// OrchestrationContext.Patched: instances that passed the change keep the
// old path (docs/versioning.md).
//
// An activity is a function
//
//	func(ctx duro.ActivityContext, input I) (O, error)
//
// that does the work: calls APIs, writes databases, sends e-mail. It runs
// outside the replay, once per delivery. ActivityContext is a
// context.Context that also carries the delivery's attempt number (see
// "Guarantees"), the instance ID, task ID and activity name, when the
// previous delivery was claimed, and heartbeats: Heartbeat records progress
// durably, fenced by the attempt, and the next delivery of the same task
// (after a crash or a lost lease) reads it with HeartbeatDetails to resume
// where the earlier one stopped.
//
// A Registry maps names to both kinds of functions; a Worker runs them
// against a backend; a Client starts instances, waits for them, raises
// events, terminates and purges them.
//
// # Backends
//
// Package backend defines the storage seam. duro ships an embedded SQLite
// backend (backend/sqlite, a file and no server, the default), a PostgreSQL
// backend for many workers on many machines (backend/postgres) and an
// in-memory one for tests (backend/memory). Every backend passes the same
// conformance suite, backend/backendtest.
//
// # Guarantees
//
// duro is built for steps that must not silently run twice:
//
//   - Attempt numbers (A1): every delivery of a work item carries a number,
//     recorded durably before any of its code runs, starting at 1 and never
//     repeated — across crashes, lease expiry and concurrent workers. An
//     activity sees it as ActivityContext.Attempt; a value above 1 means an
//     earlier delivery may have done (part of) the work.
//   - Fencing (A2): only the newest delivery of a work item can complete it;
//     a completion from a superseded delivery is rejected and discarded, so an
//     orchestration receives exactly one result per task.
//   - Atomic steps (O1): an orchestration step's new history, status, consumed
//     messages and all of its outgoing work commit in one transaction, with
//     deterministic IDs, so nothing is lost or enqueued twice.
//
// By default activities run at least once: after a crash they run again with
// the next attempt number. An activity registered (or called) with
// Guarantee AtMostOnce runs its code on at most one delivery: each delivery
// marks itself started, durably, just before the code runs, and a later
// delivery after one that marked (a possible duplicate) applies its
// OnDuplicate policy instead — deliveries handed back unstarted (a worker
// that stopped, or lacked the activity) do not count, and
// ActivityContext.MayBeDuplicate tells code the same: OnDuplicateFail fails the task with
// a *PossibleDuplicateError, OnDuplicateSuspend suspends the instance until an
// operator resumes it with a Decision (RetryTask, CompleteTask, FailTask —
// Client.PendingDecisions lists them), OnDuplicateReconcile asks a
// ReconcileFunc. The guarantee in force is the stronger of the call's and the
// registration of the worker that executes the activity, which enforces it
// (and whose named policy wins), so a fleet that splits orchestration and
// activity workers, or a rolling deploy, keeps it; a worker claims only the
// activities it registers. A work item delivered more than MaxDeliveries times fails as
// poisoned (ErrPoisoned); a step that keeps failing before it commits
// suspends its instance. docs/guarantees.md has the full contract.
//
// # Operating instances
//
// Client.Suspend keeps everything that arrives for an instance until
// Client.Resume, whose outcome (applied, or refused with the reason)
// Client.ResumeOutcome reports; Client.Rewind takes a Failed instance back
// to the point before its first failure and re-runs what failed;
// Client.Terminate and Client.Purge end and delete instances (a result that
// arrives after the end is kept in the history as a LateResult event; a
// termination that no worker would record, because none holds or can run
// the instance, the client records itself).
//
// Client.InFlight shows what an instance has in flight: its step, each
// activity call not finished with its attempt, lease owner and expiry,
// last failure and next retry, its timers, and what blocks it. Workers
// record heartbeats in the store (WorkerOptions.HeartbeatInterval), which
// Client.Workers lists, live and recently gone.
//
// # Entities
//
// RegisterEntityOperation registers operations on small pieces of durable
// state addressed by EntityID. Orchestrations signal and call them and lock
// several at once (LockEntities); activities and clients signal them. Each
// signal carries an ID, and an entity applies a given ID once within its
// window of processed requests, so an activity that runs twice does not
// count twice.
//
// # Errors
//
// A failed activity or sub-orchestration surfaces in the orchestration as a
// *TaskError (use errors.As) carrying the task's name and the error's type and
// message. Activities classify errors with NewError and NewNonRetryableError;
// RetryPolicy retries failures with durable timers in between. Client
// operations return errors wrapping the sentinels ErrInstanceNotFound,
// ErrInstanceExists, ErrInstanceFinished and ErrInstanceNotFinished; payload
// problems wrap ErrPayloadTooLarge or ErrPayloadDecode.
package duro
