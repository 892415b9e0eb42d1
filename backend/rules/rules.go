// Package rules holds the semantics that duro's SQL backends share, written
// once: what creating, replacing, rewinding and finishing an instance do,
// what a step's relations to other instances (children, messages, rewound
// children, continue-as-new) do, and how a delivery is fenced. Each rule
// runs inside one transaction of the backend, seen through Tx: a small
// interface of primitives that each backend implements with its own SQL
// (and its own batching: SQLite's single writer with group commit,
// PostgreSQL's row locks and pipelined statements).
//
// A backend that is not a transactional store (a log-based one) implements
// backend.Backend directly; the conformance suite in backendtest is what
// proves either kind.
package rules

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/durohq/duro/backend"
)

// Tx is one write transaction of a SQL backend, as the rules use it. Its
// methods are primitives: each does what its comment says with the
// backend's own SQL and nothing more; the decisions are the rules'.
type Tx interface {
	// Now is the transaction's time: the caller's Now, or the store's
	// clock.
	Now() (time.Time, error)
	// InstanceStatus returns an instance's status, or an error wrapping
	// backend.ErrInstanceNotFound.
	InstanceStatus(id string) (backend.Status, error)
	// Deliver inserts m into its instance's inbox if the instance exists
	// and is not terminal; otherwise it returns an error wrapping
	// backend.ErrInstanceNotFound or backend.ErrInstanceFinished. A
	// message whose ID is in an inbox, or was consumed by the instance's
	// execution, is ignored.
	Deliver(m *backend.Message) error
	// InsertMessage inserts m into the inbox of an instance the
	// transaction has just written (it exists, whatever its status), with
	// the same rule for IDs as Deliver.
	InsertMessage(m *backend.Message) error
	// CreateOrLock creates instance p.ID in status Pending at now, with
	// start as its only message, and reports created; or, when a row of
	// the ID exists, writes nothing, locks that row until the transaction
	// ends and returns its status. It never writes over a row another
	// transaction created.
	CreateOrLock(p *backend.CreateInstanceParams, start *backend.Message, now time.Time) (existing backend.Status, created bool, err error)
	// Replace turns the locked, terminal instance p.ID into a new Pending
	// one created at now: its history, inbox, consumed IDs, activity
	// tasks, request window and resume outcomes are deleted, its row is
	// reset to p (its step attempt carries over, so attempt numbers of
	// the ID never repeat), and start is its only message.
	Replace(p *backend.CreateInstanceParams, start *backend.Message, now time.Time) error
	// LockInstance locks instance id's row until the transaction ends and
	// returns its status and current execution, or an error wrapping
	// backend.ErrInstanceNotFound.
	LockInstance(id string) (status backend.Status, executionID string, err error)
	// MarkRewound sets instance id Running, clearing its failure,
	// suspension and completion time, and deletes its parked activity
	// tasks (deliveries still running from the failed run).
	MarkRewound(id string, now time.Time) error
	// Origin returns an instance's orchestration name and parent.
	Origin(id string) (name string, parent *backend.ParentRef, err error)
	// NewExecution switches instance id to execution can.NewExecutionID
	// with input can.Input: its history and consumed message IDs are
	// cleared, and its messages and activity tasks addressed to other
	// executions deleted (messages addressed to no execution stay).
	NewExecution(id string, can *backend.ContinueAsNew) error
	// QueuedControl returns the ID of a control message other than m of
	// m's event type in the inbox of m's instance ("" if none), holding
	// what it reads so that concurrent senders are serialized.
	QueuedControl(m *backend.Message) (string, error)
	// AppendHistory appends ev to instance id's history.
	AppendHistory(id string, ev *backend.Event) error
	// DeleteInstance deletes instance id's row (locked) with its history,
	// inbox, consumed IDs, activity tasks and request window.
	DeleteInstance(id string) error
	// DeleteWorkers deletes the heartbeat rows of the workers last heard
	// of before t and returns how many it deleted.
	DeleteWorkers(before time.Time) (int, error)
	// Finish clears what a terminal instance no longer needs: its inbox,
	// its request window, the activity tasks no delivery holds; the tasks
	// a delivery holds (claimed and not handed back) are parked (never
	// claimed again; the delivery may still complete them).
	Finish(id string) error
}

