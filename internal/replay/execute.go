// Package replay is duro's orchestration engine: it rebuilds an orchestration's
// state by re-running its code against the recorded history, feeds it the new
// messages of one step, and turns what the code asked for into the atomic
// effects of that step (backend.CompleteOrchestrationStepParams).
package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/durohq/duro/backend"
)

// Orchestrator is orchestration code in its engine form: raw payloads in and
// out. The SDK adapts typed user functions to it.
type Orchestrator func(c *Context, input []byte) ([]byte, error)

// Params are the inputs of Execute.
type Params struct {
	WorkItem *backend.OrchestrationWorkItem
	// Lookup finds the code of an orchestration by name.
	Lookup func(name string) (Orchestrator, bool)
	// Now is the step's deterministic time, recorded in history.
	Now time.Time
	// Logger receives engine logs; the orchestration's own logger derives from it.
	Logger *slog.Logger
	// FailureFromError converts an error returned by orchestration code.
	FailureFromError func(err error) *backend.Failure
}

// Failure types the engine records itself.
const (
	FailureTypeNonDeterminism = "NonDeterminism"
	FailureTypePanic          = "Panic"
	FailureTypeTerminated     = "Terminated"
)

// ErrNotRegistered is returned by Execute when the step needs the code of an
// orchestration that Lookup does not know. The worker hands the step back so
// that another worker (or a later deployment) can run it.
var ErrNotRegistered = errors.New("orchestration not registered")

// Execute runs one orchestration step and returns its effects. It never
// panics on bad histories or user code: such problems become a Failed status.
// It returns an error wrapping ErrNotRegistered, and no effects, when the
// step needs code that Lookup does not have.
func Execute(p *Params) (*backend.CompleteOrchestrationStepParams, error) {
	out, _, _, err := execute(p, nil, false)
	return out, err
}

// execute runs one step. prev, if not nil, is a live executor of the
// instance from an earlier step: it is continued when it sits exactly at
// the work item's history (see Executor), and stopped otherwise. With keep,
// an executor the step leaves live and able to go on is returned unstopped
// (its Committed or Close must be called); otherwise every coroutine is
// stopped before execute returns.
func execute(p *Params, prev *Executor, keep bool) (out *backend.CompleteOrchestrationStepParams, next *Executor, how StickyOutcome, err error) {
	how = StickyNone
	if prev != nil {
		how = StickyBypassed
	}
	// prev is stopped unless the step continues it, also when the engine
	// panics before it decides (Close is idempotent).
	defer func() {
		if how != StickyHit {
			prev.Close()
		}
	}()
	wi := p.WorkItem
	inst := wi.Instance
	now := p.Now.UTC()
	out = newStepParams(wi, now)
	logger := p.Logger
	if logger == nil {
		logger = discardLogger
	}
	if endedStep(out, wi, now) {
		return out, nil, how, nil
	}
	pl := planStep(wi, now, logger.Warn)
	out.ConsumedMessageIDs = pl.consumed
	out.ResumeOutcomes = KeepResumeOutcomes(inst.ResumeOutcomes, pl.outcomes)

	fn, ok := p.Lookup(inst.Name)
	if !ok {
		return nil, nil, how, fmt.Errorf("%w: %q", ErrNotRegistered, inst.Name)
	}
	stepEvents := make([]*backend.Event, 0, 1+len(pl.events))
	stepEvents = append(stepEvents, &backend.Event{Type: backend.EventOrchestratorStarted, Timestamp: now})
	stepEvents = append(stepEvents, pl.events...)

	var c *Context
	var r *run
	if prev != nil {
		switch {
		case !prev.matches(wi):
			how = StickyStale
		case prev.continues(wi, pl, stepEvents):
			how = StickyHit
			c, r = prev.c, prev.r
			r.fn, r.failureFromError = fn, p.FailureFromError
		}
		if how != StickyHit {
			prev.Close() // before the replay, which starts another goroutine
		}
	}
	replay := c == nil
	if replay {
		c, r = newRun(p, wi, fn, stepEvents, logger)
	}
	// The coroutine is stopped when the step ends, unless an executor
	// keeps it; also when the engine panics.
	defer func() {
		if next == nil {
			c.co.stop()
		}
	}()
	if replay {
		r.replay(wi.History)
	}

	// The step records its events and, at the end, those of new actions.
	out.NewEvents = make([]*backend.Event, 0, len(stepEvents)+2)
	if c.nondeterminism == nil {
		for i, ev := range stepEvents {
			r.pos = len(wi.History) + i
			control := ev.Type.IsControl()
			if c.co.done && !control {
				continue
			}
			if r.apply(ev, true) || control {
				out.NewEvents = append(out.NewEvents, ev)
			}
			if c.nondeterminism != nil {
				break
			}
		}
	}
	r.finish(out, inst, pl)
	if keep && r.stays(out) {
		next = &Executor{c: c, r: r, id: inst.ID, name: inst.Name, execID: inst.ExecutionID, createdAt: inst.CreatedAt,
			attempt: wi.Attempt, histLen: len(wi.History), pending: out.NewEvents}
		if len(wi.History) > 0 {
			next.first = wi.History[0]
		} else if len(out.NewEvents) > 0 {
			next.first = out.NewEvents[0]
		}
		return out, next, how, nil
	}
	return out, nil, how, nil
}

