-- 004_operator: what operators' actions need from the store.
--
-- activity_tasks.prior_attempts is the task's ActivityTask.PriorAttempts:
-- the deliveries the same call had under earlier task IDs before an
-- operator's retry decision or a rewind enqueued it again. Every claim
-- returns it, so the worker counts the deliveries since the task was
-- enqueued (attempt - prior_attempts) for its poison limit, while attempt
-- numbers continue. A task not claimed yet has attempt = prior_attempts;
-- for a task already claimed the earlier count is unknown and stays 0.
ALTER TABLE activity_tasks ADD COLUMN prior_attempts INTEGER NOT NULL DEFAULT 0;
UPDATE activity_tasks SET prior_attempts = attempt WHERE claimed_at = 0;

-- instances.resume_outcomes is the JSON array of the instance's last
-- backend.ResumeOutcome records (what its steps did with resume requests),
-- NULL when there are none. A step replaces it when it passes some; a
-- replacement of a finished instance clears it.
ALTER TABLE instances ADD COLUMN resume_outcomes TEXT;

-- A task whose instance finished while a delivery ran is kept, parked at
-- visible_at = 9223372036854775807 (never claimable), until that delivery
-- completes (its result goes to the instance's history as a LateResult
-- event), hands it back, or the instance is rewound, replaced or purged.
-- No schema change is needed for it; it is noted here with the version
-- that introduced it.