// Undeliverable reports whether err says that a message's instance cannot
// take it (it does not exist or has finished): a step drops such messages.
func Undeliverable(err error) bool {
	return errors.Is(err, backend.ErrInstanceNotFound) || errors.Is(err, backend.ErrInstanceFinished)
}

// StartMessage is the ExecutionStarted message of a new instance (or
// execution) created at now.
func StartMessage(p *backend.CreateInstanceParams, now time.Time) *backend.Message {
	return &backend.Message{
		ID:          backend.StartMessageID(p.ID, p.ExecutionID),
		InstanceID:  p.ID,
		ExecutionID: p.ExecutionID,
		VisibleAt:   p.StartAt,
		Event: &backend.Event{
			Type:        backend.EventExecutionStarted,
			Timestamp:   now,
			Name:        p.Name,
			ExecutionID: p.ExecutionID,
			Input:       p.Input,
			Parent:      p.Parent,
		},
	}
}

// CreationTime is the time an instance created with p is created at: p.Now,
// or else the transaction's time, in UTC.
func CreationTime(tx Tx, p *backend.CreateInstanceParams) (time.Time, error) {
	if !p.Now.IsZero() {
		return p.Now.UTC(), nil
	}
	now, err := tx.Now()
	return now.UTC(), err
}

// CreateInstance creates an instance in status Pending with its
// ExecutionStarted message. An existing terminal instance is replaced when
// replace is set; otherwise, and for a live one, it returns an error
// wrapping backend.ErrInstanceExists.
func CreateInstance(tx Tx, p *backend.CreateInstanceParams, replace bool) error {
	now, err := CreationTime(tx, p)
	if err != nil {
		return err
	}
	start := StartMessage(p, now)
	s, created, err := tx.CreateOrLock(p, start, now)
	switch {
	case err != nil || created:
		return err
	case !replace || !s.IsTerminal():
		return fmt.Errorf("instance %q (%s): %w", p.ID, s, backend.ErrInstanceExists)
	}
	return tx.Replace(p, start, now)
}

// StartChild creates a sub-orchestration (or entity), replacing a terminal
// instance of the same ID. If a live one exists it is left alone and its
// parent task, when there is one, gets a SubOrchestrationFailed message
// ("instance … already exists") instead; that message is dropped if the
// parent cannot take it.
func StartChild(tx Tx, c *backend.CreateInstanceParams) error {
	err := CreateInstance(tx, c, true)
	if !errors.Is(err, backend.ErrInstanceExists) {
		return err
	}
	par := c.Parent
	if par == nil {
		return nil
	}
	now, err := tx.Now()
	if err != nil {
		return err
	}
	return deliverOrDrop(tx, &backend.Message{
		ID:          backend.ResultMessageID(backend.TaskMessageID(par.InstanceID, par.ExecutionID, par.TaskID)),
		InstanceID:  par.InstanceID,
		ExecutionID: par.ExecutionID,
		Event: &backend.Event{
			Type:      backend.EventSubOrchestrationFailed,
			Timestamp: now,
			TaskID:    par.TaskID,
			Failure:   &backend.Failure{Message: "instance " + c.ID + " already exists"},
		},
	})
}

// Rewind turns Failed instance id back to Running (failure, suspension and
// completion time cleared; deliveries still running from the failed run
// discarded) and enqueues its ExecutionRewound message msgID, addressed to
// the instance's current execution. It returns an error wrapping
// backend.ErrInstanceNotFound, or backend.ErrInstanceNotFailed naming the
// status the instance has.
func Rewind(tx Tx, id, msgID, reason string) error {
	s, exec, err := tx.LockInstance(id)
	switch {
	case err != nil:
		return err
	case s != backend.StatusFailed:
		return fmt.Errorf("instance %q is %s: %w", id, s, backend.ErrInstanceNotFailed)
	}
	now, err := tx.Now()
	if err != nil {
		return err
	}
	if err := tx.MarkRewound(id, now); err != nil {
		return err
	}
	return tx.InsertMessage(&backend.Message{
		ID:          msgID,
		InstanceID:  id,
		ExecutionID: exec,
		Event:       &backend.Event{Type: backend.EventExecutionRewound, Timestamp: now, Reason: reason},
	})
}

