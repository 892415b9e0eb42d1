// Package backend defines the storage seam of duro: the Backend interface that
// every store implements (SQLite, PostgreSQL, in-memory), the parameter structs
// its methods take, the history event format, and the sentinel errors it
// returns.
//
// A backend is deliberately dumb: it stores instances, histories, inbox messages
// and activity tasks, and hands out work items under leases. All orchestration
// semantics (replay, task IDs, retries) live in the engine. What a backend must
// guarantee is listed on each method and checked by the conformance suite in
// package backendtest:
//
//   - A1 attempt numbers: every claim of a work item increments its attempt
//     number in the same transaction that grants the lease, before the work item
//     is returned. The first claim returns 1. No two claims return the same
//     number, across lease expiry, abandonment, crashes and reopened stores.
//   - A2 fencing: Complete*, Renew* and Abandon* take the attempt number of the
//     delivery that calls them and fail with ErrLeaseLost unless it is still the
//     newest delivery of that work item. A lapsed lease that nobody has claimed
//     since is still the newest delivery and may complete.
//   - O1 atomic steps: CompleteOrchestrationStep applies all of its effects in
//     one transaction, or none.
//   - Deterministic IDs: messages and activity tasks carry IDs chosen by the
//     engine; inserting an ID that already exists is silently ignored.
//   - Message order: a step's messages come in the order they became
//     visible, however long nobody claimed the instance (see
//     ClaimOrchestrationStep).
package backend

import (
	"context"
	"time"
)

// Status is the runtime status of an orchestration instance.
type Status string

// Instance statuses.
const (
	StatusPending        Status = "Pending"
	StatusRunning        Status = "Running"
	StatusSuspended      Status = "Suspended"
	StatusCompleted      Status = "Completed"
	StatusFailed         Status = "Failed"
	StatusTerminated     Status = "Terminated"
	StatusContinuedAsNew Status = "ContinuedAsNew"
)

// IsTerminal reports whether an instance in this status has finished: it runs
// no more code and takes no more messages.
func (s Status) IsTerminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusTerminated
}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusRunning, StatusSuspended, StatusCompleted, StatusFailed,
		StatusTerminated, StatusContinuedAsNew:
		return true
	}
	return false
}

// Instance is the stored metadata of an orchestration instance.
type Instance struct {
	ID          string
	Name        string
	ExecutionID string
	Status      Status
	Input       []byte
	Output      []byte
	Failure     *Failure
	// CustomStatus is a payload the orchestration code sets for observers.
	CustomStatus []byte
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// CompletedAt is set when the instance reaches a terminal status.
	CompletedAt time.Time
	// Parent is set for sub-orchestrations.
	Parent *ParentRef
	// Suspension is set while the instance is Suspended.
	Suspension *Suspension
	// ResumeOutcomes are the outcomes of the last resumes the instance's
	// steps applied or refused, oldest first (the engine keeps a few).
	ResumeOutcomes []*ResumeOutcome
	// Omitted is set on an instance listed with
	// ListInstancesParams.OmitPayloads: Input and Output are left out (nil),
	// and so is CustomStatus when it is over MaxListedCustomStatus bytes;
	// InputSize, OutputSize and CustomStatusSize give their lengths.
	Omitted bool
	// InputSize, OutputSize and CustomStatusSize are the payloads' lengths
	// in bytes, set only with Omitted (otherwise len(Input) and so on say
	// it).
	InputSize, OutputSize, CustomStatusSize int
}

// MaxListedCustomStatus is the largest custom status, in bytes, that a
// listing with ListInstancesParams.OmitPayloads keeps.
const MaxListedCustomStatus = 1024

// Message is an entry of an instance's inbox: an event waiting to be processed
// by the instance's next orchestration step.
type Message struct {
	// ID is chosen by the sender and unique within the store. Inserting a
	// message whose ID exists (or existed and was consumed within the same
	// execution) is a no-op, so a retried send never delivers twice.
	ID         string
	InstanceID string
	// ExecutionID addresses one execution of the instance. Messages for an
	// execution other than the current one are handed to the step anyway (the
	// engine discards them); empty means "whichever is current".
	ExecutionID string
	Event       *Event
	// VisibleAt delays delivery (durable timers). Zero means now. The message
	// becomes visible at the later of VisibleAt and the time it is enqueued
	// (the writer's Now, or the backend's clock); that instant is its place
	// in the inbox's order, not the time its row was written.
	VisibleAt time.Time
	// Exclusive, for EnqueueMessage of a control message, refuses the
	// message with ErrMessageQueued when the instance's inbox already holds
	// a message of the same event type under another ID; the check and
	// the insert are atomic. Not stored.
	Exclusive bool
}

