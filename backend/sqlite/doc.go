// Package sqlite is duro's embedded backend: a backend.Backend stored in one
// SQLite file, with no server to run. It uses the pure-Go driver
// modernc.org/sqlite (no cgo).
//
// # Connections and locking
//
// Open uses one writer connection and a pool of read connections
// (Options.ReadConns). Every operation that writes, claims included, is
// run by one writer goroutine, which owns the writer connection, in a
// BEGIN IMMEDIATE transaction, so writers of one process queue for it and
// never fail with SQLITE_BUSY against each other. The file is in WAL mode,
// so readers (GetInstance, ListInstances, GetHistory) run beside the
// writer. Other processes may open the same file at once (the CLI, a second
// worker after a crash); their write transactions wait for each other for
// up to Options.BusyTimeout. Wake-ups (WorkAvailable, and the finish
// watches of WatchFinish that Client.Wait uses) are signalled within the
// process that committed: a Client.Wait in another process on the same
// file sees a finish on its fallback poll (ClientOptions.WaitPollInterval,
// 200ms by default).
//
// A file or directory this process may not write makes Open fail with
// ErrReadOnly and a sentence naming the access it needs (never SQLite's
// bare result codes); Options.ReadOnly opens such a store for reading only,
// and Options.Immutable, for a directory it may not write either, reads the
// file without locks.
//
// # Group commit
//
// Operations that arrive while the writer is busy queue, and the writer
// runs everything queued (up to 128 operations or about 4 MiB of payload)
// in its next transaction, each operation inside its own SAVEPOINT: an
// operation that fails is rolled back alone and returns its error, the
// others commit together. Every caller returns after that shared COMMIT, so
// each operation is exactly as atomic (O1) and as durable as if it had
// committed alone, and one fsync under synchronous=FULL covers the whole
// batch. Nothing waits for a timer: batches grow with the load. A caller
// whose context ends while its operation is still queued gets the context's
// error and the operation never runs; once the writer has started it, it
// runs to the end of its batch. Close lets the writer finish what is queued
// and refuses what comes after. Encoding and decoding events happens in the
// callers' goroutines, outside the writer; statements are prepared once.
// ClaimActivities and ClaimOrchestrationSteps (backend.BatchClaimer) claim
// several work items in one operation, each with its own attempt increment
// and lease.
//
// A claim hands out the whole history; the backend keeps the decoded
// histories it handed out (a bounded cache, see histcache.go) and reads and
// decodes only the events appended since, so a long history is not decoded
// again at every step.
//
// # Durability
//
// A claim increments the work item's attempt number and takes its lease in
// one transaction, and the Claim methods return only after that transaction
// has committed: the commit of the claim is what makes an attempt number
// durable (guarantee A1). How durable a commit is depends
// on Options.Synchronous:
//
//   - FULL (the default) syncs the write-ahead log to stable storage at every
//     commit. A returned attempt number survives process crashes and power
//     loss, so no attempt number is ever handed out twice. The cost is one
//     fsync per commit: a few hundred microseconds to a few milliseconds on
//     an SSD, which bounds the rate of commits of one store (group commit
//     puts many operations in one).
//   - NORMAL syncs only at checkpoints. Commits are still atomic and survive
//     a crash of the process (SIGKILL, panic), since the log is in the
//     operating system's cache, but the last commits before a power loss or
//     kernel crash may be rolled back: an attempt number could then be handed
//     out again after the machine restarts, and a step or an activity
//     completion could be lost (and redone). It is several times faster.
//     The start mark of a delivery that runs code at most once is the
//     exception (StartActivity, StartOrchestrationStep): it syncs the WAL
//     before it returns, which makes the delivery's claim durable too (one
//     sync covers every commit made by then, and concurrent starts share
//     it), so an attempt number seen by at-most-once code is never handed
//     out again.
//   - EXTRA is FULL plus a sync of the directory after deleting a journal;
//     in WAL mode it costs little more than FULL.
//
// # Semantics
//
// The package implements the contract documented on backend.Backend. Where
// that contract leaves room, it reads it this way:
//
//   - An instance's step attempt counts every claim of any of its steps: it
//     is 1 on the first claim of the instance and grows by one on each claim,
//     across steps, continue-as-new and replacement of a finished instance.
//     It is therefore not a per-step retry counter. It has to be a counter
//     that never goes back: a per-step counter would restart at 1 and let a
//     stale delivery of an earlier step complete a later one.
//   - A delivery that completed its step no longer holds the instance:
//     completing, renewing or abandoning again with its attempt number fails
//     with ErrLeaseLost, so a retried completion never applies a step twice.
//     A delivery that abandoned (and was not superseded) may still complete,
//     like one whose lease lapsed.
//   - A zero Message.VisibleAt or StartAt stores the message as visible to
//     every claim, whatever Now the claim passes, so synthetic clocks in
//     tests need not agree with the backend's clock. Claims still order
//     instances by when their oldest message became visible, using the
//     enqueuing writer's clock.
//   - "Inbox order", the order of a step's messages, is the order they
//     became visible: inbox.sort_at, the later of visible_at and the
//     writer's time when the message was inserted, then inbox.seq (at the
//     same instant, the message inserted first).
//   - The IDs of consumed messages are remembered for the rest of the
//     execution, so a send retried after its message was consumed is still a
//     no-op; they are forgotten on continue-as-new, replacement and purge.
//   - StartInstances ignores each CreateInstanceParams.IfExists: a finished
//     child is always replaced. A live child with no Parent in its params
//     is left alone without a message.
//   - The ExecutionStarted message of a continue-as-new carries the
//     instance's Parent, so a continued sub-orchestration still reports to
//     its parent.
//   - PurgeInstances requires at least one filter field; non-terminal
//     statuses in the filter match nothing.
//   - A Suspended instance keeps every message it is sent (EnqueueMessage,
//     activity results, due timers, step messages), in inbox order. Only a
//     visible control message (EventType.IsControl) makes it claimable, and
//     its work item carries only its visible control messages, in inbox
//     order; the others are handed out, in their order, from the first
//     claim after a step commits any other status. The claim reads this
//     from the ready summary (below), so suspended instances cost nothing.
//   - Instance.Suspension is stored from CompleteOrchestrationStepParams.
//     Suspension only when the step commits StatusSuspended, and cleared by
//     any other status (and by RewindInstance). A Suspended instance whose
//     step passed no Suspension reports &Suspension{Since: UpdatedAt}, so
//     Suspension is never nil while the status is Suspended. Times in it
//     are returned in UTC.
//   - ActivityTask.PriorAttempts is the task's stored attempt number until
//     its first claim, which returns PriorAttempts+1. Until that claim the
//     task has had no delivery of its own, so Complete/Renew/Abandon of it
//     fail with ErrLeaseLost whatever attempt they name, and that first
//     claim has a zero PreviousDeliveryAt (the earlier deliveries belong to
//     another task ID, whose times this store does not link). Every
//     claim returns PriorAttempts (column prior_attempts, migration 004).
//   - Instance.ResumeOutcomes are stored as JSON (column
//     resume_outcomes, migration 004), replaced by a step that passes
//     some, kept by one that passes nil, cleared when a finished instance
//     is replaced. An exclusive message (Message.Exclusive) is checked
//     against the instance's control messages by event type in the same
//     write, which the single writer serializes.
//   - A step that finishes its instance deletes its inbox and the tasks no
//     delivery holds; a task a delivery holds (claimed_at <> 0 and a
//     lease_owner) is parked at visible_at = math.MaxInt64, so no claim
//     gets it, until that delivery completes it (the result goes to the
//     history as a LateResult event and CompleteActivity returns
//     ErrInstanceFinished), hands it back (the task is deleted), or the
//     instance is rewound, replaced or purged (deleted).
//   - RewindInstance and CompleteOrchestrationStepParams.RewindInstances
//     rewind the same way: status Running, failure and completion time
//     cleared, Output and history kept, updated at the call's (or the
//     step's) Now, and an ExecutionRewound message {Reason, Timestamp: now}
//     addressed to the instance's current execution. The message ID is
//     subject to the usual rule: an ID already in an inbox, or consumed by
//     the current execution, is ignored, so callers must use a fresh one.
//     ErrInstanceNotFailed names the status the instance has.
//   - A child of RewindInstances that cannot be rewound gets its parent (at
//     Parent.InstanceID and Parent.ExecutionID) a SubOrchestrationFailed
//     message with ID FailMessageID, TaskID Parent.TaskID and Failure
//     {Message: "cannot rewind sub-orchestration <id>: it does not exist"
//     or "...: status <status>", Type: "RewindFailed", NonRetryable: true}.
//     The step's own instance row is written before any message is sent,
//     so that message reaches a parent that is the step's instance unless
//     the step finishes it; like any step message it is dropped if the
//     parent does not exist or has finished.
//
// # Ready summary
//
// Claims never scan inboxes: instances.ready_at and ready_key hold
// MIN(visible_at) and MIN(sort_at) over the instance's inbox, NULL when it
// is empty, and the claim reads them through one index. For a Suspended
// instance they range over its control messages only (inbox.control = 1, a
// column set on insert from the event type). Every transaction records the
// instances whose inbox or status it changes and recomputes their summary
// once before it commits; a step always recomputes its own instance, since
// its status may have entered or left Suspended.
//
// # Schema
//
// The schema is versioned: migration/NNN_name.sql files, embedded in the
// binary, are applied in order on Open, each in its own transaction, and
// recorded in table duro_migration. Migrate and MigrationStatus serve a
// CLI. Times are stored as Unix nanoseconds UTC and returned in UTC.
//
// Migration 003_suspend_rewind adds instances.suspension and inbox.control.
// It computes control for the messages already stored in SQL, from the type
// of the stored event (json_extract on the event's JSON text), and
// recomputes the ready summary of any instance already Suspended, so no Go
// step is needed and a database migrated by the CLI alone is complete.
package sqlite