// newRun prepares the replay of wi: a Context for the code, not started.
func newRun(p *Params, wi *backend.OrchestrationWorkItem, fn Orchestrator, stepEvents []*backend.Event, logger *slog.Logger) (*Context, *run) {
	inst := wi.Instance
	// Replay re-creates the actions history recorded, usually with a few
	// new ones.
	nActions := 1
	patches := false
	size := int64(executorBaseSize)
	for _, ev := range wi.History {
		if isScheduling(ev.Type) {
			nActions++
		}
		patches = patches || ev.Type == backend.EventPatched
		size += eventSize(ev)
	}
	c := &Context{
		instanceID: inst.ID, executionID: inst.ExecutionID, name: inst.Name, parent: inst.Parent,
		now: inst.CreatedAt, actions: make(map[int]*action, nActions), order: make([]*action, 0, nActions),
		customStatus: inst.CustomStatus, baseLogger: logger,
	}
	if patches {
		c.indexPatches(wi.History)
	}
	c.co.init()
	r := &run{c: c, failureFromError: p.FailureFromError, fn: fn, size: size}
	if hasRewind(wi.History) || hasRewind(stepEvents) {
		r.rules = scanRewinds(append(slices.Clip(wi.History), stepEvents...))
	}
	return c, r
}

// replay builds the orchestration's state by running its code from the
// start against history.
func (r *run) replay(history []*backend.Event) {
	c := r.c
	c.replaying = true
	for i, ev := range history {
		r.pos = i
		r.apply(ev, false)
		if c.nondeterminism != nil {
			break
		}
	}
	c.replaying = false
	if c.nondeterminism == nil {
		r.checkReplayed()
	}
}

var discardLogger = slog.New(slog.DiscardHandler)

// run holds the per-step processing state.
type run struct {
	c                *Context
	failureFromError func(err error) *backend.Failure
	fn               Orchestrator
	started          bool
	// pos is the position of the event being applied, in history followed
	// by the step's events.
	pos   int
	rules *rewindRules
	// size approximates the bytes the replayed state retains (see
	// Executor.Size).
	size int64
}

func (r *run) skipped() bool  { return r.rules != nil && r.rules.skip[r.pos] }
func (r *run) tolerant() bool { return r.rules != nil && r.rules.tolerant[r.pos] }

