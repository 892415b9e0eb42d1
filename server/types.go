package server

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// The API's JSON documents. Payloads (inputs, outputs, results, custom
// status, event data) appear as the JSON they were stored as; a payload that
// is not JSON (a custom codec) appears as a JSON string of its bytes.

// Instance is an orchestration instance.
type Instance struct {
	ID               string          `json:"id"`
	Name             string          `json:"name"`
	Status           duro.Status     `json:"status"`
	ExecutionID      string          `json:"executionId,omitempty"`
	ParentInstanceID string          `json:"parentInstanceId,omitempty"`
	CreatedAt        time.Time       `json:"createdAt"`
	UpdatedAt        time.Time       `json:"updatedAt"`
	CompletedAt      time.Time       `json:"completedAt,omitzero"`
	Input            json.RawMessage `json:"input,omitempty"`
	Output           json.RawMessage `json:"output,omitempty"`
	CustomStatus     json.RawMessage `json:"customStatus,omitempty"`
	// InputSize, OutputSize and CustomStatusSize are the stored payloads'
	// sizes in bytes.
	InputSize        int         `json:"inputSize"`
	OutputSize       int         `json:"outputSize"`
	CustomStatusSize int         `json:"customStatusSize"`
	Failure          *Failure    `json:"failure,omitempty"`
	Suspension       *Suspension `json:"suspension,omitempty"`
	// LastResume is the outcome of the last resume the instance's steps
	// applied or refused.
	LastResume *ResumeOutcome `json:"lastResume,omitempty"`
	// InFlight is the instance's work in flight; only
	// GET /api/v1/instances/{id} carries it.
	InFlight *InFlight `json:"inFlight,omitempty"`
	// PayloadsOmitted is true in lists (GET /api/v1/instances), which leave
	// out inputs, outputs, custom statuses over 1 KiB and the inputs of
	// pending decisions: GET /api/v1/instances/{id} has them.
	PayloadsOmitted bool `json:"payloadsOmitted,omitempty"`
}

// ResumeOutcome says what became of a resume: GET
// /api/v1/instances/{id}/resumes/{resumeId}, and in instances and history.
type ResumeOutcome struct {
	ResumeID string `json:"resumeId"`
	// Status is "Pending", "Applied" or "Refused".
	Status    duro.ResumeStatus  `json:"status"`
	Reason    string             `json:"reason,omitempty"`
	Decisions []*DecisionOutcome `json:"decisions,omitempty"`
	At        time.Time          `json:"at,omitzero"`
}

// DecisionOutcome is what became of one decision of a resume.
type DecisionOutcome struct {
	TaskID int `json:"taskId"`
	// Action is "retry", "result" or "fail".
	Action string `json:"action"`
	// Status is "Applied" or "Refused".
	Status duro.ResumeStatus `json:"status"`
	Reason string            `json:"reason,omitempty"`
}

// ResumeResponse is the answer to a ResumeRequest: the resume is queued,
// and GET /api/v1/instances/{id}/resumes/{resumeId} reports its outcome.
type ResumeResponse struct {
	ID       string `json:"id"`
	ResumeID string `json:"resumeId"`
	Status   string `json:"status"`
}

// InstancePage is one page of instances, newest first.
type InstancePage struct {
	Instances []*Instance `json:"instances"`
	// NextPageToken is empty on the last page.
	NextPageToken string `json:"nextPageToken,omitempty"`
}

// Failure is a recorded failure and its causes.
type Failure struct {
	Message      string          `json:"message"`
	Type         string          `json:"type,omitempty"`
	TaskName     string          `json:"taskName,omitempty"`
	NonRetryable bool            `json:"nonRetryable,omitempty"`
	Details      json.RawMessage `json:"details,omitempty"`
	Stack        string          `json:"stack,omitempty"`
	Cause        *Failure        `json:"cause,omitempty"`
}

// Suspension says why and since when an instance is suspended, and which
// tasks wait for a decision.
type Suspension struct {
	Reason   string             `json:"reason"`
	Since    time.Time          `json:"since"`
	Poisoned bool               `json:"poisoned,omitempty"`
	Pending  []*PendingDecision `json:"pending,omitempty"`
}