// RewindChild rewinds a failed sub-orchestration that a parent's rewind
// reaches. A child that does not exist or is not Failed is left alone, and
// the parent's task gets a SubOrchestrationFailed message (ID
// c.FailMessageID, type RewindFailed) saying why; it is dropped if the
// parent cannot take it.
func RewindChild(tx Tx, c *backend.RewindChild) error {
	err := Rewind(tx, c.InstanceID, c.MessageID, c.Reason)
	var why string
	switch {
	case err == nil:
		return nil
	case errors.Is(err, backend.ErrInstanceNotFound):
		why = "it does not exist"
	case errors.Is(err, backend.ErrInstanceNotFailed):
		s, serr := tx.InstanceStatus(c.InstanceID)
		if serr != nil {
			return serr
		}
		why = "status " + string(s)
	default:
		return err
	}
	now, err := tx.Now()
	if err != nil {
		return err
	}
	return deliverOrDrop(tx, &backend.Message{
		ID:          c.FailMessageID,
		InstanceID:  c.Parent.InstanceID,
		ExecutionID: c.Parent.ExecutionID,
		Event: &backend.Event{
			Type:      backend.EventSubOrchestrationFailed,
			Timestamp: now,
			TaskID:    c.Parent.TaskID,
			Failure: &backend.Failure{
				Message:      "cannot rewind sub-orchestration " + c.InstanceID + ": " + why,
				Type:         "RewindFailed",
				NonRetryable: true,
			},
		},
	})
}

// ContinueAsNew starts a new execution of instance id: its history and
// consumed IDs are cleared, it switches execution and input, the messages
// and tasks of other executions are dropped, and the new execution's
// ExecutionStarted message is enqueued (with the instance's name and
// parent).
func ContinueAsNew(tx Tx, id string, can *backend.ContinueAsNew) error {
	name, parent, err := tx.Origin(id)
	if err != nil {
		return err
	}
	if err := tx.NewExecution(id, can); err != nil {
		return err
	}
	now, err := tx.Now()
	if err != nil {
		return err
	}
	exec := can.NewExecutionID
	return tx.InsertMessage(&backend.Message{
		ID:          backend.StartMessageID(id, exec),
		InstanceID:  id,
		ExecutionID: exec,
		Event: &backend.Event{
			Type:        backend.EventExecutionStarted,
			Timestamp:   now,
			Name:        name,
			ExecutionID: exec,
			Input:       can.Input,
			Parent:      parent,
		},
	})
}

// StepRelations applies the effects of step p that reach beyond its own
// instance's row, inbox, history and tasks, in this order: the children it
// starts (first: a message of the step may address an instance it starts,
// an entity created by its first signal), its messages (dropped for
// instances that do not exist or have finished), the children its rewind
// reaches, and then continue-as-new or, for a step that ends its instance,
// the instance's clean-up. deliver delivers the step's i-th message (a
// backend may have encoded it before the transaction).
func StepRelations(tx Tx, p *backend.CompleteOrchestrationStepParams, deliver func(i int, m *backend.Message) error) error {
	for _, c := range p.StartInstances {
		if err := StartChild(tx, c); err != nil {
			return err
		}
	}
	for i, m := range p.Messages {
		if err := deliver(i, m); err != nil && !Undeliverable(err) {
			return err
		}
	}
	for _, c := range p.RewindInstances {
		if err := RewindChild(tx, c); err != nil {
			return err
		}
	}
	switch {
	case p.ContinueAsNew != nil:
		return ContinueAsNew(tx, p.InstanceID, p.ContinueAsNew)
	case p.Status.IsTerminal():
		return tx.Finish(p.InstanceID)
	}
	return nil
}

