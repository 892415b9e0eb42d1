package duro

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/durohq/duro/internal/replay"
)

// EntityID names a durable entity: its registered name and a key, such as
// {Name: "counter", Key: "page-views"}. Its string form is "@name@key".
type EntityID struct {
	Name string
	Key  string
}

// String returns "@name@key", the ID of the entity's instance.
func (e EntityID) String() string { return "@" + e.Name + "@" + e.Key }

// ParseEntityID parses the "@name@key" form.
func ParseEntityID(s string) (EntityID, error) {
	name := replay.EntityName(s)
	if name == "" {
		return EntityID{}, fmt.Errorf("duro: %q is not an entity ID (want @name@key)", s)
	}
	return EntityID{Name: name, Key: s[len(name)+2:]}, nil
}

func (e EntityID) validate() error {
	switch {
	case e.Name == "" || strings.Contains(e.Name, "@"):
		return fmt.Errorf("duro: entity name %q must be non-empty and must not contain '@'", e.Name)
	case e.Key == "":
		return fmt.Errorf("duro: entity %q: empty key", e.Name)
	}
	return validateInstanceID(e.String())
}

// EntityContext is what an entity operation receives: a context.Context
// that is cancelled when the worker stops, the operation's identity and the
// attempt number of its batch, and ways to send messages that commit
// together with the entity's new state.
type EntityContext interface {
	context.Context
	// EntityID is the entity the operation runs on.
	EntityID() EntityID
	// Operation is the operation's name.
	Operation() string
	// Attempt is the delivery number of the batch of operations this one
	// belongs to, starting at 1 (A1). A batch is redelivered when a worker
	// died before committing it, or handed it back (a worker without the
	// entity, a worker that stopped): above 1, this operation may have run
	// before (its effects on the state were not committed, but any I/O it
	// did may have happened) — MayBeDuplicate says whether it may have.
	Attempt() int
	// IsFirstAttempt reports Attempt() == 1.
	IsFirstAttempt() bool
	// MayBeDuplicate reports whether an earlier delivery of the batch may
	// have run this operation. Before the first at-most-once operation of
	// a batch runs, the batch marks itself started, durably; for an
	// at-most-once operation only such marked deliveries count. For an
	// at-least-once operation any earlier delivery of the batch counts.
	// An operation an operator approved to run again reports true.
	MayBeDuplicate() bool
	// SignalEntity sends an operation to another entity (or this one). It is
	// sent when the batch commits, with an ID derived from this request, so
	// a re-run batch does not signal twice.
	SignalEntity(id EntityID, op string, input any) error
	// StartOrchestration starts an orchestration when the batch commits and
	// returns its instance ID (opts.InstanceID, or one derived from this
	// request).
	StartOrchestration(name string, input any, opts ...StartOptions) (string, error)
	// DeleteState removes the entity's state when the operation succeeds.
	DeleteState()
	// Logger returns the worker's logger with the entity's attributes.
	Logger() *slog.Logger
}

// ErrEntityQueueFull: an entity held in a critical section refused a
// request because WorkerOptions.EntityQueueLimit requests already waited
// for its lock. The error is an *EntityQueueFullError.
var ErrEntityQueueFull = errors.New("entity queue full")

// FailureTypeEntityQueueFull is the failure type of a request an entity
// refused because its queue was full.
const FailureTypeEntityQueueFull = "EntityQueueFull"

// EntityQueueFullError is the cause of the *TaskError a call or a
// LockEntities of an orchestration gets when the entity refused it because
// its queue was full (errors.Is(err, ErrEntityQueueFull)). The request was
// not run; nothing else was lost. A signal refused the same way is dropped,
// logged and counted (WorkerStats.EntityRequestsRejected, EntityState.Rejected).
type EntityQueueFullError struct {
	// Entity is the entity's ID ("@name@key").
	Entity string `json:"entity"`
	// LockedBy is the orchestration instance holding the entity's lock.
	LockedBy string `json:"lockedBy"`
	// Limit is the queue limit that was reached.
	Limit int `json:"limit"`
}

// Error implements error.
func (e *EntityQueueFullError) Error() string {
	return fmt.Sprintf("entity %s refused the request: %d requests already wait for its lock, held by %s (WorkerOptions.EntityQueueLimit)",
		e.Entity, e.Limit, e.LockedBy)
}

// Is makes errors.Is(err, ErrEntityQueueFull) true.
func (e *EntityQueueFullError) Is(target error) bool { return target == ErrEntityQueueFull }

// OperationOptions configure an entity operation at registration.
type OperationOptions struct {
	// Guarantee is AtLeastOnce (default) or AtMostOnce. A batch marks
	// itself started, durably, before its first AtMostOnce operation runs;
	// an AtMostOnce operation in a batch delivered again after such a mark
	// is not run: the OnDuplicate policy applies instead. A batch handed
	// back before (by a worker without the entity, or a stopping one)
	// does not count.
	Guarantee Guarantee
	// OnDuplicate is OnDuplicateFail (the default: a caller gets a
	// *PossibleDuplicateError; a signal is dropped and logged),
	// OnDuplicateReconcile (Reconcile decides; an error from it fails the
	// operation) or OnDuplicateSuspend (the entity is suspended with the
	// request as a pending decision, task ID 0, until Client.Resume decides:
	// RetryTask runs the operation, CompleteTask answers the caller with a
	// result, FailTask with an error; later requests wait meanwhile).
	OnDuplicate OnDuplicate
	// Reconcile is called for OnDuplicateReconcile with the operation's
	// input; its ActivityContext's TaskID is -1.
	Reconcile ReconcileFunc
}

