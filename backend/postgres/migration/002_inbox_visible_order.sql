-- 002_inbox_visible_order: a step's messages in the order they became
-- visible.
--
-- A step reads an instance's visible messages by (sort_at, seq) instead of
-- seq alone: sort_at is when a message became (or becomes) visible, so an
-- event that arrived before a timer fired comes before the timer even when
-- nobody claimed the instance in between (the timer's row is older: it is
-- written when the timer is scheduled). seq breaks ties: at the same
-- instant, the message written first comes first.
--
-- New messages get sort_at = GREATEST(visible_at, the time they are
-- written); before this version a message written with a visible_at already
-- past kept that visible_at. Those few keep their sort_at: they sort a
-- little earlier than the time they really became visible.
--
-- These indexes replace inbox_instance and inbox_control (instance_id, seq):
-- they serve the step's read in order without a sort, and every other use
-- of an instance's inbox (its ready summary, deletes by instance).
CREATE INDEX inbox_instance_sort ON inbox (instance_id, sort_at, seq);
CREATE INDEX inbox_control_sort ON inbox (instance_id, sort_at, seq) WHERE control;
DROP INDEX inbox_instance;
DROP INDEX inbox_control;
