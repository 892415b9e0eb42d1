package duro

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/replay"
)

// OrchestrationContext is what orchestration code receives. It is the only
// way orchestration code may wait, read the time, make IDs or reach the
// outside world, because the code is re-run from history (replayed) on every
// step and must take the same path each time. It is not a context.Context on
// purpose: nothing that blocks on real I/O belongs in an orchestration.
type OrchestrationContext struct {
	c   *replay.Context
	p   payloads
	reg *Registry
	w   *Worker // nil outside a worker
}

// InstanceID returns the orchestration instance's ID.
func (ctx *OrchestrationContext) InstanceID() string { return ctx.c.InstanceID() }

// ExecutionID returns the ID of the current execution (a new one after each
// ContinueAsNew).
func (ctx *OrchestrationContext) ExecutionID() string { return ctx.c.ExecutionID() }

// Name returns the orchestration's registered name.
func (ctx *OrchestrationContext) Name() string { return ctx.c.Name() }

// Now returns the deterministic current time: when the current step began,
// the same on every replay. Use it instead of time.Now.
func (ctx *OrchestrationContext) Now() time.Time { return ctx.c.Now() }

// IsReplaying reports whether the code is re-running a part of the
// orchestration that history has already recorded.
func (ctx *OrchestrationContext) IsReplaying() bool { return ctx.c.IsReplaying() }

// NewUUID returns a UUID that is the same on every replay of this point.
func (ctx *OrchestrationContext) NewUUID() uuid.UUID { return ctx.c.NewUUID() }

// Logger returns a logger that stays silent while the code replays, so each
// line is written once.
func (ctx *OrchestrationContext) Logger() *slog.Logger { return ctx.c.Logger() }

// Patched reports whether the code takes the new path of a change to it,
// named by id (unique within the orchestration), so that instances
// started before the change keep the path they took:
//
//	if ctx.Patched("fraud-check") {
//		// the new code
//	} else {
//		// the code as it was
//	}
//
// Code running a step for the first time answers true and records the
// answer (an EventPatched marker) at this point of the history. Replay
// gives the recorded answer: true where the step recorded the marker,
// false where the step ran here without one, which means its code
// predates the change. The first answer holds for the rest of the
// execution, so later calls with id agree with it. A marker in history
// where the code does not ask Patched(id) fails the instance with a
// NonDeterminism failure. See docs/versioning.md for the life of a patch:
// Patched, then DeprecatePatch once no instance of the old code runs, then
// neither.
func (ctx *OrchestrationContext) Patched(id string) bool {
	checkPatchID(id)
	return ctx.c.Patched(id)
}

// DeprecatePatch replaces Patched(id) once the old path is gone from the
// code: no running instance took it any more. The code then always takes
// the new path. It still records the marker, flagged deprecated, so that
// workers still running the code with Patched(id) (a rolling deployment)
// replay the instance on the new path, and so that code that no longer
// mentions id at all replays it too.
func (ctx *OrchestrationContext) DeprecatePatch(id string) {
	checkPatchID(id)
	ctx.c.DeprecatePatch(id)
}

func checkPatchID(id string) {
	if id == "" {
		panic("duro: a patch needs an ID")
	}
}

// SetCustomStatus publishes a value for observers (Client.Get shows it). It is
// saved when the step commits.
func (ctx *OrchestrationContext) SetCustomStatus(v any) error {
	b, err := ctx.p.encode("custom status", v)
	if err != nil {
		return err
	}
	ctx.c.SetCustomStatus(b)
	return nil
}

// CallOptions override, for one call, the options an activity or
// sub-orchestration was registered with.
type CallOptions struct {
	// RetryPolicy replaces the registered retry policy.
	RetryPolicy *RetryPolicy
	// LeaseDuration replaces the registered lease duration (activities).
	LeaseDuration time.Duration
	// InstanceID names a sub-orchestration instance; empty means a
	// deterministic ID derived from this instance and the task.
	InstanceID string
	// Guarantee strengthens the registered guarantee (activities): the
	// guarantee in force is the stronger of the call's and that of the
	// registration of the worker that executes the task, so AtMostOnce here
	// holds whichever worker runs it, and AtLeastOnce cannot weaken an
	// activity registered AtMostOnce there.
	Guarantee Guarantee
	// OnDuplicate chooses the AtMostOnce policy (activities), unless the
	// registration of the worker that executes the task names one, which
	// then decides. It may be given without Guarantee: it applies when the
	// executing worker's registration makes the activity AtMostOnce.
	OnDuplicate OnDuplicate
	// MaxDeliveries replaces the registered delivery limit (activities).
	MaxDeliveries int
}

func oneCallOptions(opts []CallOptions) CallOptions {
	switch len(opts) {
	case 0:
		return CallOptions{}
	case 1:
		return opts[0]
	}
	panic("duro: at most one CallOptions per call")
}