// PendingDecision is an at-most-once task waiting for an operator.
type PendingDecision struct {
	TaskID   int    `json:"taskId"`
	Activity string `json:"activity"`
	// Attempt is the delivery that found the possible duplicate.
	Attempt            int             `json:"attempt"`
	PreviousDeliveryAt time.Time       `json:"previousDeliveryAt,omitzero"`
	Input              json.RawMessage `json:"input,omitempty"`
	// InputSize is the input's size in bytes (lists leave the input out).
	InputSize int                     `json:"inputSize,omitempty"`
	Options   backend.ActivityOptions `json:"options"`
}

// PendingTask is a PendingDecision with its instance, as listed by
// GET /api/v1/decisions.
type PendingTask struct {
	InstanceID    string    `json:"instanceId"`
	Orchestration string    `json:"orchestration"`
	SuspendedAt   time.Time `json:"suspendedAt"`
	Reason        string    `json:"reason"`
	PendingDecision
}

// PendingTasks is the answer of GET /api/v1/decisions: every task that
// waits for a decision, oldest suspension first.
type PendingTasks struct {
	Decisions []*PendingTask `json:"decisions"`
}

// Event is one history event.
type Event struct {
	Type        backend.EventType  `json:"type"`
	Timestamp   time.Time          `json:"timestamp"`
	TaskID      *int               `json:"taskId,omitempty"`
	Name        string             `json:"name,omitempty"`
	InstanceID  string             `json:"instanceId,omitempty"`
	ExecutionID string             `json:"executionId,omitempty"`
	Input       json.RawMessage    `json:"input,omitempty"`
	Result      json.RawMessage    `json:"result,omitempty"`
	Failure     *Failure           `json:"failure,omitempty"`
	FireAt      time.Time          `json:"fireAt,omitzero"`
	Attempt     int                `json:"attempt,omitempty"`
	Status      duro.Status        `json:"status,omitempty"`
	Reason      string             `json:"reason,omitempty"`
	Parent      *backend.ParentRef `json:"parent,omitempty"`
	// Activity holds a scheduled activity's options: its at-most-once
	// policy.
	Activity   *backend.ActivityOptions `json:"activity,omitempty"`
	Suspension *Suspension              `json:"suspension,omitempty"`
	Decisions  []*Decision              `json:"decisions,omitempty"`
	// ResumeOutcome is set on the event that records a resume's outcome.
	ResumeOutcome *ResumeOutcome  `json:"resumeOutcome,omitempty"`
	Rewind        *backend.Rewind `json:"rewind,omitempty"`
	// Entity holds an entity request's or lock's details.
	Entity *backend.EntityRequest `json:"entity,omitempty"`
	// Deprecated is set on a Patched event that DeprecatePatch recorded.
	Deprecated bool `json:"deprecated,omitempty"`
}

// History is an instance's history, oldest event first.
type History struct {
	Events []*Event `json:"events"`
}

// Decision is an operator's decision on a pending task: in a resume request
// and in history.
type Decision struct {
	TaskID int `json:"taskId"`
	// Action is "retry", "result" or "fail" (any case).
	Action string `json:"action"`
	// Result is the task's result, for "result".
	Result json.RawMessage `json:"result,omitempty"`
	// Message is the failure message, for "fail".
	Message string `json:"message,omitempty"`
}

// Entity is a durable entity.
type Entity struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Key          string          `json:"key"`
	Exists       bool            `json:"exists"`
	State        json.RawMessage `json:"state,omitempty"`
	LockedBy     string          `json:"lockedBy,omitempty"`
	Queued       int             `json:"queued,omitempty"`
	LastModified time.Time       `json:"lastModified,omitzero"`
	// Suspension is set while the entity is suspended (poisoned).
	Suspension *Suspension `json:"suspension,omitempty"`
}

// EntityPage is one page of entities.
type EntityPage struct {
	Entities      []*Entity `json:"entities"`
	NextPageToken string    `json:"nextPageToken,omitempty"`
}

