package duro

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/replay"
)

// Sentinel errors returned (wrapped) by the Client and the Worker. Test them
// with errors.Is.
var (
	// ErrInstanceNotFound: no instance has the ID (or it was purged).
	ErrInstanceNotFound = backend.ErrInstanceNotFound
	// ErrInstanceExists: Start was given the ID of an existing instance.
	ErrInstanceExists = backend.ErrInstanceExists
	// ErrInstanceFinished: the operation needs an instance that has not
	// finished (raise an event, terminate).
	ErrInstanceFinished = backend.ErrInstanceFinished
	// ErrInstanceNotFinished: the operation needs a finished instance (purge).
	ErrInstanceNotFinished = backend.ErrInstanceNotFinished
	// ErrLeaseLost: a worker's delivery of a work item was superseded by a
	// newer one, so its result was discarded (A2 fencing).
	ErrLeaseLost = backend.ErrLeaseLost
	// ErrTimeout is returned by Task.Await for a WaitForEvent whose timeout
	// fired before the event arrived.
	ErrTimeout = replay.ErrTimeout
	// ErrPayloadTooLarge: an encoded payload exceeds the configured limit.
	// The error is a *PayloadTooLargeError.
	ErrPayloadTooLarge = errors.New("payload too large")
	// ErrPayloadDecode: a payload could not be decoded into the requested Go
	// type. The error is a *PayloadDecodeError.
	ErrPayloadDecode = errors.New("payload does not decode")
	// ErrNotRegistered: no orchestration or activity with that name is
	// registered with the worker.
	ErrNotRegistered = errors.New("not registered")
)

// Failure is a failure as recorded in history: the message, type and optional
// details of an error, with its cause chain.
type Failure = backend.Failure

// TaskKind says what a Task stands for.
type TaskKind string

// Task kinds.
const (
	KindActivity         TaskKind = "activity"
	KindSubOrchestration TaskKind = "sub-orchestration"
	KindTimer            TaskKind = "timer"
	KindEvent            TaskKind = "event"
	KindEntity           TaskKind = "entity"
)

// TaskError is returned by Task.Await when an activity or a sub-orchestration
// failed. It carries what history recorded about the failure; use errors.As to
// inspect it.
type TaskError struct {
	// Kind is KindActivity or KindSubOrchestration.
	Kind TaskKind
	// TaskName is the activity or orchestration name.
	TaskName string
	// TaskID is the task's position in the orchestration's history.
	TaskID int
	// Type classifies the error: the type given to NewError, or the Go type
	// of the error the code returned ("*errors.errorString"), or one of the
	// engine's types ("Panic", "NotRegistered", "NonDeterminism", "Terminated").
	Type string
	// Message is the error's text.
	Message string
	// NonRetryable is true if the failure asked not to be retried.
	NonRetryable bool
	// Failure is the complete recorded failure.
	Failure *Failure

	cause error
}

// Unwrap returns the engine error behind the failure, if any: a
// *PossibleDuplicateError, a *PoisonedError or an *EntityQueueFullError, so
// that errors.Is(err, ErrPossibleDuplicate), errors.Is(err, ErrPoisoned)
// and errors.Is(err, ErrEntityQueueFull) work.
func (e *TaskError) Unwrap() error { return e.cause }

// Error implements error.
func (e *TaskError) Error() string {
	return fmt.Sprintf("%s %q (task %d) failed: %s", e.Kind, e.TaskName, e.TaskID, e.Message)
}

