-- 001_initial: the first schema of duro's PostgreSQL backend.
--
-- Every table lives in the schema of one task hub (Options.Schema); the
-- migration runs with search_path set to that schema only. Times are bigint
-- Unix nanoseconds UTC; 0 means "never" or "at once". IDs use the "C"
-- collation: byte order, as in the other backends, and cheap comparisons.

-- One row per orchestration instance, with the lease of its orchestration
-- step. step_attempt counts the deliveries of the instance's steps (A1) and
-- is their fencing token (A2); it only ever grows while the row exists.
-- completed_attempt is the step_attempt of the last delivery that completed
-- its step. ready_at and ready_key summarize the inbox so that claims need
-- not scan it: MIN(inbox.visible_at) and MIN(inbox.sort_at) over the
-- instance's messages (only its control messages while it is Suspended),
-- NULL when there are none. suspension is the JSON of the
-- backend.Suspension of a Suspended instance, NULL otherwise.
CREATE TABLE instances (
    id                  text COLLATE "C" NOT NULL PRIMARY KEY,
    seq                 bigint GENERATED ALWAYS AS IDENTITY,
    name                text COLLATE "C" NOT NULL,
    execution_id        text COLLATE "C" NOT NULL,
    status              text NOT NULL,
    input               bytea,
    output              bytea,
    failure             text,
    custom_status       bytea,
    suspension          text,
    created_at          bigint NOT NULL,
    updated_at          bigint NOT NULL,
    completed_at        bigint NOT NULL DEFAULT 0,
    parent_instance_id  text COLLATE "C",
    parent_execution_id text COLLATE "C",
    parent_task_id      bigint,
    lock_owner          text NOT NULL DEFAULT '',
    lock_expires_at     bigint NOT NULL DEFAULT 0,
    step_attempt        bigint NOT NULL DEFAULT 0,
    completed_attempt   bigint NOT NULL DEFAULT 0,
    ready_at            bigint,
    ready_key           bigint
);

-- Claims read these two partial indexes, each in claim order, skipping only
-- live leases (an index condition, checked without visiting the table):
-- instances with a message visible at once (ready_at = 0) by ready_key, and
-- instances whose earliest timer is due (ready_at in (0, now]) by ready_at.
-- Instances that only wait for a timer, or have an empty inbox, are in
-- neither range, so an idle claim costs two index probes.
CREATE INDEX instances_ready_now ON instances (ready_key, seq, lock_expires_at) WHERE ready_at = 0;
CREATE INDEX instances_ready_later ON instances (ready_at, seq, lock_expires_at) WHERE ready_at > 0;
-- ListInstances and PurgeInstances filters, newest first.
CREATE INDEX instances_created ON instances (created_at, id);
CREATE INDEX instances_status ON instances (status, created_at, id);
CREATE INDEX instances_name ON instances (name, created_at, id);

-- The current execution's history; seq starts at 1.
CREATE TABLE history (
    instance_id text COLLATE "C" NOT NULL,
    seq         integer NOT NULL,
    event       bytea NOT NULL,
    PRIMARY KEY (instance_id, seq)
);

-- Inbox messages. seq is the delivery order (every insert into an
-- instance's inbox holds the instance's row lock, so seq order is commit
-- order). visible_at is 0 for messages visible at once; sort_at is when the
-- message became (or becomes) visible by the writer's clock, the claim
-- order across instances. control is set for control event types
-- (backend.EventType.IsControl).
CREATE TABLE inbox (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           text COLLATE "C" NOT NULL UNIQUE,
    instance_id  text COLLATE "C" NOT NULL,
    execution_id text COLLATE "C" NOT NULL DEFAULT '',
    event        bytea NOT NULL,
    control      boolean NOT NULL,
    visible_at   bigint NOT NULL,
    sort_at      bigint NOT NULL,
    created_at   bigint NOT NULL
);
CREATE INDEX inbox_instance ON inbox (instance_id, seq);
CREATE INDEX inbox_control ON inbox (instance_id, seq) WHERE control;

-- IDs of the messages consumed by the instance's current execution, so that
-- a retried send of a consumed message is still ignored. Cleared when a new
-- execution starts.
CREATE TABLE inbox_consumed (
    instance_id text COLLATE "C" NOT NULL,
    id          text COLLATE "C" NOT NULL,
    PRIMARY KEY (instance_id, id)
);

-- Activity tasks with their lease. attempt counts deliveries (A1) and
-- fences completions (A2); claimed_at is the time of the last delivery (0
-- before the first); heartbeat_details are the last heartbeat's details.
CREATE TABLE activity_tasks (
    id                text COLLATE "C" NOT NULL PRIMARY KEY,
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    instance_id       text COLLATE "C" NOT NULL,
    execution_id      text COLLATE "C" NOT NULL,
    task_id           bigint NOT NULL,
    name              text NOT NULL,
    input             bytea,
    options           text NOT NULL DEFAULT '{}',
    attempt           bigint NOT NULL DEFAULT 0,
    lease_owner       text NOT NULL DEFAULT '',
    lease_expires_at  bigint NOT NULL DEFAULT 0,
    claimed_at        bigint NOT NULL DEFAULT 0,
    visible_at        bigint NOT NULL DEFAULT 0,
    created_at        bigint NOT NULL,
    heartbeat_details bytea
);
-- Claims read these like the instance indexes: tasks visible at once,
-- oldest first, and tasks whose retry time has come.
CREATE INDEX activity_tasks_ready_now ON activity_tasks (created_at, seq, lease_expires_at) WHERE visible_at = 0;
CREATE INDEX activity_tasks_ready_later ON activity_tasks (visible_at, seq, lease_expires_at) WHERE visible_at > 0;
CREATE INDEX activity_tasks_instance ON activity_tasks (instance_id, execution_id);