// Info describes the server, for the dashboard and clients.
type Info struct {
	Version string `json:"version"`
	// Auth is true when requests need a bearer token.
	Auth bool `json:"auth"`
	// Workers says what the server's own worker host runs: "" when it runs
	// none (the store's workers run elsewhere).
	Workers string `json:"workers,omitempty"`
	// Samples are instances the dashboard offers to start.
	Samples []Sample `json:"samples,omitempty"`
}

// Sample is an instance the dashboard offers to start.
type Sample struct {
	// Title names the sample for people.
	Title string `json:"title"`
	// Name is the orchestration.
	Name string `json:"name"`
	// ID is the suggested instance ID ("" for a random one).
	ID string `json:"id,omitempty"`
	// Input is the orchestration's input.
	Input json.RawMessage `json:"input,omitempty"`
}

// Requests.

// StartRequest starts an instance: POST /api/v1/instances.
type StartRequest struct {
	Name  string          `json:"name"`
	ID    string          `json:"id,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
	// StartAt delays the first step.
	StartAt time.Time `json:"startAt,omitzero"`
	// ReplaceFinished lets the ID of a finished instance be reused.
	ReplaceFinished bool `json:"replaceFinished,omitempty"`
}

// StartResponse is the answer to a StartRequest.
type StartResponse struct {
	ID string `json:"id"`
}

// ReasonRequest is the body of suspend, rewind and terminate.
type ReasonRequest struct {
	Reason string `json:"reason,omitempty"`
}

// RaiseRequest raises an event: POST /api/v1/instances/{id}/events.
type RaiseRequest struct {
	Name string          `json:"name"`
	Data json.RawMessage `json:"data,omitempty"`
}

// ResumeRequest resumes an instance with one decision per pending task.
type ResumeRequest struct {
	Reason    string      `json:"reason,omitempty"`
	Decisions []*Decision `json:"decisions,omitempty"`
}

// PurgeRequest selects finished instances: POST /api/v1/purge.
type PurgeRequest struct {
	Statuses    []duro.Status `json:"statuses,omitempty"`
	Name        string        `json:"name,omitempty"`
	CreatedFrom time.Time     `json:"createdFrom,omitzero"`
	CreatedTo   time.Time     `json:"createdTo,omitzero"`
}

// PurgeResponse says how many instances a purge deleted.
type PurgeResponse struct {
	Purged int `json:"purged"`
}

// SignalRequest signals an entity.
type SignalRequest struct {
	Operation      string          `json:"operation"`
	Input          json.RawMessage `json:"input,omitempty"`
	IdempotencyKey string          `json:"idempotencyKey,omitempty"`
}

// CleanResponse is the answer to POST /api/v1/entities/clean.
type CleanResponse struct {
	Purged int `json:"purged"`
	Asked  int `json:"asked"`
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// Error is an API error: a stable Code (see the Code constants) and a
// message for people.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Converters from the SDK's types.

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// Payload returns a stored payload as JSON: as it is if it is JSON, else as
// a JSON string of its bytes; nil if empty.
func Payload(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

// NewInstance converts an SDK instance.
func NewInstance(i *duro.Instance) *Instance {
	return &Instance{
		ID: i.ID, Name: i.Name, Status: i.Status, ExecutionID: i.ExecutionID, ParentInstanceID: i.ParentInstanceID,
		CreatedAt: utc(i.CreatedAt), UpdatedAt: utc(i.UpdatedAt), CompletedAt: utc(i.CompletedAt),
		Input: Payload(i.RawInput), Output: Payload(i.RawOutput), CustomStatus: Payload(i.RawCustomStatus),
		InputSize: i.InputSize, OutputSize: i.OutputSize, CustomStatusSize: i.CustomStatusSize,
		Failure: NewFailure(i.Failure), Suspension: NewSuspension(i.Suspension), LastResume: NewResumeOutcome(i.LastResume),
		PayloadsOmitted: i.PayloadsOmitted,
	}
}

// NewResumeOutcome converts a resume's outcome (nil for nil).
func NewResumeOutcome(o *duro.ResumeOutcome) *ResumeOutcome {
	if o == nil {
		return nil
	}
	out := &ResumeOutcome{ResumeID: o.ID, Status: o.Status, Reason: o.Reason, At: utc(o.At)}
	for _, d := range o.Decisions {
		out.Decisions = append(out.Decisions, &DecisionOutcome{TaskID: d.TaskID, Action: strings.ToLower(string(d.Action)),
			Status: d.Status, Reason: d.Reason})
	}
	return out
}

// NewFailure converts a recorded failure (nil for nil).
func NewFailure(f *duro.Failure) *Failure {
	if f == nil {
		return nil
	}
	return &Failure{Message: f.Message, Type: f.Type, TaskName: f.TaskName, NonRetryable: f.NonRetryable,
		Details: Payload(f.Details), Stack: f.Stack, Cause: NewFailure(f.Cause)}
}

// NewSuspension converts a suspension (nil for nil).
func NewSuspension(s *duro.Suspension) *Suspension {
	if s == nil {
		return nil
	}
	out := &Suspension{Reason: s.Reason, Since: utc(s.Since), Poisoned: s.Poisoned}
	for _, pd := range s.Pending {
		out.Pending = append(out.Pending, NewPendingDecision(pd))
	}
	return out
}

// NewPendingDecision converts a pending decision.
func NewPendingDecision(pd *duro.PendingDecision) *PendingDecision {
	return &PendingDecision{TaskID: pd.TaskID, Activity: pd.Name, Attempt: pd.Attempt,
		PreviousDeliveryAt: utc(pd.PreviousDeliveryAt), Input: Payload(pd.Input), InputSize: len(pd.Input), Options: pd.Options}
}

// hasTaskID reports whether events of type t carry a meaningful task ID
// (task 0 is a valid ID).
func hasTaskID(t backend.EventType) bool {
	switch t {
	case backend.EventTaskScheduled, backend.EventTaskCompleted, backend.EventTaskFailed,
		backend.EventTimerCreated, backend.EventTimerFired, backend.EventSubOrchestrationCreated,
		backend.EventSubOrchestrationCompleted, backend.EventSubOrchestrationFailed, backend.EventEventSent,
		backend.EventTaskDuplicate, backend.EventEntitySignaled, backend.EventEntityCalled,
		backend.EventEntityResponse, backend.EventEntityLockRequested, backend.EventEntityLockGranted,
		backend.EventEntityUnlocked, backend.EventLateResult, backend.EventPatched:
		return true
	}
	return false
}

// NewEvent converts a history event.
func NewEvent(e *duro.HistoryEvent) *Event {
	j := &Event{
		Type: e.Type, Timestamp: utc(e.Timestamp), Name: e.Name, InstanceID: e.InstanceID,
		ExecutionID: e.ExecutionID, Input: Payload(e.Input), Result: Payload(e.Result),
		Failure: NewFailure(e.Failure), FireAt: utc(e.FireAt), Attempt: e.Attempt,
		Status: e.Status, Reason: e.Reason, Parent: e.Parent,
		Activity: e.Activity, Suspension: NewSuspension(e.Suspension), Rewind: e.Rewind, Entity: e.Entity,
		ResumeOutcome: NewResumeOutcome(e.ResumeOutcome), Deprecated: e.Deprecated,
	}
	for _, d := range e.Decisions {
		j.Decisions = append(j.Decisions, &Decision{TaskID: d.TaskID, Action: string(d.Action), Result: Payload(d.Result), Message: d.Message})
	}
	if hasTaskID(e.Type) {
		id := e.TaskID
		j.TaskID = &id
	}
	return j
}

// NewEntity converts an entity's state.
func NewEntity(e *duro.EntityState) *Entity {
	return &Entity{ID: e.ID.String(), Name: e.ID.Name, Key: e.ID.Key, Exists: e.Exists, State: Payload(e.RawState),
		LockedBy: e.LockedBy, Queued: e.Queued, LastModified: utc(e.LastModified), Suspension: NewSuspension(e.Suspension)}
}
