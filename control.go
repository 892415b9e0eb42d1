package duro

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/durohq/duro/backend"
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
	// ErrResumePending: Resume was called while an earlier resume of the
	// instance is still queued (no step has applied it yet). Nothing was
	// sent; wait for the queued one's outcome (WaitResume) and decide again.
	ErrResumePending = errors.New("a resume of the instance is already queued")
)

// ResumeOutcome says what became of one resume: applied, refused (with the
// reason) or still pending, with the outcome of each decision.
type ResumeOutcome = backend.ResumeOutcome

// DecisionOutcome is what became of one decision of a resume.
type DecisionOutcome = backend.DecisionOutcome

// ResumeStatus is the status of a resume or of one of its decisions.
type ResumeStatus = backend.ResumeStatus

// Resume statuses.
const (
	// ResumePending: queued; the instance's next step applies or refuses it.
	ResumePending = backend.ResumePending
	// ResumeApplied: the instance resumed with the decisions.
	ResumeApplied = backend.ResumeApplied
	// ResumeRefused: nothing changed; Reason says why.
	ResumeRefused = backend.ResumeRefused
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
		Event: &backend.Event{Type: backend.EventExecutionSuspended, Reason: reason, Timestamp: c.now().UTC()},
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
// returns ErrInstanceNotFound or ErrInstanceFinished, and ErrResumePending
// while an earlier resume is queued.
//
// The instance's next step applies the resume, or refuses it if the tasks
// waiting for a decision changed meanwhile; RequestResume returns the
// resume's ID to learn which (ResumeOutcome, WaitResume).
func (c *Client) Resume(ctx context.Context, id, reason string, decisions ...Decision) error {
	_, err := c.RequestResume(ctx, id, reason, decisions...)
	return err
}

// RequestResume is Resume, returning the resume's ID, by which
// ResumeOutcome and WaitResume report what became of it.
func (c *Client) RequestResume(ctx context.Context, id, reason string, decisions ...Decision) (string, error) {
	rid, err := c.requestResume(ctx, id, reason, decisions)
	if err != nil {
		return "", fmt.Errorf("duro: resume %q: %w", id, err)
	}
	return rid, nil
}

func (c *Client) requestResume(ctx context.Context, id, reason string, decisions []Decision) (string, error) {
	inst, err := c.be.GetInstance(ctx, id)
	if err != nil {
		return "", err
	}
	if inst.Status.IsTerminal() {
		return "", fmt.Errorf("%w (%s)", ErrInstanceFinished, inst.Status)
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
			return "", fmt.Errorf("task %d: %w", d.TaskID, ErrNoPendingDecision)
		}
		if seen[d.TaskID] {
			return "", fmt.Errorf("two decisions for task %d", d.TaskID)
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
				return "", err
			}
		default:
			return "", fmt.Errorf("task %d: unknown decision action %q", d.TaskID, d.Action)
		}
		ds = append(ds, bd)
	}
	for tid := range pending {
		if !seen[tid] {
			return "", fmt.Errorf("task %d waits for a decision (retry, result or fail): %w", tid, ErrDecisionRequired)
		}
	}
	// Exclusive: a second resume queued behind the first would be judged
	// against the instance the first leaves, not the one its caller saw.
	rid := "resume/" + uuid.NewString()
	err = c.be.EnqueueMessage(ctx, &backend.Message{
		ID: rid, InstanceID: id, Exclusive: true,
		Event: &backend.Event{Type: backend.EventExecutionResumed, Reason: reason, Decisions: ds, Timestamp: c.now().UTC()},
	})
	if errors.Is(err, backend.ErrMessageQueued) {
		return "", fmt.Errorf("%w: %v", ErrResumePending, err)
	}
	if err != nil {
		return "", err
	}
	return rid, nil
}

// ResumeOutcome reports what became of the resume resumeID (from
// RequestResume) of the instance: applied, refused with the reason, or
// still pending; with the outcome of each decision. A resume the instance
// has no record of is pending while the instance runs, and refused once it
// has finished (it ended before a step took the resume). It returns
// ErrInstanceNotFound.
func (c *Client) ResumeOutcome(ctx context.Context, instanceID, resumeID string) (*ResumeOutcome, error) {
	inst, err := c.be.GetInstance(ctx, instanceID)
	if err != nil {
		return nil, fmt.Errorf("duro: resume outcome of %q: %w", instanceID, err)
	}
	for _, o := range inst.ResumeOutcomes {
		if o.ID == resumeID {
			return o, nil
		}
	}
	// Older outcomes than the instance keeps are in its history.
	h, err := c.be.GetHistory(ctx, instanceID)
	if err != nil {
		return nil, fmt.Errorf("duro: resume outcome of %q: %w", instanceID, err)
	}
	for _, ev := range h {
		if o := ev.ResumeOutcome; o != nil && o.ID == resumeID {
			return o, nil
		}
	}
	if inst.Status.IsTerminal() {
		return &ResumeOutcome{ID: resumeID, Status: ResumeRefused, At: inst.CompletedAt,
			Reason: fmt.Sprintf("the instance was %s before the resume was applied", strings.ToLower(string(inst.Status)))}, nil
	}
	return &ResumeOutcome{ID: resumeID, Status: ResumePending}, nil
}

// WaitResume waits until the resume resumeID of the instance is applied or
// refused (see ResumeOutcome) and returns its outcome. Bound it with ctx:
// a resume waits for a worker to take the instance's next step.
func (c *Client) WaitResume(ctx context.Context, instanceID, resumeID string) (*ResumeOutcome, error) {
	d := 2 * time.Millisecond
	for {
		o, err := c.ResumeOutcome(ctx, instanceID, resumeID)
		if err != nil || o.Status != ResumePending {
			return o, err
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("duro: wait for resume %q of %q: %w", resumeID, instanceID, ctx.Err())
		case <-t.C:
		}
		if d *= 2; d > c.poll {
			d = c.poll
		}
	}
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
