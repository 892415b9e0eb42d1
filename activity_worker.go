package duro

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/dispatch"
	"github.com/durohq/duro/internal/fault"
	"github.com/durohq/duro/internal/replay"
	"github.com/durohq/duro/internal/telemetry"
)

// activityRun is one delivery of an activity task being executed.
type activityRun struct {
	w    *Worker
	wi   *backend.ActivityWorkItem
	task *backend.ActivityTask
	ra   *registeredActivity // nil if not registered
	// log is the delivery's logger, built by logger on first use: most
	// deliveries log nothing, and With allocates.
	log     *slog.Logger
	logOnce sync.Once
	lease   time.Duration
	ctx     context.Context // cancelled when the worker aborts or the lease is lost
	cancel  context.CancelCauseFunc
	// actx is the code's ActivityContext.
	actx activityContext
	// renewTimer starts the renewing goroutine (renewLoop) when the first
	// renewal is due; renewDone stops it and renewWG waits for it.
	renewTimer *time.Timer
	renewDone  chan struct{}
	renewWG    sync.WaitGroup
	// outcome and outcomeErr end the delivery's span.
	outcome    string
	outcomeErr error
	// enforced is set when this worker's registration changed the task's
	// recorded options (inForce); the delivery's result records it.
	enforced *backend.ActivityOptions
	// ran is set when the delivery started the code: it marked itself
	// started, or (at least once) called it.
	ran bool
}

// errStopping hands back a delivery that the worker claimed but had not
// started when Stop was called.
var errStopping = errors.New("worker stopping")

// runActivity executes one delivery of an activity task: it keeps the lease
// renewed, applies the task's guarantee (at-most-once, poison), runs the code,
// and completes the task fenced by the delivery's attempt number.
func (w *Worker) runActivity(ctx context.Context, wi *backend.ActivityWorkItem) {
	fault.Point(fault.ActivityAfterClaim)
	task := wi.Task
	r := &activityRun{w: w, wi: wi, task: task}
	if ra, ok := w.reg.activity(task.Name); ok {
		r.ra = ra
	}
	r.lease = task.Options.LeaseDuration
	if r.lease <= 0 && r.ra != nil {
		r.lease = r.ra.opts.LeaseDuration
	}
	if r.lease <= 0 {
		r.lease = w.opts.ActivityLeaseDuration
	}
	if wi.Attempt > 1 {
		w.stats.redeliveries.Add(1)
		if wi.PreviousDeliveryAt.IsZero() {
			// The first delivery of a task enqueued again by a rewind or
			// an operator's retry: its attempts continue the earlier ones.
			r.logger().Info("duro: activity runs again (rewind or retry decision)", "prior_attempts", task.PriorAttempts)
		} else {
			r.logger().Info("duro: activity redelivered", "previous_delivery", wi.PreviousDeliveryAt)
		}
	}
	// The code's context carries the delivery's span, for its own spans.
	spanCtx, span := telemetry.StartActivity(ctx, w.tr, wi)
	defer func() { telemetry.End(span, r.outcome, r.outcomeErr) }()
	r.ctx, r.cancel = context.WithCancelCause(spanCtx)
	defer r.cancel(nil)
	r.keepLease()

	result, failure, abandon := r.decide()
	r.stopRenew()

	if cause := context.Cause(r.ctx); errors.Is(cause, backend.ErrLeaseLost) {
		w.stats.staleRejected.Add(1)
		r.outcome, r.outcomeErr = telemetry.OutcomeLeaseLost, cause
		r.logger().Warn("duro: activity lost its lease while running; its result is discarded", "err", cause)
		return
	}
	if errors.Is(abandon, errSuspendForDecision) {
		r.outcome = telemetry.OutcomeDuplicate
		r.completeEvent(ctx, &backend.Event{Type: backend.EventTaskDuplicate, TaskID: task.TaskID, Name: task.Name,
			Attempt: wi.Attempt, FireAt: wi.PreviousDeliveryAt, Timestamp: w.now().UTC()})
		return
	}
	if abandon != nil || (ctx.Err() != nil && failure != nil) {
		// Hand the task back: the worker is stopping (before the code
		// started, or the code gave up when Stop's deadline passed), the
		// activity is not registered here, or a reconciliation failed and
		// should be tried again later. A delivery whose code did not start
		// is released unstarted: the next one is not a possible duplicate
		// on its account.
		var retryAfter time.Duration // by the store's clock
		r.outcome, r.outcomeErr = telemetry.OutcomeHandedBack, abandon
		switch {
		case errors.Is(abandon, errStopping):
			r.logger().Debug("duro: worker stopping; activity delivery released unstarted")
		case abandon != nil:
			retryAfter = w.opts.PollInterval * 10
			r.logger().Warn("duro: activity delivery handed back", "err", abandon, "code_started", r.ran)
		}
		actx, c := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer c()
		if err := w.be.AbandonActivity(actx, &backend.AbandonParams{ID: task.ID, Attempt: int64(wi.Attempt),
			RetryAfter: retryAfter, Unstarted: !r.ran}); err != nil {
			r.logger().Warn("duro: abandon activity", "err", err)
		} else if !r.ran {
			w.stats.activitiesReleased.Add(1)
		}
		return
	}
	switch {
	case failure != nil && failure.Type == FailureTypePoisoned:
		r.outcome = telemetry.OutcomePoisoned
	case failure != nil:
		r.outcome = telemetry.OutcomeFailed
	default:
		r.outcome = telemetry.OutcomeCompleted
	}
	r.complete(ctx, result, failure)
}

