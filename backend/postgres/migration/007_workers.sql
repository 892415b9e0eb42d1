-- 007_workers: the heartbeats of the workers running against the task hub
-- (backend.WorkerRegistry), for operators: which workers are live, which
-- are gone, what each one registers and how busy it is.
--
-- One row per run of a worker (Worker.Start): id is unique per run, name is
-- WorkerOptions.Name (the lease owner its claims record). orchestrations,
-- activities and entities are the names it registers. heartbeat_at is the
-- last heartbeat by the database clock; the worker is live until
-- expires_at unless gone_at is set (it stopped). Rows whose last heartbeat
-- is old are pruned by the workers themselves.
CREATE TABLE workers (
    id                  text COLLATE "C" NOT NULL PRIMARY KEY,
    name                text NOT NULL,
    host                text NOT NULL DEFAULT '',
    pid                 bigint NOT NULL DEFAULT 0,
    version             text NOT NULL DEFAULT '',
    orchestrations      text[] NOT NULL DEFAULT '{}',
    activities          text[] NOT NULL DEFAULT '{}',
    entities            text[] NOT NULL DEFAULT '{}',
    orchestration_slots integer NOT NULL DEFAULT 0,
    orchestration_busy  integer NOT NULL DEFAULT 0,
    activity_slots      integer NOT NULL DEFAULT 0,
    activity_busy       integer NOT NULL DEFAULT 0,
    stopping            boolean NOT NULL DEFAULT false,
    started_at          bigint NOT NULL,
    heartbeat_at        bigint NOT NULL,
    expires_at          bigint NOT NULL,
    gone_at             bigint NOT NULL DEFAULT 0
);
CREATE INDEX workers_heartbeat ON workers (heartbeat_at);
