package backend

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// EventType names the kind of a history event.
type EventType string

// The history event types. An orchestration's history is an append-only list of
// these; replaying it rebuilds the orchestration's state.
const (
	// EventExecutionStarted starts an execution: Name, Input, ExecutionID, Parent.
	EventExecutionStarted EventType = "ExecutionStarted"
	// EventOrchestratorStarted opens a step; its Timestamp is the orchestration's
	// deterministic "now" for the code that runs in that step.
	EventOrchestratorStarted EventType = "OrchestratorStarted"
	// EventTaskScheduled records an activity call: TaskID, Name, Input.
	EventTaskScheduled EventType = "TaskScheduled"
	// EventTaskCompleted carries an activity's result: TaskID, Result, Attempt.
	EventTaskCompleted EventType = "TaskCompleted"
	// EventTaskFailed carries an activity's failure: TaskID, Failure, Attempt.
	EventTaskFailed EventType = "TaskFailed"
	// EventTimerCreated records a durable timer: TaskID, FireAt.
	EventTimerCreated EventType = "TimerCreated"
	// EventTimerFired says a timer fired: TaskID, FireAt.
	EventTimerFired EventType = "TimerFired"
	// EventSubOrchestrationCreated records a child start: TaskID, Name,
	// InstanceID (the child), Input.
	EventSubOrchestrationCreated EventType = "SubOrchestrationCreated"
	// EventSubOrchestrationCompleted carries a child's output: TaskID, Result.
	EventSubOrchestrationCompleted EventType = "SubOrchestrationCompleted"
	// EventSubOrchestrationFailed carries a child's failure: TaskID, Failure.
	EventSubOrchestrationFailed EventType = "SubOrchestrationFailed"
	// EventEventRaised is an external event delivered to the instance: Name, Input.
	EventEventRaised EventType = "EventRaised"
	// EventEventSent records an event this orchestration sent to another
	// instance: TaskID, InstanceID (the target), Name, Input.
	EventEventSent EventType = "EventSent"
	// EventExecutionTerminated asks for (as a message) and records (in history)
	// the termination of an instance: Reason.
	EventExecutionTerminated EventType = "ExecutionTerminated"
	// EventExecutionCompleted ends an execution: Status (Completed, Failed or
	// ContinuedAsNew), Result (the output, or the next execution's input), Failure.
	EventExecutionCompleted EventType = "ExecutionCompleted"
	// EventExecutionSuspended asks for (as a message) and records (in
	// history) a suspension: Reason; Suspension describes it in history.
	EventExecutionSuspended EventType = "ExecutionSuspended"
	// EventExecutionResumed asks for and records a resume: Reason, and the
	// operator's Decisions for pending at-most-once tasks.
	EventExecutionResumed EventType = "ExecutionResumed"
	// EventTaskDuplicate is sent by the delivery of an at-most-once activity
	// that found a possible duplicate under the Suspend policy, and recorded
	// in history: TaskID, Name, Attempt, FireAt (the previous delivery's
	// time). The instance suspends until an operator decides.
	EventTaskDuplicate EventType = "TaskDuplicate"
	// EventExecutionRewound asks for (as a message, from RewindInstance) and
	// records a rewind of a Failed instance: Reason; in history also Rewind,
	// what the rewind re-runs.
	EventExecutionRewound EventType = "ExecutionRewound"
	// EventLateResult records, in the history of a finished instance, the
	// outcome of an activity delivery that completed after the instance
	// ended (terminated while the activity ran, say), so that operators see
	// it: TaskID, Name (the activity), Attempt, Result or Failure, and
	// Status, the instance's status when the result arrived. Replay ignores
	// it; it is never a message.
	EventLateResult EventType = "LateResult"

	// EventEntityRequest is a message to an entity: an operation (Name,
	// Input) signalled or called, or a lock request or release (Entity). The
	// message's ID is the request ID the entity deduplicates on.
	EventEntityRequest EventType = "EntityRequest"
	// EventEntitySignaled records, in an orchestration's history, a signal
	// sent to the entity InstanceID: TaskID, Name (operation), Input.
	EventEntitySignaled EventType = "EntitySignaled"
	// EventEntityCalled records a call to an entity: TaskID, InstanceID,
	// Name, Input; its outcome arrives as EventEntityResponse.
	EventEntityCalled EventType = "EntityCalled"
	// EventEntityResponse carries an entity operation's outcome to the
	// calling orchestration: TaskID, Result or Failure.
	EventEntityResponse EventType = "EntityResponse"
	// EventEntityLockRequested records a critical section's lock request:
	// TaskID, Entity.Lock; EventEntityLockGranted answers it.
	EventEntityLockRequested EventType = "EntityLockRequested"
	// EventEntityLockGranted says every entity of a lock request is locked:
	// TaskID; with Failure, that an entity refused the request (its queue
	// of waiting requests was full) and the entities before it released
	// their locks.
	EventEntityLockGranted EventType = "EntityLockGranted"
	// EventEntityUnlocked records the release of a critical section's locks:
	// TaskID, Entity.Lock.
	EventEntityUnlocked EventType = "EntityUnlocked"

	// EventPatched records that the code took the new path of a patch
	// (OrchestrationContext.Patched or DeprecatePatch): Name (the patch
	// ID), TaskID (the task ID the code's next action would take, which
	// says where the code decided; the marker does not use it up),
	// Deprecated. Nothing runs and nothing comes back.
	EventPatched EventType = "Patched"
)

