-- 002_request_window: windows of processed request IDs (backend.RequestWindow),
-- which entities use to drop duplicate requests.
--
-- One row per request ID an instance remembers. seq orders an instance's
-- window, 1, 2, … as IDs are added (an ID added again moves to the end);
-- windows are pruned from their oldest end, by count and by age, so a step
-- writes only the rows it adds and drops. added_at is when the request was
-- processed. The rows belong to the instance, not to an execution: they
-- survive continue-as-new and go with the instance.
CREATE TABLE request_window (
    instance_id text COLLATE "C" NOT NULL,
    id          text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    added_at    bigint NOT NULL,
    PRIMARY KEY (instance_id, id)
);
CREATE INDEX request_window_order ON request_window (instance_id, seq) INCLUDE (added_at);