// ActivityTask is an activity call scheduled by an orchestration step.
type ActivityTask struct {
	// ID is deterministic: TaskMessageID(InstanceID, ExecutionID, TaskID).
	ID          string
	InstanceID  string
	ExecutionID string
	TaskID      int
	Name        string
	Input       []byte
	Options     ActivityOptions
	// PriorAttempts is the number of deliveries the same call already had
	// under earlier task IDs (a task enqueued again by an operator's retry
	// decision or by a rewind); the first claim returns PriorAttempts+1.
	// Every claim's work item carries it, so Attempt - PriorAttempts counts
	// the deliveries since the task was enqueued (the poison budget).
	PriorAttempts int
}

// CreateInstanceParams are the arguments of Backend.CreateInstance.
type CreateInstanceParams struct {
	ID          string
	Name        string
	ExecutionID string
	Input       []byte
	// StartAt delays the first step. Zero means now.
	StartAt time.Time
	// Parent is set for sub-orchestrations.
	Parent *ParentRef
	// IfExists says what to do when an instance with this ID exists.
	IfExists IfExists
	// Now is the creation time; zero means the backend's clock.
	Now time.Time
}

// IfExists is the policy of CreateInstance for an ID that is already taken.
type IfExists int

const (
	// IfExistsFail returns ErrInstanceExists.
	IfExistsFail IfExists = iota
	// IfExistsReplaceFinished replaces a terminal instance (deleting its
	// history, inbox and tasks) and returns ErrInstanceExists for a live one.
	IfExistsReplaceFinished
)

// ListInstancesParams filter and page Backend.ListInstances. Zero fields do not
// filter.
type ListInstancesParams struct {
	Statuses []Status
	// Name matches the orchestration name exactly.
	Name string
	// IDPrefix matches the instance IDs that start with it (byte-wise).
	IDPrefix string
	// CustomStatus matches the instances whose stored custom status
	// contains these bytes (case-sensitive; "\"shipped\"" finds the JSON
	// string "shipped").
	CustomStatus string
	// CreatedFrom and CreatedTo bound the creation time: From inclusive, To
	// exclusive.
	CreatedFrom time.Time
	CreatedTo   time.Time
	// PageSize is the maximum number of instances returned; 0 means 100.
	PageSize int
	// PageToken continues a listing; it is the NextPageToken of the previous page.
	PageToken string
	// OmitPayloads leaves out the payloads a list shown to people has no
	// room for, so that a page of instances with large inputs stays small:
	// the instances come with Omitted set, without Input and Output, and
	// without a CustomStatus over MaxListedCustomStatus bytes, with their
	// sizes instead. GetInstance returns them whole.
	OmitPayloads bool
}