// entityOp is an operation with its payloads still encoded. It returns the
// new state (nil with exists false when deleted) and the result.
type entityOp struct {
	fn   func(ctx *entityContext, p payloads, state []byte, input []byte) (newState []byte, exists bool, result any, err error)
	opts OperationOptions
}

type registeredEntity struct {
	stateType reflect.Type
	ops       map[string]*entityOp
}

// RegisterEntityOperation registers the operation op of entity name. fn gets
// a pointer to the entity's state (the zero S when the entity has none yet)
// and may change it; when fn returns nil error the changed state is saved,
// together with the messages the operation sent, in the same commit as the
// rest of its batch. When fn fails (or panics) its changes are discarded and
// the caller receives the error. Every operation of one entity must use the
// same state type S. It panics on empty names, a duplicate operation or a
// mismatched state type.
func RegisterEntityOperation[S, I, O any](r *Registry, name, op string, fn func(ctx EntityContext, state *S, input I) (O, error), opts ...OperationOptions) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := (EntityID{Name: name, Key: "k"}).validate(); err != nil {
		panic(err.Error())
	}
	if op == "" || strings.HasPrefix(op, "@") {
		panic(fmt.Sprintf("duro: entity %q: operation name %q must be non-empty and must not start with '@'", name, op))
	}
	if len(opts) > 1 {
		panic("duro: RegisterEntityOperation takes at most one OperationOptions")
	}
	st := reflect.TypeFor[S]()
	e := r.entities[name]
	if e == nil {
		e = &registeredEntity{stateType: st, ops: map[string]*entityOp{}}
		r.entities[name] = e
	}
	if e.stateType != st {
		panic(fmt.Sprintf("duro: entity %q: operation %q uses state %v, others use %v", name, op, st, e.stateType))
	}
	if _, dup := e.ops[op]; dup {
		panic(fmt.Sprintf("duro: entity %q: operation %q registered twice", name, op))
	}
	eo := &entityOp{fn: func(ctx *entityContext, p payloads, state []byte, input []byte) ([]byte, bool, any, error) {
		var s S
		if err := p.decodeAs(func() string { return fmt.Sprintf("state of entity %q", name) }, state, &s); err != nil {
			return nil, false, nil, err
		}
		var in I
		if err := p.decodeAs(func() string { return fmt.Sprintf("input of operation %q of entity %q", op, name) }, input, &in); err != nil {
			return nil, false, nil, err
		}
		out, err := fn(ctx, &s, in)
		if err != nil {
			return nil, false, nil, err
		}
		if ctx.deleted {
			return nil, false, out, nil
		}
		b, err := p.encodeAs(func() string { return fmt.Sprintf("state of entity %q", name) }, s)
		if err != nil {
			return nil, false, nil, err
		}
		return b, true, out, nil
	}}
	if len(opts) == 1 {
		eo.opts = opts[0]
		eo.opts.OnDuplicate, eo.opts.Guarantee = normalizeDuplicate(eo.opts.Guarantee, eo.opts.OnDuplicate)
		ao := ActivityOptions{Guarantee: eo.opts.Guarantee, OnDuplicate: eo.opts.OnDuplicate}
		if err := ao.validate(); err != nil {
			panic(fmt.Sprintf("duro: entity %q operation %q: %v", name, op, err))
		}
	}
	e.ops[op] = eo
}

func normalizeDuplicate(g Guarantee, on OnDuplicate) (OnDuplicate, Guarantee) {
	if g == GuaranteeUnset {
		g = AtLeastOnce
	}
	if g == AtMostOnce && on == "" {
		on = OnDuplicateFail
	}
	return on, g
}

func (r *Registry) entity(name string) (*registeredEntity, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entities[name]
	return e, ok
}

// entityContext implements EntityContext for one operation.
type entityContext struct {
	context.Context
	id       EntityID
	op       string
	attempt  int
	deleted  bool
	logger   *slog.Logger
	p        payloads
	reqID    string
	now      time.Time
	signals  []outSignal
	starts   []outStart
	sequence int
	// maybeDup is MayBeDuplicate's answer.
	maybeDup bool
}

type outSignal struct {
	id    EntityID
	op    string
	input []byte
}

type outStart struct {
	id, name string
	input    []byte
}

func (c *entityContext) EntityID() EntityID   { return c.id }
func (c *entityContext) Operation() string    { return c.op }
func (c *entityContext) Attempt() int         { return c.attempt }
func (c *entityContext) IsFirstAttempt() bool { return c.attempt == 1 }
func (c *entityContext) MayBeDuplicate() bool { return c.maybeDup }
func (c *entityContext) DeleteState()         { c.deleted = true }
func (c *entityContext) Logger() *slog.Logger { return c.logger }

func (c *entityContext) SignalEntity(id EntityID, op string, input any) error {
	if err := id.validate(); err != nil {
		return err
	}
	b, err := c.p.encode(fmt.Sprintf("input of operation %q of entity %s", op, id), input)
	if err != nil {
		return err
	}
	c.signals = append(c.signals, outSignal{id: id, op: op, input: b})
	return nil
}

func (c *entityContext) StartOrchestration(name string, input any, opts ...StartOptions) (string, error) {
	if name == "" {
		return "", errors.New("duro: StartOrchestration: empty orchestration name")
	}
	var o StartOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	b, err := c.p.encode(fmt.Sprintf("input of orchestration %q", name), input)
	if err != nil {
		return "", err
	}
	c.sequence++
	id := o.InstanceID
	if id == "" {
		id = fmt.Sprintf("%s:%s:%d", c.id, c.reqID, c.sequence)
	}
	if err := validateInstanceID(id); err != nil {
		return "", err
	}
	c.starts = append(c.starts, outStart{id: id, name: name, input: b})
	return id, nil
}
