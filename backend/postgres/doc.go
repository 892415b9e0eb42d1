// Package postgres is duro's backend for many worker processes on many
// machines sharing one PostgreSQL database: a backend.Backend (with the
// optional backend.WorkNotifier and backend.BatchClaimer capabilities) on
// github.com/jackc/pgx/v5 and its connection pool.
//
//	b, err := postgres.Open(ctx, "postgres://user@db:5432/app", &postgres.Options{Schema: "payments"})
//
// # Task hubs and the schema
//
// Every table of a hub lives in the PostgreSQL schema named by
// Options.Schema (default "duro"), so several hubs share one database
// without seeing each other's work, and a hub's data is dropped with DROP
// SCHEMA ... CASCADE. The tables are those of the SQLite backend:
// instances (with the orchestration lease: lock_owner, lock_expires_at,
// step_attempt, completed_attempt, and the ready summary ready_at,
// ready_key), history, inbox, inbox_consumed, activity_tasks (with
// attempt, lease_expires_at, claimed_at) and request_window (the windows of
// processed request IDs of backend.RequestWindow). Times are bigint Unix nanoseconds
// UTC (exact, as the contract needs nanosecond instants; 0 is "never" or
// "at once"); IDs are text in the "C" collation, compared byte by byte.
//
// The schema is versioned: migration/NNN_name.sql files, embedded in the
// binary, are applied in order by Open (unless Options.SkipMigrate), each
// in its own transaction that first takes pg_advisory_xact_lock on the
// schema, so processes that open a new hub at once apply each migration
// exactly once; they are recorded in the schema's duro_migration table. An
// up-to-date schema costs Open one query. Migrate and MigrationStatus serve
// a duro migrate command for operators who apply schema changes
// separately.
//
// # How the guarantees are kept
//
// A1, attempt numbers. A claim is one statement, hence one transaction: it
// selects the first claimable rows FOR UPDATE SKIP LOCKED (concurrent
// claimers skip each other's rows instead of waiting or colliding),
// increments their attempt numbers and sets their leases, and it commits
// before the work items are returned, so the attempt number is durable
// before any code of the delivery runs. The commit is as durable as the
// server's synchronous_commit makes it: with on (PostgreSQL's default) it
// waits for the WAL flush, so an attempt survives a crash of the database
// server too; with off, a server crash can forget the last commits and hand
// an attempt number out again. Its cost is one round trip and one WAL flush
// per claim, shared by everything the claim returns (ClaimActivities and
// ClaimOrchestrationSteps claim up to max work items in that one
// statement). A claim whose reply is lost (the connection dies after the
// commit) leaves a lease nobody works on: it lapses, and the next claim
// gets the next attempt number. The lost claim made no start mark, so an
// at-most-once task is not a possible duplicate on its account: a
// delivery marks itself started (StartActivity, StartOrchestrationStep: one
// fenced UPDATE, durable like any commit) just before at-most-once code
// runs, and only marked deliveries count.
//
// A2, fencing. CompleteActivity, the Renew and Abandon methods and
// CompleteOrchestrationStep check, in the statement or transaction that
// writes, that the caller's attempt is the newest delivery (and, for
// steps, that the execution ID is current and the step not completed yet);
// otherwise they return backend.ErrLeaseLost. A lapsed lease nobody claimed
// since may still complete.
//
// O1, atomic steps. CompleteOrchestrationStep is one transaction. It first
// locks, in ID order, the rows of every instance the step may write (its
// own, the targets of its messages, its children and their parents), so
// steps never deadlock each other; then it checks the fence, consumes the
// messages, appends the history, writes the instance, enqueues the activity
// tasks, starts children, delivers messages, rewinds children, and handles
// continue-as-new or the end of the instance. Messages and tasks are
// inserted with ON CONFLICT DO NOTHING on their deterministic IDs, so
// nothing is enqueued twice. A transaction that still meets a deadlock or
// a serialization failure is rolled back and run again.
//
// Round trips. A write transaction sends no BEGIN of its own: BEGIN is
// queued in front of its first statement, and COMMIT behind its last
// batch (a step's writes, or the recomputation of the ready summaries it
// changed), so a transaction of one batch is one round trip (ltx.go). A
// step that starts, rewinds and ends nothing and sends messages only to
// its own instance (timers) — most steps — is one round trip and one WAL
// flush: one pipeline of BEGIN, a fence statement that locks the row and
// fails (a cast error, SQLSTATE 22P02) unless the delivery holds the step,
// the consumed messages, the history, the instance row, the activity
// tasks (eagerly claimed ones included), the ready summary, the timers,
// and COMMIT. A statement that fails makes the server skip the rest of
// the pipeline, COMMIT included, so a fenced step commits nothing; it is
// then run again on the full path, which says why it was fenced (and
// hands over the claims of a repeated commit). Other simple steps take
// two round trips (BEGIN with the locks of every instance they write, in
// ID order; then their writes with COMMIT); the others, one more per
// relation (children, rewinds, continue-as-new, the end of the instance).
// After a failed final batch the connection's transaction status tells a
// failed statement (nothing committed) from a COMMIT that ran; a COMMIT
// that failed, or a connection lost after the pipeline was sent, is
// reported as a commit failure, whose outcome is unknown, as before.
//
// History cache. A claim reads the history from the last row the backend
// cached for the instance's execution (Options.HistoryCacheEvents; see
// histcache.go), in the same round trip as its messages, and uses the
// cached prefix only if that row is still the one cached (same xmin, same
// bytes): a history another process replaced (a purge and a new instance
// of the same ID, a rewind) is read whole again.
//
// CompleteActivity is one round trip: a pipeline of two statements that
// the server runs as one implicit transaction (lock the instance and read
// the task, delete it and deliver its result, fenced by the attempt). It holds
// the instance's row in KEY SHARE mode, which completions of one instance
// share, so the results of a fan-out commit side by side instead of
// queueing for the row through each other's WAL flushes; a step of the
// instance (FOR UPDATE) still excludes them, so its recomputed ready
// summary never misses a result. Claims lock FOR NO KEY UPDATE, which
// completions do not block.
//
// # Semantics
//
// The package implements the contract of backend.Backend with exactly the
// interpretations of the SQLite backend (see its package documentation),
// which the conformance suite pins down: step attempts grow across steps
// and executions; a completed delivery no longer holds its instance; a
// zero VisibleAt or StartAt is visible to every claim whatever Now it
// passes; consumed message IDs are remembered for the execution; a
// Suspended instance is claimable only for control messages and is handed
// only those; Suspension is stored only with StatusSuspended and reported
// as {Since: UpdatedAt} if a step passed none; a task's PriorAttempts is its
// stored attempt until its first claim, and is kept (column
// prior_attempts, migration 002) for every claim to return; a finished
// instance's tasks held by a delivery are parked (visible_at =
// math.MaxInt64) for a late completion; resume outcomes are stored as JSON
// (column resume_outcomes); an exclusive message is checked under the
// instance's row lock, which steps take too; rewinds and RewindInstances behave
// as there, as do StartInstances (children before messages) and
// PurgeInstances. A step's messages come in the order they became visible
// (sort_at, the later of visible_at and the write time, since migration
// 002). Ties in claim and message order go to the row inserted first.
//
// A zero Now (and the methods that take none) means the database clock:
// now(), the start of the transaction, so every machine of a deployment
// shares one clock. A non-zero Now is used as given, as the conformance
// suite's synthetic clock needs.
//
// Leases come from the database clock only. Workers pass no Now in
// ClaimParams and RenewLeaseParams, and hand work back with
// AbandonParams.RetryAfter, which counts from the database clock. The Now
// of a step is the worker's clock (the step's time, recorded in history):
// it stamps the step's writes (updated_at, the tasks' and messages'
// created_at and claim order) but never a lease; the activities a step
// claims eagerly are leased from the claim's Now, and when that is zero
// (as workers pass it) from the database clock at the step's last
// statement, just before the commit. A timer's VisibleAt is the time the
// orchestration computed from its step's time, so a worker whose clock is
// off sets its timers off by as much: keep workers' clocks synchronized.
//
// Concurrent creators of one instance ID (clients' Start, steps starting
// the same child or entity) are serialized by its row: one statement
// locks the existing row, or inserts the new one with ON CONFLICT DO
// NOTHING, waiting for a concurrent creator's insert; when that one
// commits, the statement runs again and locks its row. Exactly one creator
// creates the instance; nothing is written over a row another transaction
// created.
//
// Claims never scan inboxes: instances.ready_at and ready_key hold
// MIN(visible_at) and MIN(sort_at) over the instance's inbox (its control
// messages only while it is Suspended). Every insert into an inbox holds
// the instance's row lock and updates the summary in the same statement;
// a transaction that removes messages or changes a status recomputes it
// before it commits. Two partial indexes serve claims: instances with a
// message visible at once, and instances whose earliest timer is due; an
// idle claim costs two index probes.
//
// # Wake-ups: LISTEN/NOTIFY
//
// Each Backend holds one dedicated connection that LISTENs on the hub's
// channel, duro_work_<schema>. A commit that makes work claimable (a new
// instance, message or task, a released lease with messages waiting)
// wakes the waiters of its own process at once and asks a background
// notifier to NOTIFY the channel; work that becomes visible later (a
// timer, a retry delay) is announced with its time, and every process
// schedules a local wake-up for it. The NOTIFY is sent after the commit,
// not inside it: a NOTIFY in a transaction holds a database-wide lock
// until its commit is flushed, which would serialize every committing
// transaction of every worker. Requests that arrive while a NOTIFY is in
// flight are coalesced, so a busy process sends about one per round trip.
// WorkAvailable closes on a notification, and every Options.PollInterval
// (default 1s) as a fallback for what no notification announces: the lease
// of a crashed worker lapsing, a notification lost with a connection. An
// idle worker therefore costs the database one idle connection and, per
// PollInterval, the claims its engine makes when woken (two index probes
// each); the engine's own poll interval should be long when it has a
// WorkNotifier. Steps wait on the database rather than the CPU, so a
// worker on this backend wants a higher OrchestrationConcurrency than the
// CPU count: more steps in flight share the server's WAL flushes.
//
// The same channel carries finish notifications (backend.FinishNotifier,
// which Client.Wait uses): after a step that completes, fails or
// terminates an instance commits, the Backend fires its own process's
// watches of the instance at once and has the notifier send
// "f:<token>:<instance ID>", coalesced with the work notifications. The
// token is random per Backend, so a listener skips the notifications its
// own Backend sent (their watches fired at the commit); a Backend in
// another process, or a second Backend in this one, fires its watches of
// the instance. A finish notification naming no instance (sent when one
// round had more than 256 finishes, or an ID too long for a payload)
// fires every watch, as does a restored listening connection. Listeners
// of older versions ignore these payloads; the work payloads ("" and a
// Unix ns time) are unchanged. Like the work NOTIFY it is sent after the
// commit, never before: a waiter is woken only by a committed finish.
//
// # When the database goes away
//
// Every method returns a wrapped error and never panics. When its context
// is done mid-statement, a pooled connection sends the server a cancel
// request and waits up to 2s for the answer, so that the caller knows
// whether the statement committed (a claim cancelled by a stopping worker
// is either rolled back or returned, never left leased to nobody); past
// that the connection is closed. Connections are opened with
// Options.ConnectTimeout. A write
// transaction that fails before its commit was sent is rolled back by the
// server, and is retried a few times with backoff; a failure of the commit
// itself is returned, since it may have committed (the engine retries, and
// fencing turns a repeated completion into ErrLeaseLost). Nothing is lost:
// work that was not committed is redelivered when its lease lapses, with
// the next attempt number, and at-most-once code never runs twice, since
// the attempt is committed before the code runs. The pool replaces broken
// connections (it pings one that was idle more than a second before
// handing it out). The listening connection reconnects with backoff (100ms
// doubling to 5s); it logs one warning when it loses the connection and one
// line when it is back, wakes every waiter when it is back, and meanwhile
// WorkAvailable closes every PollInterval so workers keep polling. A
// listening connection silent for 30s is pinged, so a connection lost
// without a word is noticed.
package postgres