// IsControl reports whether messages of this type act on the instance
// itself rather than feed its code: terminate, suspend, resume, rewind and
// at-most-once duplicates. A Suspended instance is claimable only for control
// messages, and only its control messages are handed to its steps; the
// others wait, in order, until it resumes.
func (t EventType) IsControl() bool {
	switch t {
	case EventExecutionTerminated, EventExecutionSuspended, EventExecutionResumed,
		EventTaskDuplicate, EventExecutionRewound:
		return true
	}
	return false
}

var knownEventTypes = map[EventType]bool{
	EventExecutionStarted: true, EventOrchestratorStarted: true, EventTaskScheduled: true,
	EventTaskCompleted: true, EventTaskFailed: true, EventTimerCreated: true,
	EventTimerFired: true, EventSubOrchestrationCreated: true,
	EventSubOrchestrationCompleted: true, EventSubOrchestrationFailed: true,
	EventEventRaised: true, EventEventSent: true, EventExecutionTerminated: true,
	EventExecutionCompleted: true, EventExecutionSuspended: true, EventExecutionResumed: true,
	EventTaskDuplicate: true, EventExecutionRewound: true, EventLateResult: true,
	EventEntityRequest: true, EventEntitySignaled: true, EventEntityCalled: true, EventEntityResponse: true,
	EventEntityLockRequested: true, EventEntityLockGranted: true, EventEntityUnlocked: true,
	EventPatched: true,
}