func newTaskError(kind TaskKind, name string, taskID int, f *Failure) *TaskError {
	if f == nil {
		f = &Failure{Message: "unknown failure"}
	}
	te := &TaskError{Kind: kind, TaskName: name, TaskID: taskID, Type: f.Type, Message: f.Message, NonRetryable: f.NonRetryable, Failure: f}
	switch f.Type {
	case FailureTypePossibleDuplicate:
		d := &PossibleDuplicateError{}
		_ = json.Unmarshal(f.Details, d)
		te.cause = d
	case FailureTypePoisoned:
		p := &PoisonedError{}
		_ = json.Unmarshal(f.Details, p)
		te.cause = p
	case FailureTypeEntityQueueFull:
		q := &EntityQueueFullError{}
		_ = json.Unmarshal(f.Details, q)
		te.cause = q
	}
	return te
}

// engineFailure records an engine error with its fields as JSON details.
func engineFailure(errType, taskName string, err error) *Failure {
	details, _ := json.Marshal(err)
	return &Failure{Message: err.Error(), Type: errType, TaskName: taskName, NonRetryable: true, Details: details}
}

// Error is an error with a type that survives the trip through history, for
// activities and orchestrations that want callers to branch on it. Create it
// with NewError or NewNonRetryableError.
type Error struct {
	// Type classifies the error for callers (for example "CardDeclined").
	Type string
	// Message is the error's text.
	Message string
	// NonRetryable stops retry policies from retrying the task.
	NonRetryable bool
	// Details is an optional value encoded with the failure.
	Details any
	cause   error
}

// NewError returns an *Error of the given type.
func NewError(errType, message string) *Error {
	return &Error{Type: errType, Message: message}
}

// NewNonRetryableError returns an *Error that retry policies do not retry.
func NewNonRetryableError(errType, message string) *Error {
	return &Error{Type: errType, Message: message, NonRetryable: true}
}

// WithCause records the error that caused e and returns e.
func (e *Error) WithCause(err error) *Error { e.cause = err; return e }

// WithDetails attaches a value to e and returns e.
func (e *Error) WithDetails(v any) *Error { e.Details = v; return e }

// Error implements error.
func (e *Error) Error() string {
	if e.Type == "" {
		return e.Message
	}
	return e.Type + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.cause }

// failureFromError converts an error returned by user code into a recorded
// failure, keeping the type information callers branch on.
func failureFromError(c Codec, err error) *Failure {
	var te *TaskError
	var ue *Error
	switch {
	case errors.As(err, &ue):
		f := &Failure{Message: ue.Message, Type: ue.Type, NonRetryable: ue.NonRetryable}
		if ue.Type == "" {
			f.Type = "Error"
		}
		if ue.Details != nil {
			if b, derr := c.Marshal(ue.Details); derr == nil {
				f.Details = b
			}
		}
		if ue.cause != nil {
			f.Cause = failureFromError(c, ue.cause)
		}
		return f
	case errors.As(err, &te):
		return &Failure{Message: err.Error(), Type: te.Type, Cause: te.Failure}
	default:
		return &Failure{Message: err.Error(), Type: fmt.Sprintf("%T", err)}
	}
}

// PayloadTooLargeError reports an encoded payload over the size limit.
type PayloadTooLargeError struct {
	// What names the payload ("input of activity \"Charge\"").
	What  string
	Size  int
	Limit int
}

// Error implements error.
func (e *PayloadTooLargeError) Error() string {
	return fmt.Sprintf("%s is %d bytes, over the limit of %d bytes", e.What, e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrPayloadTooLarge) true.
func (e *PayloadTooLargeError) Is(target error) bool { return target == ErrPayloadTooLarge }

// PayloadDecodeError reports a payload that does not decode into the Go type
// the code asked for.
type PayloadDecodeError struct {
	// What names the payload.
	What string
	// Type is the Go type decoded into.
	Type string
	Err  error
}

// Error implements error.
func (e *PayloadDecodeError) Error() string {
	return fmt.Sprintf("%s does not decode into %s: %v", e.What, e.Type, e.Err)
}

// Unwrap returns the codec's error.
func (e *PayloadDecodeError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrPayloadDecode) true.
func (e *PayloadDecodeError) Is(target error) bool { return target == ErrPayloadDecode }