// apply processes one event. It reports whether a new event is accepted into
// history (duplicates and stale results are not).
func (r *run) apply(ev *backend.Event, isNew bool) bool {
	c := r.c
	switch ev.Type {
	case backend.EventOrchestratorStarted:
		c.now = ev.Timestamp.UTC()
		return true
	case backend.EventExecutionStarted:
		if r.started {
			return false
		}
		r.started = true
		c.input = ev.Input
		if ev.Parent != nil {
			c.parent = ev.Parent
		}
		input, fn := ev.Input, r.fn
		c.co.start(func() ([]byte, error) { return fn(c, input) })
		return true
	case backend.EventTaskScheduled, backend.EventTimerCreated,
		backend.EventSubOrchestrationCreated, backend.EventEventSent,
		backend.EventEntitySignaled, backend.EventEntityCalled,
		backend.EventEntityLockRequested, backend.EventEntityUnlocked:
		if isNew {
			return false
		}
		r.match(ev)
		return true
	case backend.EventTaskCompleted, backend.EventTaskFailed, backend.EventTimerFired,
		backend.EventSubOrchestrationCompleted, backend.EventSubOrchestrationFailed,
		backend.EventEntityResponse, backend.EventEntityLockGranted:
		return r.complete(ev, isNew)
	case backend.EventPatched:
		if isNew {
			return false
		}
		r.matchPatch(ev)
		return true
	case backend.EventEventRaised:
		c.deliverEvent(ev)
		r.runCode()
		return true
	case backend.EventExecutionRewound:
		if ev.Rewind != nil && ev.Rewind.NextTaskID > c.nextTaskID {
			c.nextTaskID = ev.Rewind.NextTaskID
		}
		c.rewinds++
		return true
	default:
		// ExecutionCompleted and ExecutionTerminated end a history; nothing
		// to replay.
		return !isNew
	}
}

var scheduledKind = map[backend.EventType]actionKind{
	backend.EventTaskScheduled:           kindActivity,
	backend.EventTimerCreated:            kindTimer,
	backend.EventSubOrchestrationCreated: kindSubOrch,
	backend.EventEventSent:               kindSend,
	backend.EventEntitySignaled:          kindEntitySignal,
	backend.EventEntityCalled:            kindEntityCall,
	backend.EventEntityLockRequested:     kindEntityLock,
	backend.EventEntityUnlocked:          kindEntityUnlock,
}

var completionKind = map[backend.EventType]actionKind{
	backend.EventTaskCompleted:             kindActivity,
	backend.EventTaskFailed:                kindActivity,
	backend.EventTimerFired:                kindTimer,
	backend.EventSubOrchestrationCompleted: kindSubOrch,
	backend.EventSubOrchestrationFailed:    kindSubOrch,
	backend.EventEntityResponse:            kindEntityCall,
	backend.EventEntityLockGranted:         kindEntityLock,
}

func historyName(ev *backend.Event) string {
	switch ev.Type {
	case backend.EventTimerCreated:
		return "timer"
	case backend.EventEntitySignaled, backend.EventEntityCalled:
		return entityActionName(ev.InstanceID, ev.Name)
	case backend.EventEntityLockRequested, backend.EventEntityUnlocked:
		if ev.Entity != nil {
			return lockName(ev.Entity.Lock)
		}
	}
	return ev.Name
}

// match pairs a recorded scheduling event with the action the replayed code
// produced for the same task ID.
func (r *run) match(ev *backend.Event) {
	c := r.c
	want := scheduledKind[ev.Type]
	a, ok := c.actions[ev.TaskID]
	switch {
	case r.tolerant() && (!ok || a.kind != want || a.name != historyName(ev)):
		// The abandoned branch of a rewind: the code no longer goes there.
	case !ok:
		c.nondeterminism = fmt.Errorf("non-deterministic orchestration %q: history has %s %q (task %d) but the code did not schedule it",
			c.name, want, historyName(ev), ev.TaskID)
	case a.kind != want || a.name != historyName(ev):
		c.nondeterminism = fmt.Errorf("non-deterministic orchestration %q: history has %s %q (task %d) but the code scheduled %s",
			c.name, want, historyName(ev), ev.TaskID, a.describe())
	default:
		a.recorded = true
	}
}