// Event is one entry of an orchestration's history, and the payload of a
// message in an instance's inbox. Which fields are set depends on Type (see the
// EventType constants). Payloads (Input, Result) are opaque bytes produced by
// the SDK's codec.
type Event struct {
	Type      EventType `json:"type"`
	Timestamp time.Time `json:"ts"`

	// TaskID identifies the action an event belongs to within one execution:
	// the scheduling event and its completion share it.
	TaskID int `json:"taskId,omitempty"`
	// Name is the activity, orchestration or external event name.
	Name string `json:"name,omitempty"`
	// InstanceID is the other instance an event refers to: the child of a
	// sub-orchestration, or the target of a sent event.
	InstanceID string `json:"instanceId,omitempty"`
	// ExecutionID is the execution an ExecutionStarted event starts.
	ExecutionID string `json:"executionId,omitempty"`
	Input       []byte `json:"input,omitempty"`
	Result      []byte `json:"result,omitempty"`
	// Failure is set on TaskFailed, SubOrchestrationFailed and a failed
	// ExecutionCompleted.
	Failure *Failure `json:"failure,omitempty"`
	// FireAt is when a timer fires.
	FireAt time.Time `json:"fireAt,omitzero"`
	// Attempt is the delivery attempt that produced a task's result.
	Attempt int `json:"attempt,omitempty"`
	// Status is the final status recorded by ExecutionCompleted.
	Status Status `json:"status,omitempty"`
	// Reason explains a termination.
	Reason string `json:"reason,omitempty"`
	// NonRecursive, on a termination request, leaves the instance's running
	// sub-orchestrations running (by default they are terminated too).
	NonRecursive bool `json:"nonRecursive,omitempty"`
	// Parent names the parent orchestration on ExecutionStarted of a
	// sub-orchestration.
	Parent *ParentRef `json:"parent,omitempty"`
	// Activity holds the execution options of a scheduled activity. On a
	// task's result (TaskCompleted, TaskFailed, TaskDuplicate) it holds the
	// options the executing worker enforced, when they differ from the
	// scheduled ones (its registration made the task at most once, or
	// chose the policy).
	Activity *ActivityOptions `json:"activity,omitempty"`
	// Suspension describes the suspension an ExecutionSuspended event
	// records.
	Suspension *Suspension `json:"suspension,omitempty"`
	// Decisions are the operator's decisions carried by ExecutionResumed.
	Decisions []*Decision `json:"decisions,omitempty"`
	// ResumeOutcome, in history, is what the step did with a resume: on
	// the ExecutionResumed event of an applied resume, and on the
	// ExecutionSuspended event that records a refused one.
	ResumeOutcome *ResumeOutcome `json:"resumeOutcome,omitempty"`
	// Rewind lists what an ExecutionRewound event re-runs.
	Rewind *Rewind `json:"rewind,omitempty"`
	// Entity details an entity request or lock event.
	Entity *EntityRequest `json:"entity,omitempty"`
	// Deprecated marks an EventPatched recorded by DeprecatePatch: code
	// that no longer mentions the patch replays the history without it.
	Deprecated bool `json:"deprecated,omitempty"`
}

// LateResult is the EventLateResult a backend appends to the history of an
// instance that ended with status when a delivery of activity name
// completes with result (a TaskCompleted or TaskFailed event) after the
// end. It keeps the result's task ID, attempt, payload or failure, and
// time.
func LateResult(result *Event, name string, status Status) *Event {
	late := *result
	late.Type, late.Name, late.Status = EventLateResult, name, status
	return &late
}

// KeptLate reports whether a result event of type t that arrives after its
// instance ended is kept as a LateResult: activity outcomes are, other
// events (a TaskDuplicate) are dropped.
func (t EventType) KeptLate() bool {
	return t == EventTaskCompleted || t == EventTaskFailed
}

// EntityRequest details a message to an entity, or an orchestration's lock
// events.
type EntityRequest struct {
	// Caller is the orchestration task that waits for the response (calls
	// and lock requests); nil for signals.
	Caller *ParentRef `json:"caller,omitempty"`
	// Owner is the orchestration instance that sent the request; while it
	// holds an entity's lock, only its requests reach that entity.
	Owner string `json:"owner,omitempty"`
	// Lock lists, in lock order, the entities a critical section locks. A
	// lock request travels through them one by one; each entity grants it
	// when it is free and passes it on; the last one answers the caller.
	Lock []string `json:"lock,omitempty"`
	// Release ends Owner's critical section (the request with Caller's task).
	Release bool `json:"release,omitempty"`
	// RequestID, on the events of an orchestration run by a Durable Task
	// SDK, is the SDK's ID of the request (a call's or signal's request
	// ID, a critical section's ID), which it matches responses with.
	RequestID string `json:"requestId,omitempty"`
}

// Suspension says why an instance is suspended.
type Suspension struct {
	// Reason is the operator's reason, or the engine's ("possible duplicate
	// of activity …", "poisoned: …").
	Reason string `json:"reason"`
	// Since is when the instance was suspended.
	Since time.Time `json:"since"`
	// Poisoned is true when the engine suspended the instance because its
	// step kept failing before commit; resuming retries the step.
	Poisoned bool `json:"poisoned,omitempty"`
	// Pending are the at-most-once tasks waiting for an operator's decision.
	Pending []*PendingDecision `json:"pending,omitempty"`
}

