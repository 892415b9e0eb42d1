package duro

import "sync/atomic"

// WorkerStats are a worker's counters since it was created.
type WorkerStats struct {
	// StepsCompleted counts orchestration steps committed.
	StepsCompleted int64
	// ActivitiesCompleted counts activity deliveries whose outcome committed.
	ActivitiesCompleted int64
	// Redeliveries counts activity deliveries with attempt > 1.
	Redeliveries int64
	// DuplicatesFailed counts at-most-once deliveries not run and failed as
	// possible duplicates (OnDuplicateFail).
	DuplicatesFailed int64
	// DuplicatesReconciled counts at-most-once deliveries handed to a
	// ReconcileFunc instead of being run.
	DuplicatesReconciled int64
	// StaleCompletionsRejected counts results discarded because a newer
	// delivery held the work item (A2), including leases lost mid-run.
	StaleCompletionsRejected int64
	// ActivitiesPoisoned counts activities failed after too many deliveries.
	ActivitiesPoisoned int64
	// StepsPoisoned counts instances suspended because a step kept failing
	// before it committed.
	StepsPoisoned int64
	// DuplicatesSuspended counts at-most-once deliveries not run that
	// suspended their instance for an operator's decision.
	DuplicatesSuspended int64
	// EagerActivities counts activity deliveries claimed by the commit of
	// the step that scheduled them (eager dispatch, see
	// WorkerOptions.DisableEagerActivities) rather than by a claim.
	EagerActivities int64
	// FusedSteps counts orchestration steps claimed by the completion of
	// an activity whose result they process (fused steps, see
	// WorkerOptions.DisableFusedSteps) rather than by a claim.
	FusedSteps int64
	// FusedCommits counts the fused steps that also committed in the
	// completion's transaction (backend.ActivityStepCommitter: PostgreSQL):
	// one commit for an activity's result and the step it wakes.
	FusedCommits int64
	// FusedStarts counts instances whose first step this worker ran and
	// committed in the creation's transaction (a Client with
	// ClientOptions.Worker, on a backend.StartStepCommitter: PostgreSQL).
	FusedStarts int64
	// EntityRequestsRejected counts requests entities refused because their
	// queue of requests waiting for a lock was full
	// (WorkerOptions.EntityQueueLimit).
	EntityRequestsRejected int64
	// ActivitiesReleased counts activity deliveries handed back before
	// their code started (the worker was stopping, or lacks the activity):
	// they do not make the next delivery a possible duplicate.
	ActivitiesReleased int64
	// StickyHits counts orchestration steps that continued the instance's
	// cached executor instead of replaying its history
	// (WorkerOptions.StickyOrchestrations).
	StickyHits int64
	// StickyMisses counts orchestration steps that replayed history from
	// the start while the sticky cache is on: none was cached, or the one
	// cached could not go on (StickyStale counts those that no longer sat
	// at the end of the history), or the step is one a cached executor
	// does not run (a suspension, a resume, a rewind).
	StickyMisses int64
	// StickyStale counts cached executors dropped because the claimed
	// history had moved past them or differed (another worker's step, a
	// continue-as-new, a purge and re-creation); each such step is also a
	// StickyMiss.
	StickyStale int64
	// StickyEvictions counts cached executors evicted to keep the cache
	// within WorkerOptions.StickyOrchestrations and StickyCacheBytes.
	StickyEvictions int64
}

type workerStats struct {
	stepsCompleted, activitiesCompleted, redeliveries      atomic.Int64
	duplicatesFailed, duplicatesReconciled, staleRejected  atomic.Int64
	activitiesPoisoned, stepsPoisoned, duplicatesSuspended atomic.Int64
	eagerActivities, entityRequestsRejected                atomic.Int64
	activitiesReleased, fusedSteps, fusedCommits           atomic.Int64
	fusedStarts                                            atomic.Int64
	stickyHits, stickyMisses, stickyStale, stickyEvictions atomic.Int64
}

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() WorkerStats {
	s := &w.stats
	return WorkerStats{
		StepsCompleted: s.stepsCompleted.Load(), ActivitiesCompleted: s.activitiesCompleted.Load(),
		Redeliveries: s.redeliveries.Load(), DuplicatesFailed: s.duplicatesFailed.Load(),
		DuplicatesReconciled: s.duplicatesReconciled.Load(), StaleCompletionsRejected: s.staleRejected.Load(),
		ActivitiesPoisoned: s.activitiesPoisoned.Load(), StepsPoisoned: s.stepsPoisoned.Load(),
		DuplicatesSuspended: s.duplicatesSuspended.Load(), EagerActivities: s.eagerActivities.Load(),
		EntityRequestsRejected: s.entityRequestsRejected.Load(), ActivitiesReleased: s.activitiesReleased.Load(),
		StickyHits: s.stickyHits.Load(), StickyMisses: s.stickyMisses.Load(), StickyStale: s.stickyStale.Load(),
		StickyEvictions: s.stickyEvictions.Load(),
		FusedSteps:      s.fusedSteps.Load(), FusedCommits: s.fusedCommits.Load(), FusedStarts: s.fusedStarts.Load(),
	}
}