// CallActivity schedules the activity name with input and returns its Task.
// At most one CallOptions may be given.
func (ctx *OrchestrationContext) CallActivity(name string, input any, opts ...CallOptions) *Task {
	o := oneCallOptions(opts)
	t := &Task{ctx: ctx, kind: KindActivity, name: name}
	in, err := ctx.p.encodeAs(func() string { return fmt.Sprintf("input of activity %q", name) }, input)
	if err != nil {
		t.f = failedFuture(err)
		return t
	}
	// The options recorded with the call come from this worker's
	// registration and the call. The worker that executes the task may
	// register it differently (a split fleet, a rolling deploy): it then
	// enforces the stronger guarantee (activityRun.inForce).
	var registered *ActivityOptions
	if ctx.reg != nil {
		if ra, ok := ctx.reg.activity(name); ok {
			registered = &ra.opts
		} else if ctx.w != nil {
			ctx.w.noteUnregistered(name)
		}
	}
	eff, err := effectiveOptions(registered, o)
	if err != nil {
		t.f = failedFuture(fmt.Errorf("duro: options of activity %q: %w", name, err))
		return t
	}
	bo := backend.ActivityOptions{
		LeaseDuration: eff.LeaseDuration, AtMostOnce: eff.Guarantee == AtMostOnce,
		OnDuplicate: string(eff.OnDuplicate), MaxDeliveries: eff.MaxDeliveries,
	}
	if eff.RetryPolicy == nil {
		t.f = ctx.c.ScheduleActivity(name, in, bo)
		return t
	}
	schedule := func() *replay.Future { return ctx.c.ScheduleActivity(name, in, bo) }
	t.f = ctx.withRetry(eff.RetryPolicy, KindActivity, name, schedule)
	return t
}

// CallSubOrchestration starts the orchestration name as a child instance and
// returns a Task that completes with the child's output. At most one
// CallOptions may be given.
func (ctx *OrchestrationContext) CallSubOrchestration(name string, input any, opts ...CallOptions) *Task {
	o := oneCallOptions(opts)
	t := &Task{ctx: ctx, kind: KindSubOrchestration, name: name}
	in, err := ctx.p.encodeAs(func() string { return fmt.Sprintf("input of orchestration %q", name) }, input)
	if err != nil {
		t.f = failedFuture(err)
		return t
	}
	schedule := func() *replay.Future { return ctx.c.CallSubOrchestration(name, o.InstanceID, in) }
	t.f = ctx.withRetry(o.RetryPolicy, KindSubOrchestration, name, schedule)
	return t
}

// CreateTimer returns a Task that completes after d, measured from Now. The
// timer is durable: it fires even if every worker restarts meanwhile.
func (ctx *OrchestrationContext) CreateTimer(d time.Duration) *Task {
	return &Task{ctx: ctx, kind: KindTimer, name: "timer", f: ctx.c.CreateTimer(ctx.c.Now().Add(d))}
}

// Sleep waits for a durable timer of d.
func (ctx *OrchestrationContext) Sleep(d time.Duration) error {
	return ctx.CreateTimer(d).Await(nil)
}

// WaitForEvent returns a Task that completes with the data of the next
// external event called name (raised with Client.RaiseEvent or by another
// orchestration). Events that arrived before the wait are kept, in order. If
// timeout > 0 and no event arrives in time, Await returns ErrTimeout; a
// negative timeout waits forever; zero takes only an event already received.
func (ctx *OrchestrationContext) WaitForEvent(name string, timeout time.Duration) *Task {
	return &Task{ctx: ctx, kind: KindEvent, name: name, f: ctx.c.WaitForEvent(name, timeout)}
}

// RaiseEvent sends an external event to another instance. Delivery is part
// of this step's commit; an event for an instance that does not exist (or has
// finished) is dropped.
func (ctx *OrchestrationContext) RaiseEvent(instanceID, name string, data any) error {
	b, err := ctx.p.encodeAs(func() string { return fmt.Sprintf("data of event %q", name) }, data)
	if err != nil {
		return err
	}
	ctx.c.SendEvent(instanceID, name, b)
	return nil
}

// ContinueAsNew returns an error that, returned by the orchestration function,
// restarts the instance with input and an empty history. Use it for
// long-running loops so history stays short. Events not yet received carry
// over to the new execution.
func (ctx *OrchestrationContext) ContinueAsNew(input any) error {
	b, err := ctx.p.encode("continue-as-new input", input)
	if err != nil {
		return err
	}
	ctx.c.ContinueAsNew(b)
	return errContinueAsNew
}

var errContinueAsNew = errors.New("duro: continued as new")

