package duro

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"

	"duro/backend"
)

var (
	// ErrDecisionRequired: Resume was called without a decision for every
	// at-most-once task the instance waits on.
	ErrDecisionRequired = errors.New("a decision is required for each pending task")
	// ErrNoPendingDecision: Resume was given a decision for a task that is
	// not waiting for one.
	ErrNoPendingDecision = errors.New("no decision is pending for that task")
	// ErrInstanceNotFailed: Rewind needs a Failed instance.
	ErrInstanceNotFailed = backend.ErrInstanceNotFailed
)

// Suspension says why an instance is suspended and which tasks wait for a
// decision.
type Suspension = backend.Suspension

// PendingDecision is an at-most-once task that waits for an operator.
type PendingDecision = backend.PendingDecision

// DecisionAction is an operator's verdict on a pending task.
type DecisionAction = backend.DecisionAction

// Decision actions.
const (
	DecisionRetry  = backend.DecisionRetry
	DecisionResult = backend.DecisionResult
	DecisionFail   = backend.DecisionFail
)

// Decision is an operator's verdict on one pending at-most-once task, given
// to Client.Resume. Build it with RetryTask, CompleteTask or FailTask.
type Decision struct {
	TaskID  int
	Action  DecisionAction
	Result  any
	Message string
}

// RetryTask runs the task's code once more (with the next attempt number)
// although an earlier delivery may have run it: the operator has checked.
func RetryTask(taskID int) Decision { return Decision{TaskID: taskID, Action: DecisionRetry} }

// CompleteTask completes the task with result, as if its code had returned
// it, without running the code.
func CompleteTask(taskID int, result any) Decision {
	return Decision{TaskID: taskID, Action: DecisionResult, Result: result}
}

// FailTask fails the task with message (type "OperatorFailed", not retried).
func FailTask(taskID int, message string) Decision {
	return Decision{TaskID: taskID, Action: DecisionFail, Message: message}
}

// Suspend asks the instance to suspend. From its next step on, activity
// results, events and timers that arrive are kept, in order, and processed
// after Resume; running sub-orchestrations are suspended too. Suspending a
// suspended instance does nothing. It returns ErrInstanceNotFound or
// ErrInstanceFinished.
func (c *Client) Suspend(ctx context.Context, id, reason string) error {
	err := c.be.EnqueueMessage(ctx, &backend.Message{
		ID: "suspend/" + uuid.NewString(), InstanceID: id,
		Event: &backend.Event{Type: backend.EventExecutionSuspended, Reason: reason, Timestamp: time.Now().UTC()},
	})
	if err != nil {
		return fmt.Errorf("duro: suspend %q: %w", id, err)
	}
	return nil
}

// Resume resumes a suspended instance: the messages kept while it was
// suspended are processed in order, and sub-orchestrations it suspended are
// resumed. If the instance waits on at-most-once tasks (a possible duplicate
// under OnDuplicateSuspend), give exactly one Decision for each; otherwise
// Resume returns ErrDecisionRequired or ErrNoPendingDecision and changes
// nothing. Resuming an instance that is not suspended does nothing. It
// returns ErrInstanceNotFound or ErrInstanceFinished.
func (c *Client) Resume(ctx context.Context, id, reason string, decisions ...Decision) error {
	inst, err := c.be.GetInstance(ctx, id)
	if err != nil {
		return fmt.Errorf("duro: resume %q: %w", id, err)
	}
	if inst.Status.IsTerminal() {
		return fmt.Errorf("duro: resume %q: %w (%s)", id, ErrInstanceFinished, inst.Status)
	}
	pending := map[int]bool{}
	if inst.Status == StatusSuspended && inst.Suspension != nil {
		for _, pd := range inst.Suspension.Pending {
			pending[pd.TaskID] = true
		}
	}
	var ds []*backend.Decision
	seen := map[int]bool{}
	for _, d := range decisions {
		if !pending[d.TaskID] {
			return fmt.Errorf("duro: resume %q: task %d: %w", id, d.TaskID, ErrNoPendingDecision)
		}
		if seen[d.TaskID] {
			return fmt.Errorf("duro: resume %q: two decisions for task %d", id, d.TaskID)
		}
		seen[d.TaskID] = true
		bd := &backend.Decision{TaskID: d.TaskID, Action: d.Action, Message: d.Message}
		switch d.Action {
		case DecisionRetry:
		case DecisionFail:
			if d.Message == "" {
				bd.Message = "failed by an operator"
			}
		case DecisionResult:
			if bd.Result, err = c.p.encode(fmt.Sprintf("result of task %d", d.TaskID), d.Result); err != nil {
				return fmt.Errorf("duro: resume %q: %w", id, err)
			}
		default:
			return fmt.Errorf("duro: resume %q: task %d: unknown decision action %q", id, d.TaskID, d.Action)
		}
		ds = append(ds, bd)
	}
	for tid := range pending {
		if !seen[tid] {
			return fmt.Errorf("duro: resume %q: task %d waits for a decision (retry, result or fail): %w", id, tid, ErrDecisionRequired)
		}
	}
	err = c.be.EnqueueMessage(ctx, &backend.Message{
		ID: "resume/" + uuid.NewString(), InstanceID: id,
		Event: &backend.Event{Type: backend.EventExecutionResumed, Reason: reason, Decisions: ds, Timestamp: time.Now().UTC()},
	})
	if err != nil {
		return fmt.Errorf("duro: resume %q: %w", id, err)
	}
	return nil
}

// Rewind returns a Failed instance to Running: the tasks whose failure ended
// it (and, recursively, failed sub-orchestrations) run again with new
// attempt numbers, tasks that completed do not, and the code continues from
// the point before the first failure. History keeps the old failure and
// records the rewind. It returns ErrInstanceNotFound (also after a purge) or
// ErrInstanceNotFailed.
func (c *Client) Rewind(ctx context.Context, id, reason string) error {
	err := c.be.RewindInstance(ctx, &backend.RewindParams{InstanceID: id, MessageID: "rewind/" + uuid.NewString(), Reason: reason})
	if err != nil {
		return fmt.Errorf("duro: rewind %q: %w", id, err)
	}
	return nil
}

// PendingTask is an at-most-once task waiting for an operator's decision,
// with the instance it belongs to.
type PendingTask struct {
	InstanceID    string
	Orchestration string
	// SuspendedAt is when the instance was suspended.
	SuspendedAt time.Time
	// Reason is the instance's suspension reason.
	Reason string
	PendingDecision
}

// PendingDecisions lists every task, across instances, that waits for an
// operator's decision (see OnDuplicateSuspend), oldest suspension first.
func (c *Client) PendingDecisions(ctx context.Context) ([]*PendingTask, error) {
	var out []*PendingTask
	token := ""
	for {
		page, err := c.be.ListInstances(ctx, &backend.ListInstancesParams{
			Statuses: []Status{StatusSuspended}, PageSize: 500, PageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("duro: pending decisions: %w", err)
		}
		for _, inst := range page.Instances {
			if inst.Suspension == nil {
				continue
			}
			for _, pd := range inst.Suspension.Pending {
				out = append(out, &PendingTask{InstanceID: inst.ID, Orchestration: inst.Name,
					SuspendedAt: inst.Suspension.Since, Reason: inst.Suspension.Reason, PendingDecision: *pd})
			}
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.SuspendedAt.Equal(b.SuspendedAt) {
			return a.SuspendedAt.Before(b.SuspendedAt)
		}
		if a.InstanceID != b.InstanceID {
			return a.InstanceID < b.InstanceID
		}
		return a.TaskID < b.TaskID
	})
	return out, nil
}