// checkReplayed runs once history is replayed: every action the code took
// while it replayed was taken in a step of history, which recorded all the
// actions its code took. One history lacks is code that changed where the
// instance already passed (an activity inserted before the point it waits
// at, say): the instance would act as no version of the code did.
func (r *run) checkReplayed() {
	c := r.c
	for _, a := range c.order {
		if !a.recorded {
			c.nondeterminism = fmt.Errorf("non-deterministic orchestration %q: the code scheduled %s in a step of history that did not record it",
				c.name, a.describe())
			return
		}
	}
}

func (r *run) complete(ev *backend.Event, isNew bool) bool {
	c := r.c
	if r.skipped() {
		return !isNew
	}
	a := c.actions[ev.TaskID]
	ok := a != nil && a.pending
	if !isNew && ok && !a.recorded && !r.tolerant() {
		// A recorded result for an action whose scheduling history lacks.
		c.nondeterminism = fmt.Errorf("non-deterministic orchestration %q: history has %s for task %d but no record of scheduling it; the code scheduled %s",
			c.name, ev.Type, ev.TaskID, a.describe())
		return false
	}
	if !ok || a == nil || a.kind != completionKind[ev.Type] {
		if !isNew && !r.tolerant() {
			c.nondeterminism = fmt.Errorf("non-deterministic orchestration %q: history has %s for task %d which the code did not schedule as a %s",
				c.name, ev.Type, ev.TaskID, completionKind[ev.Type])
		}
		return false
	}
	a.pending = false
	f := a.future
	switch {
	case ev.Type == backend.EventTaskFailed, ev.Type == backend.EventSubOrchestrationFailed,
		ev.Type == backend.EventEntityResponse && ev.Failure != nil,
		ev.Type == backend.EventEntityLockGranted && ev.Failure != nil:
		f.Fail(ev.Failure)
	default:
		f.Resolve(ev.Result)
	}
	r.runCode()
	return true
}

func (r *run) runCode() {
	for r.c.co.runnable() {
		r.c.co.step()
	}
}

// finish turns the outcome of the replay into the step's effects.
func (r *run) finish(out *backend.CompleteOrchestrationStepParams, inst *backend.Instance, pl *plan) {
	c := r.c
	out.CustomStatus = c.customStatus
	var final *backend.Event
	switch {
	case c.nondeterminism != nil:
		final = failed(&backend.Failure{Message: c.nondeterminism.Error(), Type: FailureTypeNonDeterminism, NonRetryable: true})
	case c.co.done && c.co.panicked != nil:
		final = failed(&backend.Failure{Message: c.co.panicked.String(), Type: FailureTypePanic, Stack: c.co.panicked.stack, TaskName: c.name})
	case c.co.done && c.continueAsNew:
		final = &backend.Event{Type: backend.EventExecutionCompleted, Status: backend.StatusContinuedAsNew, Result: c.continueAsNewArg}
	case c.co.done && c.co.err != nil:
		conv := r.failureFromError
		if conv == nil {
			conv = DefaultFailure
		}
		f := conv(c.co.err)
		if f.TaskName == "" {
			f.TaskName = c.name
		}
		final = failed(f)
	case c.co.done:
		final = &backend.Event{Type: backend.EventExecutionCompleted, Status: backend.StatusCompleted, Result: c.co.output}
	}

	for _, a := range c.order[c.settled:] {
		if a.recorded {
			continue
		}
		out.NewEvents = append(out.NewEvents, a.event)
		if a.kind == kindActivity && final == nil {
			out.ActivityTasks = append(out.ActivityTasks, c.activityTask(a))
		}
		if a.message != nil && (final == nil || a.kind != kindTimer) {
			out.Messages = append(out.Messages, a.message)
		}
		out.Messages = append(out.Messages, a.extra...)
		if a.start != nil {
			a.start.Now = c.now
			out.StartInstances = append(out.StartInstances, a.start)
		}
		for _, st := range a.starts {
			st.Now = c.now
			out.StartInstances = append(out.StartInstances, st)
		}
	}
	if final != nil {
		// An ending execution gives back every entity lock it holds.
		out.Messages = append(out.Messages, c.releaseAll()...)
	}

	if final == nil {
		out.ActivityTasks = append(out.ActivityTasks, pl.tasks...)
		out.Messages = append(out.Messages, pl.messages...)
	} else {
		for _, m := range pl.messages {
			if m.InstanceID != inst.ID {
				out.Messages = append(out.Messages, m)
			}
		}
	}
	out.RewindInstances = pl.rewinds
	finishStep(out, pl, final, r.started, c.now, c.parent, c.rewinds, func() string { return c.NewUUID().String() })
}

