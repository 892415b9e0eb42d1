-- 007_start_marks: deliveries say when they start code that must run at
-- most once, so a later delivery is a possible duplicate only when an
-- earlier one may have started it (not merely because it was claimed).
--
-- activity_tasks.started_attempt is the attempt of the newest delivery
-- that marked itself started (Backend.StartActivity), 0 if none did;
-- activity_tasks.released counts the deliveries released unstarted
-- (AbandonParams.Unstarted). instances.step_started is the step attempt
-- of the newest delivery that marked its step started
-- (StartOrchestrationStep); it counts only while it is above
-- completed_attempt, so a committed step clears it without a write.
ALTER TABLE activity_tasks ADD COLUMN started_attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE activity_tasks ADD COLUMN released INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN step_started INTEGER NOT NULL DEFAULT 0;

-- Deliveries made by an earlier version marked nothing: they count as
-- started.
UPDATE activity_tasks SET started_attempt = attempt WHERE claimed_at <> 0;
UPDATE instances SET step_started = step_attempt WHERE step_attempt > completed_attempt;