// PendingDecision is an at-most-once activity whose earlier delivery may have
// run, waiting for an operator to decide its outcome.
type PendingDecision struct {
	TaskID int    `json:"taskId"`
	Name   string `json:"name"`
	Input  []byte `json:"input,omitempty"`
	// Attempt is the delivery that found the possible duplicate.
	Attempt int `json:"attempt"`
	// PreviousDeliveryAt is when the delivery before it started.
	PreviousDeliveryAt time.Time `json:"previousDeliveryAt"`
	// Options are the task's recorded execution options.
	Options ActivityOptions `json:"options"`
}

// DecisionAction is an operator's verdict on a pending task.
type DecisionAction string

// Decision actions.
const (
	// DecisionRetry runs the activity's code once more.
	DecisionRetry DecisionAction = "Retry"
	// DecisionResult completes the task with Decision.Result.
	DecisionResult DecisionAction = "Result"
	// DecisionFail fails the task with Decision.Message.
	DecisionFail DecisionAction = "Fail"
)

// Decision is an operator's decision for one pending task.
type Decision struct {
	TaskID  int            `json:"taskId"`
	Action  DecisionAction `json:"action"`
	Result  []byte         `json:"result,omitempty"`
	Message string         `json:"message,omitempty"`
}

// ResumeStatus says what became of a resume request.
type ResumeStatus string

// Resume statuses.
const (
	// ResumePending: the resume is queued; no step has applied it yet.
	// Never stored: it is what a client reports for a resume it finds no
	// outcome for.
	ResumePending ResumeStatus = "Pending"
	// ResumeApplied: the instance resumed with the decisions (or was not
	// suspended and the resume carried no decision: nothing to do).
	ResumeApplied ResumeStatus = "Applied"
	// ResumeRefused: the resume changed nothing; Reason says why (the
	// pending tasks changed since the caller looked, the instance was not
	// suspended, or it ended first).
	ResumeRefused ResumeStatus = "Refused"
)

// ResumeOutcome records what an orchestration step did with one resume
// request (an ExecutionResumed message): in history and, for the last few,
// in Instance.ResumeOutcomes.
type ResumeOutcome struct {
	// ID is the resume message's ID, which Client.Resume returns.
	ID     string       `json:"id"`
	Status ResumeStatus `json:"status"`
	// Reason explains a refusal, or a resume that had nothing to do.
	Reason string `json:"reason,omitempty"`
	// Decisions is the outcome of each of the resume's decisions, in order.
	Decisions []*DecisionOutcome `json:"decisions,omitempty"`
	// At is when the step applied or refused the resume.
	At time.Time `json:"at"`
}

// DecodeResumeOutcomes decodes stored resume outcomes (JSON) into out,
// with their times in UTC.
func DecodeResumeOutcomes(data []byte, out *[]*ResumeOutcome) error {
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("resume outcomes: %w", err)
	}
	for _, o := range *out {
		if o != nil {
			o.At = inUTC(o.At)
		}
	}
	return nil
}

// DecisionOutcome is what became of one decision of a resume.
type DecisionOutcome struct {
	TaskID int            `json:"taskId"`
	Action DecisionAction `json:"action"`
	// Status is ResumeApplied or ResumeRefused.
	Status ResumeStatus `json:"status"`
	// Reason says what the decision did, or why it was refused.
	Reason string `json:"reason,omitempty"`
}

// Rewind records what a rewind of a failed execution re-runs.
type Rewind struct {
	// Tasks are the task IDs whose failure (or loss, for tasks that were still
	// running when the instance failed) is undone: they run again.
	Tasks []int `json:"tasks"`
	// From is the history index (0-based) of the first failure undone; the
	// events between it and the rewind are the abandoned branch.
	From int `json:"from"`
	// NextTaskID is the first task ID the code gets after the rewind, past
	// every ID the abandoned branch used.
	NextTaskID int `json:"nextTaskId"`
}

// ParentRef points from a sub-orchestration to the task in its parent that
// started it.
type ParentRef struct {
	InstanceID  string `json:"instanceId"`
	ExecutionID string `json:"executionId"`
	TaskID      int    `json:"taskId"`
}