// newStepParams are the effects of a step of wi that changes nothing yet:
// the instance's current status, output, failure, custom status and
// suspension, fenced by wi's attempt.
func newStepParams(wi *backend.OrchestrationWorkItem, now time.Time) *backend.CompleteOrchestrationStepParams {
	inst := wi.Instance
	return &backend.CompleteOrchestrationStepParams{
		InstanceID: inst.ID, ExecutionID: inst.ExecutionID, Attempt: wi.Attempt, Status: inst.Status,
		Output: inst.Output, Failure: inst.Failure, CustomStatus: inst.CustomStatus, Now: now,
		Suspension: inst.Suspension,
	}
}

// endedStep handles a step that runs no orchestration code: the instance
// has finished (its messages are consumed, its resumes refused), or one of
// the messages terminates its execution (the termination step). It reports
// whether out is complete.
func endedStep(out *backend.CompleteOrchestrationStepParams, wi *backend.OrchestrationWorkItem, now time.Time) bool {
	inst := wi.Instance
	consumeAll := func() {
		for _, m := range wi.Messages {
			out.ConsumedMessageIDs = append(out.ConsumedMessageIDs, m.ID)
		}
	}
	if inst.Status.IsTerminal() {
		consumeAll()
		out.ResumeOutcomes = KeepResumeOutcomes(inst.ResumeOutcomes,
			refuseResumes(wi.Messages, "the instance had finished", now))
		return true
	}
	for _, m := range wi.Messages {
		if m.Event != nil && m.Event.Type == backend.EventExecutionTerminated &&
			(m.ExecutionID == "" || m.ExecutionID == inst.ExecutionID) {
			consumeAll()
			terminateStep(out, inst, wi.History, m.Event, now)
			out.ResumeOutcomes = KeepResumeOutcomes(inst.ResumeOutcomes,
				refuseResumes(wi.Messages, "the instance was terminated", now))
			return true
		}
	}
	return false
}

// finishStep sets a step's resulting status from its plan and the
// orchestration's final event (nil while it runs): Suspended with the
// plan's suspension, Running once started, Pending before; or the final
// status, with its output or failure, the parent's notification and, for
// continue-as-new, the new execution (newExecutionID). Go and remote
// orchestrations share it.
func finishStep(out *backend.CompleteOrchestrationStepParams, pl *plan, final *backend.Event, started bool, now time.Time,
	parent *backend.ParentRef, rewinds int, newExecutionID func() string) {
	out.Suspension = nil
	switch {
	case final == nil && pl.suspended:
		out.Status = backend.StatusSuspended
		out.Suspension = pl.susp
	case final == nil && started:
		out.Status = backend.StatusRunning
	case final == nil:
		out.Status = backend.StatusPending
	default:
		final.Timestamp = now
		out.NewEvents = append(out.NewEvents, final)
		out.Status = final.Status
		switch final.Status {
		case backend.StatusContinuedAsNew:
			out.ContinueAsNew = &backend.ContinueAsNew{NewExecutionID: newExecutionID(), Input: final.Result}
		case backend.StatusCompleted:
			out.Output, out.Failure = final.Result, nil
			notifyParent(out, parent, final, now, rewinds)
		case backend.StatusFailed:
			out.Output, out.Failure = nil, final.Failure
			notifyParent(out, parent, final, now, rewinds)
		}
	}
}

