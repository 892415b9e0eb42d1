-- 002_committed_steps: which recent deliveries of an instance's steps
-- committed, so that a commit repeated by its own delivery (a retry whose
-- reply was lost) is recognised as committed rather than fenced as stale.
--
-- Bit i of instances.committed_steps is set when the delivery with
-- step_attempt = completed_attempt - i completed its step; bits cover the
-- last 32 deliveries. Every step commit shifts the bits by the deliveries
-- since the previous commit and sets bit 0.
ALTER TABLE instances ADD COLUMN committed_steps bigint NOT NULL DEFAULT 0;
UPDATE instances SET committed_steps = 1 WHERE completed_attempt > 0;