// AwaitAll waits until every task has completed and returns the first error
// among them in argument order (nil if all succeeded). Results are read with
// each task's Await afterwards.
func (ctx *OrchestrationContext) AwaitAll(tasks ...*Task) error {
	// One task at a time: each wait checks a single future per event, so a
	// fan-out of n tasks costs O(n) checks in all rather than O(n) per event.
	for _, t := range tasks {
		if !t.f.Done() {
			ctx.c.AwaitFuture(t.f)
		}
	}
	for _, t := range tasks {
		if err := t.Await(nil); err != nil {
			return err
		}
	}
	return nil
}

// AwaitAny waits until at least one task has completed and returns the index
// of the first completed one in argument order, with that task's error.
func (ctx *OrchestrationContext) AwaitAny(tasks ...*Task) (int, error) {
	if len(tasks) == 0 {
		return -1, errors.New("duro: AwaitAny of no tasks")
	}
	idx := -1
	ctx.c.Await(func() bool {
		for i, t := range tasks {
			if t.f.Done() {
				idx = i
				return true
			}
		}
		return false
	})
	return idx, tasks[idx].Await(nil)
}

// Task is the pending result of an activity, sub-orchestration, timer or
// event wait.
type Task struct {
	ctx  *OrchestrationContext
	f    *replay.Future
	kind TaskKind
	name string
}

// Done reports whether the task has completed, without waiting.
func (t *Task) Done() bool { return t.f.Done() }

// Await waits for the task and decodes its result into out (a pointer, or
// nil to ignore the result). A failed activity or sub-orchestration returns a
// *TaskError; an event wait that timed out returns ErrTimeout.
func (t *Task) Await(out any) error {
	if !t.f.Done() {
		t.ctx.c.AwaitFuture(t.f)
	}
	if err := t.f.Err(); err != nil {
		return err
	}
	if f := t.f.Failure(); f != nil {
		return newTaskError(t.kind, t.name, t.f.TaskID, f)
	}
	return t.ctx.p.decodeAs(func() string { return fmt.Sprintf("result of %s %q", t.kind, t.name) }, t.f.Value(), out)
}

func failedFuture(err error) *replay.Future {
	f := replay.NewFuture()
	f.FailErr(err)
	return f
}

// SignalEntity sends the operation op with input to an entity, one way. The
// signal is sent when this step commits, with a deterministic ID, and the
// entity processes it exactly once (see docs/guarantees.md). The entity is
// created if it does not exist.
func (ctx *OrchestrationContext) SignalEntity(id EntityID, op string, input any) error {
	if err := id.validate(); err != nil {
		return err
	}
	b, err := ctx.p.encodeAs(func() string { return fmt.Sprintf("input of operation %q of entity %s", op, id) }, input)
	if err != nil {
		return err
	}
	ctx.c.SignalEntity(id.String(), op, b)
	return nil
}

// CallEntity calls the operation op of an entity and returns a Task that
// completes with the operation's result (a failed operation is a *TaskError
// of kind KindEntity).
func (ctx *OrchestrationContext) CallEntity(id EntityID, op string, input any) *Task {
	t := &Task{ctx: ctx, kind: KindEntity, name: id.String() + ":" + op}
	if err := id.validate(); err != nil {
		t.f = failedFuture(err)
		return t
	}
	b, err := ctx.p.encodeAs(func() string { return fmt.Sprintf("input of operation %q of entity %s", op, id) }, input)
	if err != nil {
		t.f = failedFuture(err)
		return t
	}
	t.f = ctx.c.CallEntity(id.String(), op, b)
	return t
}

// CriticalSection is a set of entities locked by one orchestration; while it
// is held, only that orchestration's requests reach them. Release it with
// Unlock; it is released anyway when the orchestration completes, fails, is
// terminated or continues as new.
type CriticalSection struct {
	ctx      *OrchestrationContext
	taskID   int
	Entities []EntityID
}

// LockEntities locks the entities for a critical section and waits until
// every lock is held. Locks are taken one entity at a time in a fixed (sorted)
// order, so two orchestrations that lock overlapping sets in any order cannot
// deadlock.
func (ctx *OrchestrationContext) LockEntities(ids ...EntityID) (*CriticalSection, error) {
	if len(ids) == 0 {
		return nil, errors.New("duro: LockEntities needs at least one entity")
	}
	strs := make([]string, len(ids))
	for i, id := range ids {
		if err := id.validate(); err != nil {
			return nil, err
		}
		strs[i] = id.String()
	}
	f, sorted := ctx.c.LockEntities(strs)
	cs := &CriticalSection{ctx: ctx, taskID: f.TaskID}
	for _, s := range sorted {
		e, _ := ParseEntityID(s)
		cs.Entities = append(cs.Entities, e)
	}
	t := &Task{ctx: ctx, kind: KindEntity, name: "lock", f: f}
	if err := t.Await(nil); err != nil {
		return nil, err
	}
	return cs, nil
}

// Unlock releases the critical section's locks (once; later calls do
// nothing).
func (cs *CriticalSection) Unlock() { cs.ctx.c.UnlockEntities(cs.taskID) }