// logger returns the delivery's logger.
func (r *activityRun) logger() *slog.Logger {
	r.logOnce.Do(func() {
		task := r.task
		r.log = r.w.log.With("instance", task.InstanceID, "activity", task.Name, "task_id", task.TaskID, "attempt", r.wi.Attempt)
	})
	return r.log
}

// keepLease renews the lease every third of its length until stopRenew is
// called. A lost lease cancels r.ctx with backend.ErrLeaseLost. The renewing
// goroutine starts when the first renewal is due, so an activity that
// finishes sooner costs no goroutine.
func (r *activityRun) keepLease() {
	r.renewDone = make(chan struct{})
	r.renewWG.Add(1)
	r.renewTimer = time.AfterFunc(r.lease/3, r.renewLoop)
}

// renewLoop renews the lease now and then every third of its length, until
// stopRenew is called or r.ctx is done.
func (r *activityRun) renewLoop() {
	defer r.renewWG.Done()
	t := time.NewTicker(r.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-r.renewDone:
			return
		case <-r.ctx.Done():
			return
		default:
		}
		if err := r.renew(nil); err != nil && !errors.Is(err, backend.ErrLeaseLost) && r.ctx.Err() == nil {
			r.logger().Warn("duro: renewing activity lease failed", "err", err)
		}
		select {
		case <-r.renewDone:
			return
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stopRenew stops renewing the lease and waits for a renewal in progress.
func (r *activityRun) stopRenew() {
	close(r.renewDone)
	if r.renewTimer.Stop() {
		r.renewWG.Done() // renewLoop never started
	}
	r.renewWG.Wait()
}

// signal sends an entity signal for the activity's code.
func (r *activityRun) signal(id EntityID, op string, input any, msgID string) error {
	if err := id.validate(); err != nil {
		return err
	}
	b, err := r.w.p.encodeAs(func() string { return fmt.Sprintf("input of operation %q of entity %s", op, id) }, input)
	if err != nil {
		return err
	}
	return sendToEntity(r.ctx, r.w.be, entityRequest(id, op, b, msgID))
}

func (r *activityRun) renew(details []byte) error {
	err := r.w.be.RenewActivityLease(r.ctx, &backend.RenewLeaseParams{
		ID: r.task.ID, Attempt: int64(r.wi.Attempt), LeaseDuration: r.lease, Details: details,
	})
	if errors.Is(err, backend.ErrLeaseLost) {
		r.cancel(err)
	}
	return err
}

// decide applies the task's guarantee and runs the code if it may run. It
// returns the outcome, or abandon != nil to hand the delivery back.
func (r *activityRun) decide() (result []byte, failure *backend.Failure, abandon error) {
	w, wi, task := r.w, r.wi, r.task
	maxDeliveries := task.Options.MaxDeliveries
	if maxDeliveries <= 0 && r.ra != nil {
		maxDeliveries = r.ra.opts.MaxDeliveries
	}
	if maxDeliveries <= 0 {
		maxDeliveries = w.opts.MaxDeliveries
	}
	// The budget counts the deliveries since the task was enqueued: an
	// operator's retry decision and a rewind enqueue the call again with
	// its earlier deliveries in PriorAttempts, so they start a fresh
	// budget while attempt numbers continue (A1). The delivery an operator
	// approved runs whatever the count.
	select {
	case <-w.stopping:
		// Stop was called after the claim (an eager claim, a batch claim
		// made as Stop began): release the delivery for another worker
		// rather than start code that Stop would have to wait for.
		return nil, nil, errStopping
	default:
	}
	deliveries := wi.Attempt - task.PriorAttempts - wi.Released
	if deliveries > maxDeliveries && wi.Attempt != task.Options.ApprovedAttempt {
		w.stats.activitiesPoisoned.Add(1)
		r.logger().Error("duro: activity poisoned: too many deliveries", "deliveries", deliveries, "max_deliveries", maxDeliveries)
		return nil, engineFailure(FailureTypePoisoned, task.Name,
			&PoisonedError{Deliveries: deliveries, MaxDeliveries: maxDeliveries}), nil
	}
	if r.ra == nil {
		// Another worker (or a later deployment) may know it; after
		// MaxDeliveries the task fails as poisoned.
		return nil, nil, fmt.Errorf("activity %q is not registered with this worker: %w", task.Name, ErrNotRegistered)
	}
	dup := r.possibleDuplicate()
	r.actx = activityContext{
		Context: r.ctx, instanceID: task.InstanceID, taskID: task.TaskID, name: task.Name,
		attempt: wi.Attempt, previous: wi.PreviousDeliveryAt, run: r, p: w.p,
		details: wi.HeartbeatDetails, execID: task.ExecutionID,
		maybeDup: dup || task.PriorAttempts > 0,
	}
	actx := &r.actx
	opts := r.inForce()
	if !opts.AtMostOnce {
		r.ran = true
		result, failure = r.call(actx)
		return result, failure, nil
	}
	if !dup || wi.Attempt == opts.ApprovedAttempt || fault.Broken(fault.BreakAtMostOnce) {
		return r.startAndCall(actx)
	}

	// An earlier delivery of the at-most-once task may have run the code.
	dupErr := &PossibleDuplicateError{Attempt: wi.Attempt, PreviousDeliveryAt: wi.PreviousDeliveryAt}
	policy := OnDuplicate(opts.OnDuplicate)
	if policy == OnDuplicateReconcile && r.ra.opts.Reconcile == nil {
		r.logger().Warn("duro: OnDuplicateReconcile without a ReconcileFunc; failing the task as a possible duplicate")
		policy = OnDuplicateFail
	}
	switch policy {
	case OnDuplicateSuspend:
		w.stats.duplicatesSuspended.Add(1)
		r.logger().Warn("duro: at-most-once activity not run again: possible duplicate; suspending the instance for a decision")
		return nil, nil, errSuspendForDecision
	case OnDuplicateReconcile:
		w.stats.duplicatesReconciled.Add(1)
		d, err := r.reconcile(actx)
		if err != nil {
			return nil, nil, fmt.Errorf("reconcile: %w", err)
		}
		switch d.kind {
		case decideRetry:
			r.logger().Info("duro: reconciler decided to run the activity again")
			return r.startAndCall(actx)
		case decideResult:
			b, err := w.p.encode(fmt.Sprintf("reconciled result of activity %q", task.Name), d.result)
			if err != nil {
				f := failureFromError(w.p.codec, err)
				f.TaskName, f.NonRetryable = task.Name, true
				return nil, f, nil
			}
			return b, nil, nil
		case decideFail:
			return nil, &backend.Failure{Message: d.message, Type: FailureTypeReconciled, TaskName: task.Name, NonRetryable: true}, nil
		case decideSuspend:
			w.stats.duplicatesSuspended.Add(1)
			return nil, nil, errSuspendForDecision
		}
		return nil, nil, errors.New("reconciler returned a zero ReconcileDecision")
	default:
		w.stats.duplicatesFailed.Add(1)
		r.logger().Warn("duro: at-most-once activity not run again: possible duplicate")
		return nil, engineFailure(FailureTypePossibleDuplicate, task.Name, dupErr), nil
	}
}

// possibleDuplicate reports whether an earlier delivery of the task may
// have started its code. A delivery that marked itself started may have;
// for a task recorded at most once, whose every delivery marks itself
// started before its code runs, only those. A task recorded at least once
// may have been run by deliveries that did not mark (a worker that does
// not register it at most once): there, every earlier delivery counts
// unless it was released unstarted.
func (r *activityRun) possibleDuplicate() bool {
	wi := r.wi
	if wi.StartedAttempt > 0 {
		return true
	}
	if r.task.Options.AtMostOnce {
		return false
	}
	return wi.Attempt-1-r.task.PriorAttempts-wi.Released > 0
}

// startAndCall marks the delivery started, durably, and then runs the
// code. A stale delivery cannot start (ErrLeaseLost cancels r.ctx, and
// nothing is committed); any other failure to mark hands the delivery
// back, unstarted.
func (r *activityRun) startAndCall(actx *activityContext) (result []byte, failure *backend.Failure, abandon error) {
	err := r.w.be.StartActivity(r.ctx, &backend.StartParams{ID: r.task.ID, Attempt: int64(r.wi.Attempt)})
	if errors.Is(err, backend.ErrLeaseLost) {
		r.cancel(err)
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("mark the delivery started: %w", err)
	}
	r.ran = true
	fault.Point(fault.ActivityAfterStart)
	result, failure = r.call(actx)
	return result, failure, nil
}

// inForce returns the options this delivery enforces: the task's recorded
// ones strengthened by this worker's registration (see inForce). When they
// differ the result event records them.
func (r *activityRun) inForce() backend.ActivityOptions {
	recorded := r.task.Options
	opts := inForce(recorded, &r.ra.opts)
	if opts == recorded {
		return opts
	}
	r.enforced = &opts
	if recorded.OnDuplicate != "" && recorded.OnDuplicate != opts.OnDuplicate {
		r.logger().Info("duro: this worker's registration decides the at-most-once policy",
			"scheduled_policy", recorded.OnDuplicate, "policy", opts.OnDuplicate)
	} else {
		r.logger().Debug("duro: this worker's registration makes the activity at most once",
			"scheduled_at_most_once", recorded.AtMostOnce, "policy", opts.OnDuplicate)
	}
	return opts
}

func (r *activityRun) reconcile(actx *activityContext) (d ReconcileDecision, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("reconciler panicked: %v", p)
		}
	}()
	return r.ra.opts.Reconcile(actx, &Payload{raw: r.task.Input, p: r.w.p})
}

