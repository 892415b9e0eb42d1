// Package sqlite is duro's embedded backend: a backend.Backend stored in one
// SQLite file, with no server to run. It uses the pure-Go driver
// modernc.org/sqlite (no cgo).
//
// # Connections and locking
//
// Open uses one writer connection and a pool of read connections
// (Options.ReadConns). Every operation that writes, claims included, runs in
// a BEGIN IMMEDIATE transaction on the writer, so writers of one process
// queue for that connection and never fail with SQLITE_BUSY against each
// other. The file is in WAL mode, so readers (GetInstance, ListInstances,
// GetHistory) run beside the writer. Other processes may open the same file
// at once (the CLI, a second worker after a crash); their write transactions
// wait for each other for up to Options.BusyTimeout.
//
// # Durability
//
// A claim increments the work item's attempt number and takes its lease in
// one transaction, and ClaimOrchestrationStep and ClaimActivity return only
// after that transaction has committed: the commit of the claim is what makes
// an attempt number durable (guarantee A1). How durable a commit is depends
// on Options.Synchronous:
//
//   - FULL (the default) syncs the write-ahead log to stable storage at every
//     commit. A returned attempt number survives process crashes and power
//     loss, so no attempt number is ever handed out twice. The cost is one
//     fsync per commit: a few hundred microseconds to a few milliseconds on
//     an SSD, which bounds the rate of claims and completions of one store.
//   - NORMAL syncs only at checkpoints. Commits are still atomic and survive
//     a crash of the process (SIGKILL, panic), since the log is in the
//     operating system's cache, but the last commits before a power loss or
//     kernel crash may be rolled back: an attempt number could then be handed
//     out again after the machine restarts, and a step or an activity
//     completion could be lost (and redone). It is several times faster.
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
//
// # Schema
//
// The schema is versioned: migration/NNN_name.sql files, embedded in the
// binary, are applied in order on Open, each in its own transaction, and
// recorded in table duro_migration. Migrate and MigrationStatus serve a
// CLI. Times are stored as Unix nanoseconds UTC and returned in UTC.
package sqlite
