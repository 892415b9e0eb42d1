package duro

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"duro/backend"
	"duro/internal/dispatch"
)

// runActivity executes one delivery of an activity task: it keeps the lease
// renewed while the code runs, turns the outcome into a TaskCompleted or
// TaskFailed event, and completes the task fenced by the delivery's attempt.
func (w *Worker) runActivity(ctx context.Context, wi *backend.ActivityWorkItem) {
	task := wi.Task
	log := w.log.With("instance", task.InstanceID, "activity", task.Name, "task_id", task.TaskID, "attempt", wi.Attempt)
	if wi.Attempt > 1 {
		log.Info("duro: activity redelivered", "previous_delivery", wi.PreviousDeliveryAt)
	}
	lease := task.Options.LeaseDuration
	ra, registered := w.reg.activity(task.Name)
	if lease <= 0 && registered {
		lease = ra.opts.LeaseDuration
	}
	if lease <= 0 {
		lease = w.opts.ActivityLeaseDuration
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renew := func() error {
		err := w.be.RenewActivityLease(runCtx, &backend.RenewLeaseParams{ID: task.ID, Attempt: int64(wi.Attempt), LeaseDuration: lease})
		if errors.Is(err, backend.ErrLeaseLost) {
			cancel(err)
		}
		return err
	}
	var wg sync.WaitGroup
	stopRenew := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(lease / 3)
		defer t.Stop()
		for {
			select {
			case <-stopRenew:
				return
			case <-runCtx.Done():
				return
			case <-t.C:
				if err := renew(); err != nil && !errors.Is(err, backend.ErrLeaseLost) && runCtx.Err() == nil {
					log.Warn("duro: renewing activity lease failed", "err", err)
				}
			}
		}
	}()

	var result []byte
	var failure *backend.Failure
	if !registered {
		failure = &backend.Failure{Message: fmt.Sprintf("activity %q is not registered with this worker", task.Name),
			Type: "NotRegistered", TaskName: task.Name, NonRetryable: true}
	} else {
		actx := &activityContext{
			Context: runCtx, instanceID: task.InstanceID, taskID: task.TaskID, name: task.Name,
			attempt: wi.Attempt, previous: wi.PreviousDeliveryAt, logger: log, heartbeat: renew,
		}
		result, failure = w.callActivity(actx, ra, task)
	}
	close(stopRenew)
	wg.Wait()

	if cause := context.Cause(runCtx); errors.Is(cause, backend.ErrLeaseLost) {
		log.Warn("duro: activity lost its lease while running; its result is discarded", "err", cause)
		return
	}
	if ctx.Err() != nil && failure != nil {
		// The worker is stopping and the code gave up: hand the task back.
		actx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		if err := w.be.AbandonActivity(actx, &backend.AbandonParams{ID: task.ID, Attempt: int64(wi.Attempt)}); err != nil {
			log.Warn("duro: abandon activity", "err", err)
		}
		return
	}
	ev := &backend.Event{Type: backend.EventTaskCompleted, TaskID: task.TaskID, Result: result, Attempt: wi.Attempt, Timestamp: time.Now().UTC()}
	if failure != nil {
		ev = &backend.Event{Type: backend.EventTaskFailed, TaskID: task.TaskID, Failure: failure, Attempt: wi.Attempt, Timestamp: ev.Timestamp}
	}
	// A finished result is worth committing even while the worker stops.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer ccancel()
	err := dispatch.Retry(cctx, 5, isPermanent, func() error {
		return w.be.CompleteActivity(cctx, &backend.CompleteActivityParams{TaskID: task.ID, Attempt: wi.Attempt, Result: ev})
	})
	switch {
	case err == nil:
	case errors.Is(err, backend.ErrLeaseLost):
		log.Warn("duro: stale activity completion rejected; a newer delivery holds the task", "err", err)
	default:
		log.Error("duro: activity completion not committed; the task will be delivered again", "err", err)
	}
}

// callActivity runs the user's code, converting panics and oversized
// results into failures.
func (w *Worker) callActivity(actx *activityContext, ra *registeredActivity, task *backend.ActivityTask) (result []byte, failure *backend.Failure) {
	defer func() {
		if r := recover(); r != nil {
			result = nil
			failure = &backend.Failure{Message: fmt.Sprintf("panic: %v", r), Type: "Panic", TaskName: task.Name, Stack: string(debug.Stack())}
		}
	}()
	out, err := ra.fn(actx, w.p, task.Input)
	if err == nil {
		out, err := w.p.encode(fmt.Sprintf("result of activity %q", task.Name), out)
		if err == nil {
			return out, nil
		}
		f := failureFromError(w.p.codec, err)
		f.TaskName = task.Name
		f.NonRetryable = true
		return nil, f
	}
	f := failureFromError(w.p.codec, err)
	f.TaskName = task.Name
	if errors.Is(err, ErrPayloadDecode) {
		f.NonRetryable = true
	}
	return nil, f
}