// call runs the user's code, converting panics and oversized results into
// failures.
func (r *activityRun) call(actx *activityContext) (result []byte, failure *backend.Failure) {
	task := r.task
	defer func() {
		if p := recover(); p != nil {
			result = nil
			failure = &backend.Failure{Message: fmt.Sprintf("panic: %v", p), Type: "Panic", TaskName: task.Name, Stack: string(debug.Stack())}
		}
	}()
	out, err := r.ra.fn(actx, r.w.p, task.Input)
	if err == nil {
		out, err := r.w.p.encodeAs(func() string { return fmt.Sprintf("result of activity %q", task.Name) }, out)
		if err == nil {
			return out, nil
		}
		f := failureFromError(r.w.p.codec, err)
		f.TaskName = task.Name
		f.NonRetryable = true
		return nil, f
	}
	f := failureFromError(r.w.p.codec, err)
	f.TaskName = task.Name
	if errors.Is(err, ErrPayloadDecode) {
		f.NonRetryable = true
	}
	return nil, f
}

// errSuspendForDecision makes a delivery complete its task with a
// TaskDuplicate event, which suspends the instance for an operator.
var errSuspendForDecision = errors.New("suspend for a decision")

// complete commits the delivery's outcome, fenced by its attempt number.
func (r *activityRun) complete(ctx context.Context, result []byte, failure *backend.Failure) {
	ev := &backend.Event{Type: backend.EventTaskCompleted, TaskID: r.task.TaskID, Result: result, Attempt: r.wi.Attempt, Timestamp: r.w.now().UTC()}
	if failure != nil {
		ev = &backend.Event{Type: backend.EventTaskFailed, TaskID: r.task.TaskID, Failure: failure, Attempt: r.wi.Attempt, Timestamp: ev.Timestamp}
	}
	r.completeEvent(ctx, ev)
}

