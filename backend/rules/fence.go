package rules

import (
	"fmt"

	"github.com/durohq/duro/backend"
)

// StepFence is the stored state of an instance that fences its step
// deliveries (A2).
type StepFence struct {
	// Attempt is the newest delivery's step attempt, Completed the step
	// attempt of the last delivery that committed its step.
	Attempt, Completed int64
	// ExecutionID is the instance's current execution.
	ExecutionID string
}

// Check returns an error wrapping backend.ErrLeaseLost unless attempt is
// the newest delivery of instance id's step, of execution executionID
// ("" for any), and has not committed its step. f is nil for an instance
// that is gone.
func (f *StepFence) Check(id, executionID string, attempt int64) error {
	switch {
	case f == nil:
		return fmt.Errorf("instance %q is gone: %w", id, backend.ErrLeaseLost)
	case executionID != "" && executionID != f.ExecutionID:
		return fmt.Errorf("instance %q: delivery of execution %q, current execution is %q: %w",
			id, executionID, f.ExecutionID, backend.ErrLeaseLost)
	case attempt < 1 || attempt != f.Attempt:
		return fmt.Errorf("instance %q: attempt %d, newest delivery is %d: %w", id, attempt, f.Attempt, backend.ErrLeaseLost)
	case f.Completed >= attempt:
		return fmt.Errorf("instance %q: attempt %d already completed its step: %w", id, attempt, backend.ErrLeaseLost)
	}
	return nil
}

// TaskFence is the stored state of an activity task that fences its
// deliveries (A2).
type TaskFence struct {
	// Attempt is the newest delivery's attempt number.
	Attempt int64
	// Delivered is false for a task never claimed: its attempt number is
	// its PriorAttempts, which belong to deliveries of an earlier task.
	Delivered bool
}

// Check returns an error wrapping backend.ErrLeaseLost unless attempt is
// the newest delivery of activity task id. f is nil for a task that is
// gone.
func (f *TaskFence) Check(id string, attempt int64) error {
	switch {
	case f == nil:
		return fmt.Errorf("activity task %q is gone: %w", id, backend.ErrLeaseLost)
	case !f.Delivered:
		return fmt.Errorf("activity task %q has not been delivered: %w", id, backend.ErrLeaseLost)
	case attempt < 1 || attempt != f.Attempt:
		return fmt.Errorf("activity task %q: attempt %d, newest delivery is %d: %w",
			id, attempt, f.Attempt, backend.ErrLeaseLost)
	}
	return nil
}

// FenceTask is TaskFence.Check for a task row read as found (false: no
// row), its attempt current and its claim time claimedAt (0: never
// claimed).
func FenceTask(id string, attempt int64, found bool, current, claimedAt int64) error {
	var f *TaskFence
	if found {
		f = &TaskFence{Attempt: current, Delivered: claimedAt != 0}
	}
	return f.Check(id, attempt)
}

// ClaimOfCommit is the work item that a repeated step commit hands over
// for task a (see backend.StepActivityClaimer): the live claim the first
// commit made, which is the task's first delivery since it was enqueued
// (attempt PriorAttempts+1), leased until expires (Unix ns). It is nil for
// any later delivery: that claim is not the commit's.
func ClaimOfCommit(a *backend.ActivityTask, attempt int, created, expires int64) *backend.ActivityWorkItem {
	if attempt != a.PriorAttempts+1 {
		return nil
	}
	task := *a
	return &backend.ActivityWorkItem{Task: &task, Attempt: attempt, ScheduledAt: FromNanos(created), LeaseExpiresAt: FromNanos(expires)}
}