// deliverOrDrop delivers m, dropping it if its instance cannot take it.
func deliverOrDrop(tx Tx, m *backend.Message) error {
	if err := tx.Deliver(m); err != nil && !Undeliverable(err) {
		return err
	}
	return nil
}

// PurgeInstance deletes terminal instance id with everything it owns. It
// returns an error wrapping backend.ErrInstanceNotFound, or
// backend.ErrInstanceNotFinished for a live instance.
func PurgeInstance(tx Tx, id string) error {
	s, _, err := tx.LockInstance(id)
	switch {
	case err != nil:
		return err
	case !s.IsTerminal():
		return fmt.Errorf("instance %q is %s: %w", id, s, backend.ErrInstanceNotFinished)
	}
	return tx.DeleteInstance(id)
}

// PurgeStatuses checks a purge's filter and returns the terminal statuses
// it matches (none, for a filter naming only live statuses: nothing to
// purge).
func PurgeStatuses(p *backend.PurgeInstancesParams) ([]backend.Status, error) {
	if p == nil || (len(p.Statuses) == 0 && p.Name == "" && p.CreatedFrom.IsZero() && p.CreatedTo.IsZero()) {
		return nil, errors.New("empty filter: set at least one of Statuses, Name, CreatedFrom, CreatedTo")
	}
	if err := ValidStatuses(p.Statuses); err != nil {
		return nil, err
	}
	var terminal []backend.Status
	for _, s := range []backend.Status{backend.StatusCompleted, backend.StatusFailed, backend.StatusTerminated} {
		if len(p.Statuses) == 0 || slices.Contains(p.Statuses, s) {
			terminal = append(terminal, s)
		}
	}
	return terminal, nil
}

// KeepLate keeps the result of a delivery that completed after its
// instance finished (a parked task): a TaskCompleted or TaskFailed result
// goes to the instance's history as a LateResult event naming activity
// name; other results are dropped, and so is everything when the instance
// is gone. It returns the status the instance ended with ("" if gone).
func KeepLate(tx Tx, instanceID, name string, result *backend.Event) (backend.Status, error) {
	s, err := tx.InstanceStatus(instanceID)
	if errors.Is(err, backend.ErrInstanceNotFound) {
		return "", nil // gone with its history: nowhere to keep it
	}
	if err != nil || !result.Type.KeptLate() {
		return s, err
	}
	return s, tx.AppendHistory(instanceID, backend.LateResult(result, name, s))
}

// LateError is what CompleteActivity returns after KeepLate: the
// completion took effect, but instance instanceID had ended (status
// ended), so no code will process it.
func LateError(taskID, instanceID string, ended backend.Status) error {
	return fmt.Errorf("activity task %q: instance %q is %s; the result is kept in its history: %w",
		taskID, instanceID, ended, backend.ErrInstanceFinished)
}

// Enqueue delivers m from outside a step (backend.Backend.EnqueueMessage).
// An exclusive message is refused with an error wrapping
// backend.ErrMessageQueued, and nothing is enqueued, while the inbox holds
// another message of its event type.
func Enqueue(tx Tx, m *backend.Message) error {
	if m.Exclusive {
		other, err := tx.QueuedControl(m)
		if err != nil {
			return err
		}
		if other != "" {
			return fmt.Errorf("instance %q: %s %q is queued: %w", m.InstanceID, m.Event.Type, other, backend.ErrMessageQueued)
		}
	}
	return tx.Deliver(m)
}

// Finishes reports whether the step p ends its instance (completes, fails
// or terminates it; a continue-as-new does not): after it commits, the
// backend fires the instance's finish watches (backend.FinishNotifier).
func Finishes(p *backend.CompleteOrchestrationStepParams) bool {
	return p.ContinueAsNew == nil && p.Status.IsTerminal()
}