// completeEvent deletes the task and delivers ev to its instance, fenced by
// the delivery's attempt number.
func (r *activityRun) completeEvent(ctx context.Context, ev *backend.Event) {
	w, wi, task := r.w, r.wi, r.task
	if ev.Activity == nil {
		ev.Activity = r.enforced // what this delivery enforced, if not what was scheduled
	}
	fault.Point(fault.ActivityBeforeComplete)
	// A finished result is worth committing even while the worker stops.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	ended := func(err error) bool { return isPermanent(err) || errors.Is(err, backend.ErrInstanceFinished) }
	p := &backend.CompleteActivityParams{TaskID: task.ID, Attempt: wi.Attempt, Result: ev,
		InstanceID: task.InstanceID, ExecutionID: task.ExecutionID}
	var err error
	counted := false // the merged path counts the completion itself
	if reserved := w.reserveFusedStep(); reserved > 0 && w.committer != nil {
		// The completion also claims the instance's next step, runs it
		// in the completion's transaction and commits it there.
		err = w.completeWithStep(ctx, cctx, p, reserved, ended, func() {
			// Counted before the step is handled: a declined step
			// commits after the completion, and may end the instance.
			w.stats.activitiesCompleted.Add(1)
			fault.Point(fault.ActivityAfterComplete)
			counted = true
		})
	} else if reserved > 0 {
		// The completion also claims the instance's next step, which
		// runs at once on the reserved slot (or frees it if none).
		var step *backend.OrchestrationWorkItem
		err = dispatch.Retry(cctx, 5, ended, func() error {
			claim := w.orchClaim
			var err error
			step, err = w.fused.CompleteActivityClaim(cctx, p, &claim)
			return err
		})
		var items []*backend.OrchestrationWorkItem
		if step != nil {
			items = append(items, step)
			w.stats.fusedSteps.Add(1)
		}
		w.orch.Hand(reserved, items)
	} else {
		err = dispatch.Retry(cctx, 5, ended, func() error { return w.be.CompleteActivity(cctx, p) })
	}
	switch {
	case err == nil && counted:
	case err == nil:
		w.stats.activitiesCompleted.Add(1)
		fault.Point(fault.ActivityAfterComplete)
	case errors.Is(err, backend.ErrInstanceFinished):
		// The instance ended (terminated, say) while the code ran: no code
		// waits for the result, which the backend kept in the instance's
		// history (a LateResult event) for operators.
		var status Status
		if inst, gerr := w.be.GetInstance(cctx, task.InstanceID); gerr == nil {
			status = inst.Status
		}
		kept := "dropped"
		if ev.Type.KeptLate() {
			kept = "kept in the instance's history"
		}
		r.logger().Warn("duro: activity finished after its instance ended; its outcome is "+kept,
			"status", status, "result_type", ev.Type)
	case errors.Is(err, backend.ErrLeaseLost):
		w.stats.staleRejected.Add(1)
		r.outcome, r.outcomeErr = telemetry.OutcomeLeaseLost, err
		r.logger().Warn("duro: stale activity completion rejected; a newer delivery holds the task", "err", err)
	default:
		r.logger().Error("duro: activity completion not committed; the task will be delivered again", "err", err)
		r.outcome, r.outcomeErr = telemetry.OutcomeError, err
	}
}

