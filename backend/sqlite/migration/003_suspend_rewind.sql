-- 003_suspend_rewind: suspended instances and control messages.
--
-- instances.suspension is the JSON of the backend.Suspension of a Suspended
-- instance, NULL for any other status.
ALTER TABLE instances ADD COLUMN suspension TEXT;

-- inbox.control is 1 for a message whose event type is a control type
-- (backend.EventType.IsControl: terminate, suspend, resume, rewind, task
-- duplicate), set on insert. A Suspended instance is claimable only for its
-- control messages, and its steps get only those.
ALTER TABLE inbox ADD COLUMN control INTEGER NOT NULL DEFAULT 0;

-- Existing messages: the type is read from the stored event, which is JSON
-- text in a BLOB column (SQLite would read a BLOB as JSONB, hence the CAST).
-- Events are validated on insert; the CASE keeps a malformed one at 0 rather
-- than failing the migration. Before this version only ExecutionTerminated
-- could be stored, but every control type is listed.
UPDATE inbox SET control = 1
WHERE CASE WHEN json_valid(CAST(event AS TEXT))
           THEN json_extract(CAST(event AS TEXT), '$.type')
      END IN ('ExecutionTerminated', 'ExecutionSuspended', 'ExecutionResumed',
              'TaskDuplicate', 'ExecutionRewound');

-- The ready summary of a Suspended instance (ready_at, ready_key) counts
-- only its control messages: MIN(visible_at) and MIN(sort_at) over the
-- messages with control = 1. These partial indexes serve those minimums and
-- the control-only message read of a claim; control messages are few.
CREATE INDEX inbox_control_visible ON inbox (instance_id, visible_at) WHERE control = 1;
CREATE INDEX inbox_control_sort ON inbox (instance_id, sort_at) WHERE control = 1;

-- Recompute the summary of instances that are already Suspended (none
-- should be: no earlier build suspended instances).
UPDATE instances SET
    ready_at  = (SELECT MIN(visible_at) FROM inbox WHERE inbox.instance_id = instances.id AND inbox.control = 1),
    ready_key = (SELECT MIN(sort_at) FROM inbox WHERE inbox.instance_id = instances.id AND inbox.control = 1)
WHERE status = 'Suspended';