// ActivityOptions are the per-task execution options recorded with a scheduled
// activity so that workers and operators see them.
type ActivityOptions struct {
	// LeaseDuration is how long one delivery may run before its lease must be
	// renewed. Zero means the worker's default.
	LeaseDuration time.Duration `json:"leaseDuration,omitempty"`
	// AtMostOnce means the activity's code may only run on attempt 1; a
	// later delivery applies OnDuplicate instead. Backends must make the
	// claim of such a task durable (synced to disk) before returning it.
	// False does not make a task at least once: the executing worker's
	// registration may still make it at most once (the guarantee in force
	// is the stronger of the two).
	AtMostOnce bool `json:"atMostOnce,omitempty"`
	// OnDuplicate is what a delivery with attempt > 1 of an AtMostOnce task
	// does: "Fail", "Suspend" or "Reconcile". It may be recorded without
	// AtMostOnce (the call named a policy for an activity its scheduling
	// worker does not register); it then applies if the executing worker
	// makes the task at most once.
	OnDuplicate string `json:"onDuplicate,omitempty"`
	// ReconcileActivity names the activity that reconciles a possible
	// duplicate under OnDuplicate "Reconcile" for workers that run no Go
	// code (the Durable Task protocol server asks an SDK worker to run it);
	// a Go worker's ReconcileFunc does not use it.
	ReconcileActivity string `json:"reconcileActivity,omitempty"`
	// MaxDeliveries bounds the deliveries of the task; the delivery after the
	// last one fails the task as poisoned. Zero means the worker's default.
	MaxDeliveries int `json:"maxDeliveries,omitempty"`
	// ApprovedAttempt is a delivery an operator approved to run the code of
	// an AtMostOnce task although it is not attempt 1 (a retry decision, or
	// a rewind of a task that failed).
	ApprovedAttempt int `json:"approvedAttempt,omitempty"`
}

// Failure describes an error recorded in history: a failed activity, a failed
// sub-orchestration or a failed orchestration.
type Failure struct {
	// Message is the error's text.
	Message string `json:"message"`
	// Type is the error's Go type or a user-chosen classification.
	Type string `json:"type,omitempty"`
	// TaskName is the activity or orchestration whose code failed, when known.
	TaskName string `json:"taskName,omitempty"`
	// NonRetryable tells retry policies not to retry.
	NonRetryable bool `json:"nonRetryable,omitempty"`
	// Details is an optional payload attached to the error.
	Details []byte `json:"details,omitempty"`
	// Stack is the stack trace of a panic.
	Stack string `json:"stack,omitempty"`
	// Cause is the failure that caused this one (for example a sub-orchestration's
	// activity failure).
	Cause *Failure `json:"cause,omitempty"`
}

// Error implements error.
func (f *Failure) Error() string {
	if f == nil {
		return "<nil failure>"
	}
	if f.TaskName != "" {
		return f.TaskName + ": " + f.Message
	}
	return f.Message
}

// validateNested checks the numbers inside nested fields.
func (e *Event) validateNested() error {
	if e.Parent != nil && e.Parent.TaskID < 0 {
		return fmt.Errorf("negative parent task ID %d", e.Parent.TaskID)
	}
	if a := e.Activity; a != nil && (a.LeaseDuration < 0 || a.MaxDeliveries < 0 || a.ApprovedAttempt < 0) {
		return fmt.Errorf("negative activity option in %+v", *a)
	}
	for _, d := range e.Decisions {
		if d == nil || d.TaskID < 0 {
			return fmt.Errorf("bad decision %+v", d)
		}
	}
	if s := e.Suspension; s != nil {
		for _, p := range s.Pending {
			if p == nil || p.TaskID < 0 || p.Attempt < 0 {
				return fmt.Errorf("bad pending decision %+v", p)
			}
		}
	}
	if r := e.Rewind; r != nil {
		if r.From < 0 || r.NextTaskID < 0 {
			return fmt.Errorf("bad rewind %+v", *r)
		}
		for _, id := range r.Tasks {
			if id < 0 {
				return fmt.Errorf("negative rewound task ID %d", id)
			}
		}
	}
	if en := e.Entity; en != nil && en.Caller != nil && en.Caller.TaskID < 0 {
		return fmt.Errorf("negative caller task ID %d", en.Caller.TaskID)
	}
	return nil
}

