-- 008_hot_steps: steps update their instance's row in place.
--
-- A step's writes to its instance's row (the claim's lease, the step's
-- status, output and released lease) changed a column of the claim indexes,
-- lock_expires_at, so PostgreSQL wrote every new version of the row into
-- all six of the table's indexes, and a long-running instance left a trail
-- of dead index entries that every read of its row by id stepped over. The
-- claim indexes now hold only the claim order; the lease is checked on the
-- row itself, which a claim reads anyway to lock it. An update that leaves
-- the ready summary, the status and the name alone (a claim; a step that
-- consumed a result committed with it and sends no message) is then a HOT
-- update: a new version on the same page, no index entry. The free space
-- the fill factor keeps on each page is what makes room for it.
DROP INDEX instances_ready_now;
DROP INDEX instances_ready_later;
CREATE INDEX instances_ready_now ON instances (ready_key, seq) WHERE ready_at = 0;
CREATE INDEX instances_ready_later ON instances (ready_at, seq) WHERE ready_at > 0;
ALTER TABLE instances SET (fillfactor = 70);