// fusedRun is the step a fused completion's transaction ran
// (completeWithStep): the run, and the activity slots reserved for the
// tasks its commit claims.
type fusedRun struct {
	r        *stepRun
	reserved int
}

// discard drops a fused run whose step did not commit: its executor and
// span end (the step runs again on the normal path if it is claimed), and
// its activity slots are freed.
func (f *fusedRun) discard(w *Worker) {
	if f == nil {
		return
	}
	w.act.Hand(f.reserved, nil)
	f.reserved = 0
	if !f.r.ended {
		f.r.outcome = telemetry.OutcomeHandedBack
		f.r.end()
	}
}

// completeWithStep completes an activity delivery through the backend's
// ActivityStepCommitter: the instance's next step, if the completion
// claims it, is executed in the completion's transaction and committed
// with it, with the eager claims of its activities. reserved is the
// orchestration slot reserved for the step (freed on return, or used by
// the step if the backend hands it back to run as after any claim).
func (w *Worker) completeWithStep(ctx, cctx context.Context, p *backend.CompleteActivityParams, reserved int, ended func(error) bool, completed func()) error {
	var f *fusedRun // the last try's run
	var out *backend.ActivityStep
	run := w.fusedStep(ctx, &f)
	err := dispatch.Retry(cctx, 5, ended, func() error {
		f.discard(w)
		f = nil
		claim := w.orchClaim
		var err error
		out, err = w.committer.CompleteActivityStep(cctx, p, &claim, run)
		return err
	})
	if err != nil {
		out = nil
	} else {
		completed()
	}
	w.handFused(out, f, reserved, false)
	return err
}

