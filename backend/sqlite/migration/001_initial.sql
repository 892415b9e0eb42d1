-- 001_initial: the first schema of duro's SQLite backend.
--
-- Times are INTEGER Unix nanoseconds UTC; 0 means "never" or "at once".

-- One row per orchestration instance, with the lease of its orchestration
-- step. step_attempt counts the deliveries of the instance's steps (A1) and
-- is their fencing token (A2); it only ever grows while the row exists.
-- completed_attempt is the step_attempt of the last delivery that completed
-- its step: that delivery no longer holds anything.
-- ready_at and ready_key summarize the inbox so that claims need not scan it:
-- ready_at = MIN(inbox.visible_at) and ready_key = MIN(inbox.sort_at) over
-- the instance's messages, NULL when the inbox is empty.
CREATE TABLE instances (
    id                  TEXT    NOT NULL PRIMARY KEY,
    name                TEXT    NOT NULL,
    execution_id        TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    input               BLOB,
    output              BLOB,
    failure             TEXT,
    custom_status       BLOB,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    completed_at        INTEGER NOT NULL DEFAULT 0,
    parent_instance_id  TEXT,
    parent_execution_id TEXT,
    parent_task_id      INTEGER,
    lock_owner          TEXT    NOT NULL DEFAULT '',
    lock_expires_at     INTEGER NOT NULL DEFAULT 0,
    step_attempt        INTEGER NOT NULL DEFAULT 0,
    completed_attempt   INTEGER NOT NULL DEFAULT 0,
    ready_at            INTEGER,
    ready_key           INTEGER
);

-- ClaimOrchestrationStep reads this index twice, each time stopping at the
-- first instance whose lease is free: among ready_at = 0 (a message visible at
-- once) in ready_key order, and among ready_at in (0, now] in ready_at order.
-- Neither read visits instances that only wait for a timer, so a claim costs
-- O(log n + live leases), however many instances are idle.
CREATE INDEX instances_claim ON instances (ready_at, ready_key, lock_expires_at)
    WHERE ready_at IS NOT NULL;
-- ListInstances and PurgeInstances filters, newest first.
CREATE INDEX instances_created ON instances (created_at, id);
CREATE INDEX instances_status ON instances (status, created_at, id);
CREATE INDEX instances_name ON instances (name, created_at, id);

-- The current execution's history; seq starts at 1.
CREATE TABLE history (
    instance_id TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    event       BLOB    NOT NULL,
    PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;

-- Inbox messages. seq gives delivery order within a step. visible_at is 0 for
-- messages visible at once; sort_at is when the message became (or becomes)
-- visible by the writer's clock, the claim order across instances.
CREATE TABLE inbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    instance_id  TEXT    NOT NULL,
    execution_id TEXT    NOT NULL DEFAULT '',
    event        BLOB    NOT NULL,
    visible_at   INTEGER NOT NULL,
    sort_at      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX inbox_instance_visible ON inbox (instance_id, visible_at);
CREATE INDEX inbox_instance_sort ON inbox (instance_id, sort_at);

-- IDs of the messages consumed by the instance's current execution, so that a
-- retried send of a consumed message is still ignored. Cleared when a new
-- execution starts.
CREATE TABLE inbox_consumed (
    instance_id TEXT NOT NULL,
    id          TEXT NOT NULL,
    PRIMARY KEY (instance_id, id)
) WITHOUT ROWID;

-- Activity tasks with their lease. attempt counts deliveries (A1) and fences
-- completions (A2); claimed_at is the time of the last delivery.
CREATE TABLE activity_tasks (
    id               TEXT    NOT NULL PRIMARY KEY,
    instance_id      TEXT    NOT NULL,
    execution_id     TEXT    NOT NULL,
    task_id          INTEGER NOT NULL,
    name             TEXT    NOT NULL,
    input            BLOB,
    options          TEXT    NOT NULL DEFAULT '{}',
    attempt          INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT    NOT NULL DEFAULT '',
    lease_expires_at INTEGER NOT NULL DEFAULT 0,
    claimed_at       INTEGER NOT NULL DEFAULT 0,
    visible_at       INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
-- ClaimActivity reads this index twice like ClaimOrchestrationStep: tasks
-- visible at once (visible_at = 0) oldest first, and tasks whose retry time
-- has come (visible_at in (0, now]); it skips only live leases.
CREATE INDEX activity_tasks_claim ON activity_tasks (visible_at, created_at, lease_expires_at);
CREATE INDEX activity_tasks_instance ON activity_tasks (instance_id, execution_id);
