-- 008_workers: the heartbeats of the workers running against the store
-- (backend.WorkerRegistry), for operators: which workers are live, which
-- are gone, what each one registers and how busy it is.
--
-- One row per run of a worker (Worker.Start): id is unique per run, name is
-- WorkerOptions.Name (the lease owner its claims record). orchestrations,
-- activities and entities are JSON arrays of the names it registers.
-- heartbeat_at is the last heartbeat by the store's clock; the worker is
-- live until expires_at unless gone_at is set (it stopped). Rows whose last
-- heartbeat is old are pruned by the workers themselves.
CREATE TABLE workers (
    id                  TEXT    NOT NULL PRIMARY KEY,
    name                TEXT    NOT NULL,
    host                TEXT    NOT NULL DEFAULT '',
    pid                 INTEGER NOT NULL DEFAULT 0,
    version             TEXT    NOT NULL DEFAULT '',
    orchestrations      TEXT    NOT NULL DEFAULT '[]',
    activities          TEXT    NOT NULL DEFAULT '[]',
    entities            TEXT    NOT NULL DEFAULT '[]',
    orchestration_slots INTEGER NOT NULL DEFAULT 0,
    orchestration_busy  INTEGER NOT NULL DEFAULT 0,
    activity_slots      INTEGER NOT NULL DEFAULT 0,
    activity_busy       INTEGER NOT NULL DEFAULT 0,
    stopping            INTEGER NOT NULL DEFAULT 0,
    started_at          INTEGER NOT NULL,
    heartbeat_at        INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    gone_at             INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX workers_heartbeat ON workers (heartbeat_at);
