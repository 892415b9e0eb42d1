package dtgrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

// Reconcile through a stock SDK. An SDK worker runs no engine code, so
// the decision a Go worker's ReconcileFunc makes is asked of an ordinary
// activity of the SDK's, named by the task's tag duro.reconcile (or the
// server's policy). On a possible duplicate the server sends, in place of
// the task, an ActivityRequest for that activity, with the task's input,
// task ID and the tags duro.attempt and duro.reconcileOf (the task's
// name). Its result decides:
//
//	{"found": true, "result": R}  the task completes with R (the first
//	                              delivery took effect: R is its result)
//	{"found": false} or null      the task's code runs once more, in this
//	                              delivery (it is marked started first)
//	a failure                     the task fails, not retried, with type
//	                              ReconciledFailure
//
// Any other result fails the task the same way, saying what was wrong.

// sendReconcile asks the SDK to run the task's reconcile activity for a
// possible duplicate.
func (ws *workStream) sendReconcile(awi *backend.ActivityWorkItem, opts backend.ActivityOptions, enforced *backend.ActivityOptions) error {
	task := awi.Task
	ws.s.log.Warn("duro: at-most-once activity not run again: possible duplicate; running its reconcile activity",
		"instance", task.InstanceID, "activity", task.Name, "reconcile", opts.ReconcileActivity, "attempt", awi.Attempt)
	req := &dtpb.ActivityRequest{Name: opts.ReconcileActivity, Input: str(task.Input), TaskId: int32(task.TaskID),
		Tags:                  map[string]string{TagAttempt: strconv.Itoa(awi.Attempt), TagReconcileOf: task.Name},
		OrchestrationInstance: &dtpb.OrchestrationInstance{InstanceId: task.InstanceID, ExecutionId: strOf(task.ExecutionID)}}
	it := &item{token: newToken(kindReconcile, task.ID, int64(awi.Attempt)), kind: kindActivity, ws: ws, awi: awi,
		enforced: enforced, sent: true, reconcile: true}
	ws.s.put(it)
	return ws.send(&dtpb.WorkItem{Request: &dtpb.WorkItem_ActivityRequest{ActivityRequest: req}, CompletionToken: it.token})
}

// kindReconcile marks the completion tokens of reconcile requests: once
// their stream ended they are stale (the next delivery reconciles again).
const kindReconcile itemKind = 'r'

// reconcileAnswer is the result a reconcile activity returns.
type reconcileAnswer struct {
	Found  *bool           `json:"found"`
	Result json.RawMessage `json:"result"`
}

// reconciled applies a reconcile activity's outcome to the task it
// reconciles.
func (ws *workStream) reconciled(ctx context.Context, it *item, r *dtpb.ActivityResponse) (*dtpb.CompleteTaskResponse, error) {
	s, task, attempt := ws.s, it.awi.Task, it.awi.Attempt
	opts := s.inForce(task)
	fail := func(msg string) (*dtpb.CompleteTaskResponse, error) {
		defer ws.signalFreed()
		s.log.Warn("duro: reconcile failed the task", "instance", task.InstanceID, "activity", task.Name, "why", msg)
		s.completeActivity(ctx, task, attempt, &backend.Event{Type: backend.EventTaskFailed, TaskID: task.TaskID, Attempt: attempt,
			Failure:  &backend.Failure{Message: msg, Type: duro.FailureTypeReconciled, TaskName: task.Name, NonRetryable: true},
			Activity: it.enforced})
		return &dtpb.CompleteTaskResponse{}, nil
	}
	if fd := r.GetFailureDetails(); fd != nil {
		return fail(fmt.Sprintf("reconcile activity %q failed: %s", opts.ReconcileActivity, fd.GetErrorMessage()))
	}
	raw := bytes.TrimSpace(payload(r.GetResult()))
	var ans reconcileAnswer
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		if err := json.Unmarshal(raw, &ans); err != nil || ans.Found == nil {
			return fail(fmt.Sprintf(`reconcile activity %q returned %.200q; want {"found": true, "result": …}, {"found": false} or null`,
				opts.ReconcileActivity, raw))
		}
	}
	if ans.Found != nil && *ans.Found {
		defer ws.signalFreed()
		var result []byte
		if len(ans.Result) > 0 {
			result = ans.Result
		}
		s.log.Info("duro: reconcile found the first delivery's result", "instance", task.InstanceID, "activity", task.Name)
		err := s.be.CompleteActivity(ctx, &backend.CompleteActivityParams{TaskID: task.ID, Attempt: attempt,
			Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: task.TaskID, Result: result, Attempt: attempt,
				Timestamp: time.Now().UTC(), Activity: it.enforced}})
		if err != nil && !errors.Is(err, backend.ErrInstanceFinished) {
			return nil, grpcError("complete reconciled activity", err)
		}
		return &dtpb.CompleteTaskResponse{}, nil
	}
	// Not found: the task's code runs in this delivery, marked started
	// first, as any at-most-once delivery is.
	if ws.ctx.Err() != nil {
		// The stream is gone: hand the delivery back; the next one
		// reconciles again.
		err := s.be.AbandonActivity(context.WithoutCancel(ctx), &backend.AbandonParams{ID: task.ID, Attempt: int64(attempt),
			Unstarted: true, RetryAfter: s.opts.PollInterval})
		if err != nil && !errors.Is(err, backend.ErrLeaseLost) {
			return nil, grpcError("hand back reconciled activity", err)
		}
		return &dtpb.CompleteTaskResponse{}, nil
	}
	err := s.be.StartActivity(ctx, &backend.StartParams{ID: task.ID, Attempt: int64(attempt)})
	if errors.Is(err, backend.ErrLeaseLost) {
		return nil, grpcError("run reconciled activity", err)
	}
	if err != nil {
		aerr := s.be.AbandonActivity(context.WithoutCancel(ctx), &backend.AbandonParams{ID: task.ID, Attempt: int64(attempt),
			Unstarted: true, RetryAfter: 4 * s.opts.PollInterval})
		return nil, grpcError("mark reconciled activity started", errors.Join(err, aerr))
	}
	s.log.Info("duro: reconcile found no effect of the first delivery; running the activity", "instance", task.InstanceID,
		"activity", task.Name, "attempt", attempt)
	if err := ws.sendActivity(it.awi, opts, it.enforced); err != nil {
		// The stream ended: its release hands the delivery back (started).
		s.log.Warn("duro: send reconciled activity", "activity", task.Name, "err", err)
	}
	return &dtpb.CompleteTaskResponse{}, nil
}