// fusedStep is the run of a fused transaction (CompleteActivityStep,
// CreateInstanceStep): it runs the step the transaction claimed
// (runFused) and returns the step's commit with the eager claim of its
// activities, or nil to leave the step to the normal path. *f is the last
// call's run; a call discards the one before it (a repeated transaction).
func (w *Worker) fusedStep(ctx context.Context, f **fusedRun) func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
	return func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		(*f).discard(w)
		*f = w.runFused(ctx, wi)
		if *f == nil {
			return nil
		}
		sc := &backend.StepCommit{Params: (*f).r.params}
		if (*f).reserved > 0 {
			ac := w.actClaim
			sc.ActivityClaim, sc.MaxActivities = &ac, (*f).reserved
		}
		return sc
	}
}

// handFused takes over what a fused transaction that committed (out; nil
// if it failed) left: the step f ran and the backend committed, whose
// eager activities go to the activity loop; a step the backend declined,
// committed now as after any claim; a step claimed but not run here, run
// on the reserved orchestration slot. The slot is freed otherwise. start
// is set for a fused start's transaction, whose steps count as FusedStarts
// rather than as fused steps.
func (w *Worker) handFused(out *backend.ActivityStep, f *fusedRun, reserved int, start bool) {
	var step *backend.OrchestrationWorkItem
	if out != nil {
		step = out.Step
	}
	switch {
	case step == nil:
		f.discard(w)
	case out.Committed && f != nil && f.r.wi == step:
		if start {
			w.stats.fusedStarts.Add(1)
		} else {
			w.stats.fusedSteps.Add(1)
			w.stats.fusedCommits.Add(1)
		}
		w.stats.eagerActivities.Add(int64(len(out.Activities)))
		w.act.Hand(f.reserved, out.Activities)
		f.reserved = 0
		w.committedRun(f.r)
		f.r.end()
	case f != nil && f.r.wi == step:
		// The backend declined to commit the step with the transaction:
		// the claim stands, and the step its code computed is committed
		// now, as after any claim.
		if !start {
			w.stats.fusedSteps.Add(1)
		}
		w.act.Hand(f.reserved, nil)
		f.reserved = 0
		w.commitRun(f.r)
		f.r.end()
	default:
		// A step claimed without being run here (a poisoned step, an
		// entity, code that failed, or a new claim after the step's
		// writes failed): it runs on the reserved slot as any claim.
		f.discard(w)
		if !start {
			w.stats.fusedSteps.Add(1)
		}
		w.orch.Hand(reserved, []*backend.OrchestrationWorkItem{step})
		return
	}
	w.orch.Hand(reserved, nil)
}

// runFused executes, inside a fused completion's transaction, the step wi
// the completion claimed, and reserves activity slots for the tasks it
// schedules (eager dispatch). It returns nil, leaving the step to the
// normal path, for a step that is poisoned, an entity's batch, code that
// fails, or a stopping worker.
func (w *Worker) runFused(ctx context.Context, wi *backend.OrchestrationWorkItem) *fusedRun {
	if wi.Deliveries > w.opts.MaxStepDeliveries || replay.EntityName(wi.Instance.ID) != "" {
		return nil
	}
	select {
	case <-w.stopping:
		return nil
	default:
	}
	r := w.startRun(ctx, wi)
	var err error
	r.params, r.ex, err = w.execute(wi, r.log)
	if err != nil {
		r.outcome, r.err = telemetry.OutcomeHandedBack, err
		r.end()
		return nil
	}
	fault.Point(fault.StepBeforeCommit)
	f := &fusedRun{r: r}
	if w.eager != nil && len(r.params.ActivityTasks) > 0 {
		if n := w.runnableFirst(r.params); n > 0 {
			f.reserved = w.act.Reserve(n)
		}
	}
	return f
}

// reserveFusedStep reserves an orchestration slot for the step a fused
// completion may claim, and returns 1, or 0 when fused steps are off, this
// worker runs no orchestrations, no slot is free or the worker is stopping
// (a stopping worker claims nothing new).
func (w *Worker) reserveFusedStep() int {
	if w.fused == nil || !w.reg.runsSteps() {
		return 0
	}
	select {
	case <-w.stopping:
		return 0
	default:
	}
	return w.orch.Reserve(1)
}