func failed(f *backend.Failure) *backend.Event {
	return &backend.Event{Type: backend.EventExecutionCompleted, Status: backend.StatusFailed, Failure: f}
}

// notifyParent sends a sub-orchestration's outcome to its parent task. A
// child rewound n times sends its new outcome under a new message ID, since
// the parent has consumed the earlier one.
func notifyParent(out *backend.CompleteOrchestrationStepParams, parent *backend.ParentRef, final *backend.Event, now time.Time, rewinds int) {
	if parent == nil {
		return
	}
	id := backend.ResultMessageID(backend.TaskMessageID(parent.InstanceID, parent.ExecutionID, parent.TaskID))
	if rewinds > 0 {
		id += "/r" + strconv.Itoa(rewinds)
	}
	ev := &backend.Event{Type: backend.EventSubOrchestrationCompleted, TaskID: parent.TaskID, Result: final.Result, Timestamp: now}
	if final.Status != backend.StatusCompleted {
		ev = &backend.Event{Type: backend.EventSubOrchestrationFailed, TaskID: parent.TaskID, Failure: final.Failure, Timestamp: now}
	}
	out.Messages = append(out.Messages, &backend.Message{
		ID: id, InstanceID: parent.InstanceID, ExecutionID: parent.ExecutionID, Event: ev,
	})
}

// terminateStep ends an instance on a terminate request: no user code runs,
// running children are terminated too, and a parent learns of it.
func terminateStep(out *backend.CompleteOrchestrationStepParams, inst *backend.Instance, history []*backend.Event, req *backend.Event, now time.Time) {
	out.NewEvents = append(out.NewEvents,
		&backend.Event{Type: backend.EventOrchestratorStarted, Timestamp: now},
		&backend.Event{Type: backend.EventExecutionTerminated, Reason: req.Reason, Timestamp: now})
	out.Status = backend.StatusTerminated
	out.Output = nil
	out.Failure = nil
	out.Suspension = nil

	out.Messages = append(out.Messages, heldLocks(inst, history)...)
	for _, c := range runningChildren(history) {
		if req.NonRecursive {
			break
		}
		out.Messages = append(out.Messages, &backend.Message{
			ID:         backend.ResultMessageID(backend.TaskMessageID(inst.ID, inst.ExecutionID, c.taskID)) + "/terminate",
			InstanceID: c.instanceID,
			Event:      &backend.Event{Type: backend.EventExecutionTerminated, Reason: "parent terminated: " + req.Reason, Timestamp: now},
		})
	}
	rewinds := 0
	for _, ev := range history {
		if ev.Type == backend.EventExecutionRewound {
			rewinds++
		}
	}
	notifyParent(out, inst.Parent, failed(&backend.Failure{
		Message: "terminated: " + req.Reason, Type: FailureTypeTerminated, TaskName: inst.Name, NonRetryable: true,
	}), now, rewinds)
}

// DefaultFailure converts an error into a recorded failure.
func DefaultFailure(err error) *backend.Failure {
	return &backend.Failure{Message: err.Error(), Type: fmt.Sprintf("%T", err)}
}

// replayHandler drops log records while the orchestration replays.
type replayHandler struct {
	c *Context
	h slog.Handler
}

func (h *replayHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return !h.c.replaying && h.h.Enabled(ctx, l)
}

func (h *replayHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.c.replaying {
		return nil
	}
	return h.h.Handle(ctx, r)
}

func (h *replayHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &replayHandler{c: h.c, h: h.h.WithAttrs(as)}
}

func (h *replayHandler) WithGroup(name string) slog.Handler {
	return &replayHandler{c: h.c, h: h.h.WithGroup(name)}
}