// ErrMalformedEvent is returned (wrapped) by DecodeEvent for bytes that are not
// a valid encoded event.
var ErrMalformedEvent = errors.New("malformed history event")

// EncodeEvent encodes an event for storage. It refuses (ErrMalformedEvent)
// an event DecodeEvent would refuse, so nothing stored can later fail to
// decode and wedge an instance.
func EncodeEvent(e *Event) ([]byte, error) {
	if e == nil {
		return nil, fmt.Errorf("encode event: %w: nil event", ErrMalformedEvent)
	}
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("encode event: %w: %v", ErrMalformedEvent, err)
	}
	return json.Marshal(e)
}

// DecodeEvent decodes bytes produced by EncodeEvent, with its times in UTC.
// It validates what it decodes: unknown types, negative task IDs and missing required fields are
// errors wrapping ErrMalformedEvent, never a panic.
func DecodeEvent(data []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decode event: %w: %v", ErrMalformedEvent, err)
	}
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("decode event: %w: %v", ErrMalformedEvent, err)
	}
	e.Timestamp, e.FireAt = inUTC(e.Timestamp), inUTC(e.FireAt)
	e.Suspension.InUTC()
	if e.ResumeOutcome != nil {
		e.ResumeOutcome.At = inUTC(e.ResumeOutcome.At)
	}
	return &e, nil
}

func inUTC(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// InUTC turns the times of s, which may be nil, to UTC.
func (s *Suspension) InUTC() {
	if s == nil {
		return
	}
	s.Since = inUTC(s.Since)
	for _, pd := range s.Pending {
		if pd != nil {
			pd.PreviousDeliveryAt = inUTC(pd.PreviousDeliveryAt)
		}
	}
}

func (e *Event) validate() error {
	if !knownEventTypes[e.Type] {
		return fmt.Errorf("unknown type %q", e.Type)
	}
	if e.TaskID < 0 {
		return fmt.Errorf("%s: negative task ID %d", e.Type, e.TaskID)
	}
	if e.Attempt < 0 {
		return fmt.Errorf("%s: negative attempt %d", e.Type, e.Attempt)
	}
	if err := e.validateNested(); err != nil {
		return fmt.Errorf("%s: %v", e.Type, err)
	}
	switch e.Type {
	case EventExecutionStarted:
		if e.Name == "" {
			return fmt.Errorf("%s: missing name", e.Type)
		}
	case EventTaskScheduled, EventTaskDuplicate, EventPatched:
		if e.Name == "" {
			return fmt.Errorf("%s: missing name", e.Type)
		}
	case EventSubOrchestrationCreated:
		if e.Name == "" || e.InstanceID == "" {
			return fmt.Errorf("%s: missing name or instance ID", e.Type)
		}
	case EventTimerCreated:
		if e.FireAt.IsZero() {
			return fmt.Errorf("%s: missing fire time", e.Type)
		}
	case EventEntitySignaled, EventEntityCalled:
		if e.Name == "" || e.InstanceID == "" {
			return fmt.Errorf("%s: missing operation or entity", e.Type)
		}
	case EventTaskFailed, EventSubOrchestrationFailed:
		if e.Failure == nil {
			return fmt.Errorf("%s: missing failure", e.Type)
		}
	case EventEventRaised:
		if e.Name == "" {
			return fmt.Errorf("%s: missing name", e.Type)
		}
	case EventEventSent:
		if e.Name == "" || e.InstanceID == "" {
			return fmt.Errorf("%s: missing name or instance ID", e.Type)
		}
	case EventExecutionCompleted:
		switch e.Status {
		case StatusCompleted, StatusContinuedAsNew:
		case StatusFailed:
			if e.Failure == nil {
				return fmt.Errorf("%s: failed without failure", e.Type)
			}
		default:
			return fmt.Errorf("%s: bad status %q", e.Type, e.Status)
		}
	}
	return nil
}