// PrefixEnd returns the smallest string greater than every string that
// starts with prefix, for a range scan (id >= prefix AND id < end); ok is
// false when there is none (prefix is empty or all 0xff bytes).
func PrefixEnd(prefix string) (end string, ok bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// InstancePage is one page of Backend.ListInstances, newest first.
type InstancePage struct {
	Instances []*Instance
	// NextPageToken is empty on the last page.
	NextPageToken string
}

// PurgeInstancesParams filter Backend.PurgeInstances. Only terminal instances
// are purged; at least one filter field must be set.
type PurgeInstancesParams struct {
	Statuses    []Status
	Name        string
	CreatedFrom time.Time
	CreatedTo   time.Time
}

// ClaimParams are the arguments of the Claim* methods.
type ClaimParams struct {
	// Owner identifies the worker, for operators.
	Owner string
	// LeaseDuration is how long the claim is held before another worker may
	// claim the work item again.
	LeaseDuration time.Duration
	// Now is the current time; zero means the backend's clock. Tests pass a
	// synthetic time to expire leases and fire timers without sleeping.
	Now time.Time
	// ActivityNames, when not nil, restricts ClaimActivity and
	// ClaimActivities to the tasks of these activities: a worker claims
	// only what it can run, so a task waits for a worker that has its code
	// instead of being delivered (and its attempt number spent) elsewhere.
	// Nil means any activity; empty means none. The other Claim methods
	// ignore it.
	ActivityNames []string
}

// OrchestrationWorkItem is one orchestration step handed to a worker: the
// instance, its current execution's history, and the messages to process.
type OrchestrationWorkItem struct {
	Instance *Instance
	History  []*Event
	// Messages are the visible inbox messages in the order they became
	// visible (see Backend.ClaimOrchestrationStep).
	Messages []*Message
	// Attempt is this delivery's number (A1) and its fencing token (A2). It
	// grows across the instance's steps.
	Attempt int64
	// Deliveries counts the claims of the instance since its last committed
	// step, this one included: 1 on a first try, more when earlier
	// deliveries of the same step crashed or were abandoned (poison).
	Deliveries int
	// LeaseExpiresAt is when the claim lapses.
	LeaseExpiresAt time.Time
	// StartedAttempt is the attempt number of the newest earlier delivery
	// since the last committed step that marked itself started
	// (StartOrchestrationStep), or 0 when none did: an earlier delivery
	// of this step may have run code that must run at most once only if
	// it is not 0.
	StartedAttempt int64
}

// CompleteOrchestrationStepParams are the effects of one orchestration step,
// committed atomically by Backend.CompleteOrchestrationStep.
type CompleteOrchestrationStepParams struct {
	InstanceID string
	// Attempt is the work item's Attempt; the call fails with ErrLeaseLost if a
	// newer delivery exists.
	Attempt int64
	// ExecutionID is the execution the step worked on (the work item's
	// Instance.ExecutionID), required. The call fails with ErrLeaseLost if the
	// instance's current execution differs: the instance was purged and
	// created again, or replaced, since the claim. Attempt and ExecutionID
	// together are the step's fencing token.
	ExecutionID string
	// ConsumedMessageIDs are deleted from the inbox.
	ConsumedMessageIDs []string
	// NewEvents are appended to the current execution's history.
	NewEvents []*Event
	// Status is the instance's new status; Output, Failure, CustomStatus and
	// Suspension replace the stored ones (Suspension is stored only with
	// StatusSuspended).
	Status       Status
	Suspension   *Suspension
	Output       []byte
	Failure      *Failure
	CustomStatus []byte
	// ResumeOutcomes, when not nil, replace the instance's stored resume
	// outcomes (nil keeps them).
	ResumeOutcomes []*ResumeOutcome
	// ActivityTasks are enqueued (IDs already present are ignored).
	ActivityTasks []*ActivityTask
	// Messages are enqueued into inboxes: timers to this instance, events to
	// other instances, completions to the parent (IDs already present are
	// ignored; messages to instances that do not exist are dropped).
	Messages []*Message
	// StartInstances creates sub-orchestrations (and entities). A child whose
	// ID exists and is terminal is replaced; one that is live is left alone
	// and, if it has a Parent, a SubOrchestrationFailed message ("instance
	// already exists") is sent to the parent task instead. Instances are
	// started before Messages are delivered, so a message of the same step
	// may address an instance the step starts.
	StartInstances []*CreateInstanceParams
	// RewindInstances rewinds failed sub-orchestrations (a parent's rewind
	// reaches its failed children). Each child that is Failed is rewound as
	// by RewindInstance; for any other child (gone, or not Failed) the
	// parent's task gets, instead, a SubOrchestrationFailed message with ID
	// RewindChild.FailMessageID saying the child could not be rewound.
	RewindInstances []*RewindChild
	// Window, for a backend that implements RequestWindow, updates the
	// instance's window of processed request IDs in the step's transaction;
	// only the IDs added and dropped are written. Other backends ignore it.
	Window *WindowUpdate
	// ContinueAsNew, if set, starts a new execution in the same transaction:
	// the history is cleared, the instance gets NewExecutionID and Input, and
	// an ExecutionStarted message is enqueued. Messages addressed to the old
	// execution are deleted; others (external events) are kept.
	ContinueAsNew *ContinueAsNew
	// Now is the commit time; zero means the backend's clock.
	Now time.Time
}

// ProcessedRequest is an entry of an instance's window of processed request
// IDs (see RequestWindow).
type ProcessedRequest struct {
	ID string
	// At is when the request was processed.
	At time.Time
}

// WindowUpdate changes an instance's window of processed request IDs.
type WindowUpdate struct {
	// Add are added, in order, as the newest entries; an ID already in the
	// window is moved there with its new time.
	Add []ProcessedRequest
	// Keep bounds the window by count: after Add, only the Keep newest
	// entries stay. 0 means no bound.
	Keep int
	// Before bounds it by age: the oldest entries processed before Before
	// are dropped, up to the first one that is not. Zero means no bound.
	Before time.Time
}

// RewindChild is a sub-orchestration a parent's rewind reaches.
type RewindChild struct {
	// InstanceID is the child.
	InstanceID string
	// Parent is the parent's task that waits for the child.
	Parent *ParentRef
	// MessageID is the ID of the child's rewind message.
	MessageID string
	// FailMessageID is the ID of the failure sent to the parent when the
	// child cannot be rewound.
	FailMessageID string
	Reason        string
}

// RewindParams are the arguments of Backend.RewindInstance.
type RewindParams struct {
	InstanceID string
	// MessageID is the ID of the ExecutionRewound message enqueued.
	MessageID string
	Reason    string
	Now       time.Time
}

// ContinueAsNew restarts an instance with a fresh history.
type ContinueAsNew struct {
	NewExecutionID string
	Input          []byte
}

// ActivityWorkItem is one delivery of an activity task.
type ActivityWorkItem struct {
	Task *ActivityTask
	// Attempt is this delivery's number (A1) and its fencing token (A2).
	Attempt int
	// PreviousDeliveryAt is when the previous delivery was claimed (zero on
	// the first attempt).
	PreviousDeliveryAt time.Time
	// ScheduledAt is when the orchestration step that scheduled the task
	// committed.
	ScheduledAt    time.Time
	LeaseExpiresAt time.Time
	// HeartbeatDetails are the details of the last heartbeat of any earlier
	// delivery (nil if none), so a redelivery can resume from progress.
	HeartbeatDetails []byte
	// StartedAttempt is the attempt number of the newest earlier delivery
	// of this task that marked itself started (StartActivity), or 0 when
	// none did.
	StartedAttempt int
	// Released counts the earlier deliveries of this task that were
	// released unstarted (AbandonParams.Unstarted): they provably did not
	// run the code. The other earlier deliveries, Attempt - 1 -
	// Task.PriorAttempts - Released of them, either marked themselves
	// started or ended (a crash, a lapsed lease) without saying.
	Released int
}

// StartParams mark one delivery started: the code it must run at most
// once is about to run (see Backend.StartActivity).
type StartParams struct {
	// ID is the activity task ID or the instance ID.
	ID      string
	Attempt int64
	// ExecutionID, for orchestration steps, is the execution the delivery
	// works on; when set, a different current execution is ErrLeaseLost.
	ExecutionID string
}

// CompleteActivityParams finish one delivery of an activity task.
type CompleteActivityParams struct {
	TaskID  string
	Attempt int
	// Result is the TaskCompleted or TaskFailed event enqueued, in the same
	// transaction that deletes the task, to the owning instance's inbox as
	// message ResultMessageID(TaskID). If the instance no longer exists the
	// event is dropped. If it has finished (see Backend.CompleteActivity)
	// the event goes to its history as a LateResult instead.
	Result *Event
	Now    time.Time
	// InstanceID and ExecutionID, when set, name the task's instance and
	// execution (the delivery's ActivityTask): a hint with which a backend
	// may read the data of the step a fused completion claims in the
	// completion's own round trip (ActivityStepCommitter). A backend
	// relies on them for nothing else; if they do not name the claimed
	// step, it reads the step's data as without them.
	InstanceID, ExecutionID string
}

// RenewLeaseParams extend a lease.
type RenewLeaseParams struct {
	// ID is the activity task ID or the instance ID.
	ID            string
	Attempt       int64
	LeaseDuration time.Duration
	// Details, when not nil, replace the activity task's stored heartbeat
	// details (ignored for orchestration leases).
	Details []byte
	// ExecutionID, for orchestration leases, is the execution the delivery
	// works on; when set, a different current execution is ErrLeaseLost.
	ExecutionID string
	Now         time.Time
}

// AbandonParams release a claim without completing it. The attempt number is
// kept: the next claim gets Attempt+1.
type AbandonParams struct {
	// ID is the activity task ID or the instance ID.
	ID      string
	Attempt int64
	// RetryAt makes the work item visible again no earlier than this time; zero
	// means at once.
	RetryAt time.Time
	// RetryAfter, when positive, is used instead of RetryAt: the work item
	// is visible again RetryAfter after the abandon by the store's clock, so
	// the delay does not depend on the caller's clock (workers use it).
	RetryAfter time.Duration
	// ExecutionID, for orchestration steps, is the execution the delivery
	// worked on; when set, a different current execution is ErrLeaseLost.
	ExecutionID string
	// Unstarted, for activity tasks, says that the delivery did not run
	// the task's code and did not mark itself started: the task's next
	// deliveries count it in ActivityWorkItem.Released. It is ignored
	// for a delivery that marked itself started, and for orchestration
	// steps (whose start marks alone decide).
	Unstarted bool
}

// Backend is the storage seam. Implementations must be safe for concurrent use
// and must pass backendtest.Exercise.
type Backend interface {
	// CreateInstance creates an instance in status Pending and enqueues its
	// ExecutionStarted message (visible at StartAt).
	CreateInstance(ctx context.Context, p *CreateInstanceParams) error
	// GetInstance returns the instance or ErrInstanceNotFound.
	GetInstance(ctx context.Context, id string) (*Instance, error)
	// ListInstances pages through instances, newest first.
	ListInstances(ctx context.Context, p *ListInstancesParams) (*InstancePage, error)
	// GetHistory returns the current execution's history, or
	// ErrInstanceNotFound.
	GetHistory(ctx context.Context, id string) ([]*Event, error)
	// EnqueueMessage delivers a message from outside an orchestration step
	// (external events, terminate, suspend and resume requests). It returns
	// ErrInstanceNotFound for an unknown instance and ErrInstanceFinished for
	// a terminal one. Messages to a Suspended instance are kept, in order.
	// The message is enqueued at the backend's clock.
	// With m.Exclusive it returns ErrMessageQueued, and enqueues nothing,
	// if the inbox holds another message of m's event type.
	EnqueueMessage(ctx context.Context, m *Message) error
	// RewindInstance turns a Failed instance back to Running (clearing its
	// failure and completion time) and enqueues an ExecutionRewound message
	// (Reason) with ID p.MessageID, in one transaction. It returns
	// ErrInstanceNotFound, or ErrInstanceNotFailed for any other status.
	RewindInstance(ctx context.Context, p *RewindParams) error
	// PurgeInstance deletes a terminal instance with its history, inbox and
	// tasks. It returns ErrInstanceNotFound or ErrInstanceNotFinished.
	PurgeInstance(ctx context.Context, id string) error
	// PurgeInstances deletes the terminal instances matching the filter and
	// returns how many it deleted.
	PurgeInstances(ctx context.Context, p *PurgeInstancesParams) (int, error)

	// ClaimOrchestrationStep leases one instance that has visible inbox
	// messages and no live lease: the one whose oldest message became
	// visible first. The work item's messages are in the order they became
	// visible — a message enqueued visible at once when it was enqueued, a
	// timer (or any message with a VisibleAt) when its time came — whether
	// or not any claim ran in between; at the same instant, the message
	// enqueued first comes first (a timer firing at the instant an event
	// arrives was enqueued when it was scheduled, so it comes first). A
	// Suspended instance counts only its control messages
	// (EventType.IsControl) and its work item carries only those; the others
	// keep their order for the steps after the resume. It returns nil, nil
	// when there is none.
	ClaimOrchestrationStep(ctx context.Context, p *ClaimParams) (*OrchestrationWorkItem, error)
	// CompleteOrchestrationStep commits a step atomically (O1) and releases the
	// lease; ErrLeaseLost if p.Attempt is not the newest delivery. Called
	// again with the same fencing token after it committed (a retry whose
	// reply was lost), it applies nothing and returns nil, even if newer
	// deliveries have claimed or committed since (within the last
	// CommittedStepsWindow deliveries, see RepeatsCommittedStep).
	CompleteOrchestrationStep(ctx context.Context, p *CompleteOrchestrationStepParams) error
	// RenewOrchestrationLease extends a step's lease; ErrLeaseLost as above.
	RenewOrchestrationLease(ctx context.Context, p *RenewLeaseParams) error
	// AbandonOrchestrationStep releases a step's lease; ErrLeaseLost as above.
	AbandonOrchestrationStep(ctx context.Context, p *AbandonParams) error
	// StartOrchestrationStep marks delivery p.Attempt of instance p.ID's
	// step started, durably before it returns: the worker is about to run
	// code of the step that must run at most once (an at-most-once entity
	// operation). The next deliveries of the same step carry the mark in
	// OrchestrationWorkItem.StartedAttempt; a committed step clears it.
	// ErrLeaseLost unless p.Attempt is the newest delivery (a stale
	// delivery cannot start, so two deliveries never both start).
	StartOrchestrationStep(ctx context.Context, p *StartParams) error

	// ClaimActivity leases one visible activity task whose lease is free or
	// lapsed, oldest first, incrementing its attempt number. It returns nil,
	// nil when there is none.
	ClaimActivity(ctx context.Context, p *ClaimParams) (*ActivityWorkItem, error)
	// CompleteActivity deletes the task and enqueues its result atomically;
	// ErrLeaseLost if p.Attempt is not the newest delivery or the task is gone.
	//
	// A step that finishes an instance (Completed, Failed, Terminated)
	// deletes its tasks, except those a delivery holds (claimed and not
	// handed back): they are never delivered again, but that delivery may
	// still renew its lease and complete. Its TaskCompleted or TaskFailed
	// result is then appended to the instance's history as an
	// EventLateResult (LateResult(p.Result, activity name, status)), other
	// results are dropped, the task is deleted, and CompleteActivity
	// returns an error wrapping ErrInstanceFinished: the completion took
	// effect, but no code will process it. RewindInstance and purges
	// delete such tasks (their completion is then ErrLeaseLost), and
	// AbandonActivity deletes one instead of making it claimable.
	CompleteActivity(ctx context.Context, p *CompleteActivityParams) error
	// RenewActivityLease extends an activity's lease; ErrLeaseLost as above.
	RenewActivityLease(ctx context.Context, p *RenewLeaseParams) error
	// AbandonActivity releases an activity's lease; ErrLeaseLost as above.
	AbandonActivity(ctx context.Context, p *AbandonParams) error
	// StartActivity marks delivery p.Attempt of activity task p.ID
	// started, durably before it returns: the worker is about to run the
	// task's code and must know, at any later delivery, whether an earlier
	// one may have run it. The task's next deliveries carry the mark in
	// ActivityWorkItem.StartedAttempt. It makes the delivery's claim
	// durable too (A1), so a backend need not sync claims of at-most-once
	// tasks. ErrLeaseLost unless p.Attempt is the newest delivery: a stale
	// delivery cannot start, so two deliveries never both start.
	StartActivity(ctx context.Context, p *StartParams) error

	// Close releases the backend's resources. Calls after Close return
	// ErrClosed.
	Close() error
}

// WorkNotifier is an optional capability: a backend that knows when work
// arrives (because it was committed in this process, or through a database
// notification) lets idle workers wake at once instead of waiting for their
// next poll.
type WorkNotifier interface {
	// WorkAvailable returns a channel that is closed when new work may be
	// available. Call it again after each wake-up for the next one.
	WorkAvailable() <-chan struct{}
}

// BatchClaimer is an optional capability: a backend that can claim several
// work items in one round trip (and one commit) lets a worker with free
// slots fill them at once. Each returned work item obeys the same rules as
// one returned by the single-item Claim methods.
type BatchClaimer interface {
	// ClaimActivities claims up to max activity tasks.
	ClaimActivities(ctx context.Context, p *ClaimParams, max int) ([]*ActivityWorkItem, error)
	// ClaimOrchestrationSteps claims up to max orchestration steps, each of
	// a different instance.
	ClaimOrchestrationSteps(ctx context.Context, p *ClaimParams, max int) ([]*OrchestrationWorkItem, error)
}

// StepActivityClaimer is an optional capability: a backend that can hand
// the activity tasks an orchestration step schedules straight to the worker
// that completed the step, in the step's own transaction, saves a claim (a
// round trip and a commit) per task, and the tasks start without waiting
// for a wake-up. Temporal calls this eager activity dispatch.
type StepActivityClaimer interface {
	// CompleteOrchestrationStepClaim is CompleteOrchestrationStep that also
	// claims, in the same transaction, up to max of the activity tasks the
	// step enqueues (p.ActivityTasks, in order, only those it inserts) for
	// claim.Owner, exactly as ClaimActivities would: each task's attempt
	// number goes up by one and the lease is taken until claim.Now (zero:
	// the store's clock, never p.Now) plus claim.LeaseDuration. The claims are as durable as ClaimActivities'
	// when it returns. If the step fails, nothing is claimed. max <= 0
	// claims nothing. Called again after it committed (see
	// CompleteOrchestrationStep), it returns the claims that commit made
	// for claim.Owner that are still live, so that they run at once: a
	// caller must repeat the call only when it did not learn the outcome.
	CompleteOrchestrationStepClaim(ctx context.Context, p *CompleteOrchestrationStepParams, claim *ClaimParams, max int) ([]*ActivityWorkItem, error)
}

// ActivityStepClaimer is an optional capability, the inverse of
// StepActivityClaimer: a backend that can complete an activity delivery and
// claim, in the same transaction, the step of the orchestration the result
// goes to, lets a worker with a free orchestration slot run that step at
// once. It saves a claim (a round trip and a commit) per activity result,
// and the wait for a wake-up between the result and its step.
type ActivityStepClaimer interface {
	// CompleteActivityClaim is CompleteActivity that also claims, in the
	// same transaction, the next step of the task's instance for
	// claim.Owner, exactly as ClaimInstanceStep would once the result is in
	// the inbox: the step's attempt number goes up by one (A1), Deliveries
	// and StartedAttempt are counted as for any claim, the lease is taken
	// until claim.Now (zero: the store's clock, never p.Now) plus
	// claim.LeaseDuration, and the work item is fenced by that attempt
	// like any other (A2). The claim is as durable as ClaimInstanceStep's
	// when it returns. claim.ActivityNames is ignored.
	//
	// The completion itself is exactly CompleteActivity's, with the same
	// errors; the claim is made only when the completion delivered the
	// result to the instance's inbox (or found it there), and the returned
	// work item is nil, with the completion committed, when:
	//   - the instance has other activity tasks (scheduled, running, or
	//     completing concurrently): the results of a fan-out collect in
	//     the inbox for one step, claimed by the last of them or by a
	//     claim, rather than each claiming a step of its own;
	//   - the instance holds a live lease (another worker's step, or one of
	//     claim.Owner's own): the result waits in the inbox for the step
	//     after it, as it would after CompleteActivity;
	//   - the instance is Suspended: only its control messages make it
	//     claimable, as for any claim, so a result alone claims nothing;
	//   - the result was dropped (the instance is gone) or kept as a late
	//     result (the instance had finished; the error then wraps
	//     ErrInstanceFinished, as CompleteActivity's does).
	// A stale delivery (ErrLeaseLost) changes nothing and claims nothing.
	// The work item carries every visible message of the instance, not only
	// this result. Called again after it committed (a retry whose reply was
	// lost) it fails with ErrLeaseLost, as CompleteActivity does, and claims
	// nothing: a step the lost call claimed stays leased to claim.Owner
	// until its lease lapses and is then delivered again with the next
	// attempt number. A caller that retries should therefore use a lease it
	// is ready to wait out, or retry with CompleteActivity.
	CompleteActivityClaim(ctx context.Context, p *CompleteActivityParams, claim *ClaimParams) (*OrchestrationWorkItem, error)
}

// ActivityStepCommitter is an optional capability that goes one step
// further than ActivityStepClaimer: the step a completion claims is run by
// the caller inside the completion's transaction and committed with it, so
// that an activity's result and the step it wakes cost one commit instead
// of two, and the step needs no fencing check of its own (the claim holds
// the instance's row until the commit).
type ActivityStepCommitter interface {
	// CompleteActivityStep completes and claims exactly as
	// CompleteActivityClaim does, with the same errors. When it claims a
	// step it calls run with the work item, inside the transaction:
	// nothing else of the instance commits until it returns. run returns
	// the step to commit with the completion, or nil. A backend that
	// repeats the transaction (after a serialization failure, or a
	// connection lost before the commit) calls run again with the new
	// try's work item; only the last call's step can commit.
	//
	// If run returns a step and the backend commits it, the outcome is as
	// if CompleteActivityClaim had returned the work item and
	// CompleteOrchestrationStepClaim(s.Params, s.ActivityClaim,
	// s.MaxActivities) had then committed it (StepActivityClaimer's rules
	// for the eager claims; s.Params fenced by the work item's attempt):
	// Committed is set and Activities holds the claims. The backend may
	// decline a step (one that writes other instances, say): the
	// completion and the claim then commit alone, Committed is false, and
	// Step is the very work item run was given, for which s.Params stay
	// valid, to be committed (or handed back) as after any claim. If the
	// step's writes fail, nothing of the transaction commits; the backend
	// then completes and claims again, without run, and Step is that new
	// claim's work item (or nil), to be run afresh.
	//
	// With no step claimed run is not called and Step is nil. An error
	// means the completion did not commit, or that its outcome is unknown
	// (a retry then fails with ErrLeaseLost, as for CompleteActivityClaim).
	CompleteActivityStep(ctx context.Context, p *CompleteActivityParams, claim *ClaimParams,
		run func(wi *OrchestrationWorkItem) *StepCommit) (*ActivityStep, error)
}

// StartStepCommitter is an optional capability that does for a new
// instance's first step what ActivityStepCommitter does for the step an
// activity's result wakes: the step is run by the caller inside the
// creation's transaction and committed with it, so that a start and its
// first step cost one commit, no claim, and no wait for a claimer.
type StartStepCommitter interface {
	// CreateInstanceStep creates the instance as CreateInstance does, with
	// the same errors, and claims its first step for claim.Owner in the
	// same transaction (attempt 1, leased for claim.LeaseDuration from the
	// creation's time). It calls run with the work item, inside the
	// transaction: Messages holds the ExecutionStarted message, History is
	// empty. run returns the step to commit with the creation, or nil; the
	// outcome is then as for CompleteActivityStep: Committed and Activities
	// for a step that committed; for one the backend declined (or nil), the
	// creation and the claim commit alone and Step is the work item run was
	// given, to be committed as after any claim. If the step's writes fail,
	// the instance is created without them, unclaimed, and Step is nil. A
	// backend that repeats the transaction calls run again; only the last
	// call's step can commit.
	//
	// A creation that may replace a finished instance (IfExistsReplaceFinished),
	// or that starts later (StartAt), is made as CreateInstance makes it,
	// without calling run: Step is nil.
	CreateInstanceStep(ctx context.Context, p *CreateInstanceParams, claim *ClaimParams,
		run func(wi *OrchestrationWorkItem) *StepCommit) (*ActivityStep, error)
}

// StepCommit is a step that ActivityStepCommitter.CompleteActivityStep's
// run asks to commit with the completion: its parameters, and the eager
// claim of its activity tasks (up to MaxActivities, for ActivityClaim) as
// StepActivityClaimer makes it.
type StepCommit struct {
	Params        *CompleteOrchestrationStepParams
	ActivityClaim *ClaimParams
	MaxActivities int
}

// ActivityStep is the outcome of ActivityStepCommitter.CompleteActivityStep
// and of StartStepCommitter.CreateInstanceStep.
type ActivityStep struct {
	// Step is the claimed step, nil if none was.
	Step *OrchestrationWorkItem
	// Committed is set when the step run returned committed with the
	// completion (or the creation).
	Committed bool
	// Activities are the activity tasks the committed step claimed.
	Activities []*ActivityWorkItem
}

// RequestWindow is an optional capability: a backend that keeps, per
// instance, a window of the IDs of processed requests as rows of their own,
// so that a step writes only the entries it adds and drops
// (CompleteOrchestrationStepParams.Window) instead of the whole window.
// Entities keep their window of processed request IDs there; without the
// capability they keep it in their custom status, rewritten by every batch.
// The window belongs to the instance, not to an execution: continue-as-new
// keeps it; a step that ends the instance, the replacement of a finished
// instance and a purge delete it.
type RequestWindow interface {
	// ProcessedRequests returns the entries of the instance's window whose
	// IDs are among ids, in no particular order. A wrapper whose wrapped
	// backend keeps no window returns an error wrapping
	// errors.ErrUnsupported; the worker then keeps the window in the
	// entity's custom status.
	ProcessedRequests(ctx context.Context, instanceID string, ids []string) ([]ProcessedRequest, error)
}

// KindNotifier is an optional refinement of WorkNotifier for backends that
// can tell the two kinds of work apart, so that a worker wakes its
// orchestration loop only for steps and its activity loop only for activity
// tasks (an activity's result then does not send the activity loop to claim
// in vain).
type KindNotifier interface {
	WorkNotifier
	// OrchestrationWorkAvailable is WorkAvailable for orchestration steps.
	OrchestrationWorkAvailable() <-chan struct{}
	// ActivityWorkAvailable is WorkAvailable for activity tasks.
	ActivityWorkAvailable() <-chan struct{}
}

// FinishNotifier is an optional capability: a backend that knows when an
// instance may have finished lets Client.Wait return as soon as the step
// that finished the instance commits, instead of on its next poll.
//
// A watch may fire spuriously (the watcher reads the instance again and
// watches again), but it must not miss a finish that commits after
// WatchFinish returned: a caller registers the watch first and then reads
// the instance, so that a finish committed between the two still fires the
// channel.
type FinishNotifier interface {
	// WatchFinish returns a channel that is closed when instance id may
	// have finished (a step that completes, fails or terminates it
	// committed; a continue-as-new does not finish it), and at once after
	// Close; and stop, which releases the watch: call it when done
	// waiting, whether or not the channel closed. A channel fires once:
	// watch again to wait for the next finish. A backend may also close
	// the channel when it may have missed a notification (its
	// notification connection was restored). A wrapper whose wrapped
	// backend cannot watch returns a nil channel (and a stop that does
	// nothing); the caller then polls.
	WatchFinish(id string) (fired <-chan struct{}, stop func())
}

// NoFinishWatch is what a wrapper's WatchFinish returns when the wrapped
// backend is no FinishNotifier: a nil channel and a stop that does
// nothing.
func NoFinishWatch() (<-chan struct{}, func()) { return nil, func() {} }

// WatchFinish forwards a watch to be when it is a FinishNotifier, and
// returns NoFinishWatch otherwise: for wrappers.
func WatchFinish(be Backend, id string) (<-chan struct{}, func()) {
	if fn, ok := be.(FinishNotifier); ok {
		return fn.WatchFinish(id)
	}
	return NoFinishWatch()
}
