// Package replay is duro's orchestration engine: it rebuilds an orchestration's
// state by re-running its code against the recorded history, feeds it the new
// messages of one step, and turns what the code asked for into the atomic
// effects of that step (backend.CompleteOrchestrationStepParams).
package replay

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"duro/backend"
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
	FailureTypeNotRegistered  = "NotRegistered"
	FailureTypeTerminated     = "Terminated"
)

// Execute runs one orchestration step and returns its effects. It never
// panics on bad histories or user code: such problems become a Failed status.
func Execute(p *Params) *backend.CompleteOrchestrationStepParams {
	wi := p.WorkItem
	inst := wi.Instance
	now := p.Now.UTC()
	out := &backend.CompleteOrchestrationStepParams{
		InstanceID: inst.ID, ExecutionID: inst.ExecutionID, Attempt: wi.Attempt, Status: inst.Status,
		Output: inst.Output, Failure: inst.Failure, CustomStatus: inst.CustomStatus, Now: now,
	}
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	for _, m := range wi.Messages {
		out.ConsumedMessageIDs = append(out.ConsumedMessageIDs, m.ID)
	}
	if inst.Status.IsTerminal() {
		return out
	}

	var fresh []*backend.Event
	var terminate *backend.Event
	for _, m := range wi.Messages {
		switch {
		case m.Event == nil:
			continue
		case m.ExecutionID != "" && m.ExecutionID != inst.ExecutionID:
			logger.Debug("duro: dropping message for another execution",
				"instance", inst.ID, "message", m.ID, "execution", m.ExecutionID)
		case m.Event.Type == backend.EventExecutionTerminated:
			if terminate == nil {
				terminate = m.Event
			}
		default:
			fresh = append(fresh, m.Event)
		}
	}
	if terminate != nil {
		terminateStep(out, inst, wi.History, terminate, now)
		return out
	}

	c := &Context{
		instanceID: inst.ID, executionID: inst.ExecutionID, name: inst.Name, parent: inst.Parent,
		now: inst.CreatedAt, actions: map[int]*action{}, pending: map[int]*Future{},
		completed: map[int]bool{}, events: map[string][]*backend.Event{},
		waiters: map[string][]*Future{}, customStatus: inst.CustomStatus, co: newCoroutine(),
	}
	c.logger = slog.New(&replayHandler{c: c, h: logger.Handler()}).With(
		"instance", inst.ID, "orchestration", inst.Name)
	defer c.co.stop()

	r := &run{c: c, p: p}
	c.replaying = true
	for _, ev := range wi.History {
		r.apply(ev, false)
		if c.nondeterminism != nil {
			break
		}
	}
	c.replaying = false
	if c.nondeterminism == nil {
		for _, ev := range append([]*backend.Event{{Type: backend.EventOrchestratorStarted, Timestamp: now}}, fresh...) {
			if c.co.done {
				break
			}
			if r.apply(ev, true) {
				out.NewEvents = append(out.NewEvents, ev)
			}
			if c.nondeterminism != nil {
				break
			}
		}
	}
	r.finish(out, inst)
	return out
}

// run holds the per-step processing state.
type run struct {
	c        *Context
	p        *Params
	started  bool
	notFound string
}

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
		fn, ok := r.p.Lookup(c.name)
		if !ok {
			r.notFound = c.name
			return true
		}
		input := ev.Input
		c.co.start(func() ([]byte, error) { return fn(c, input) })
		return true
	case backend.EventTaskScheduled, backend.EventTimerCreated,
		backend.EventSubOrchestrationCreated, backend.EventEventSent:
		if isNew {
			return false
		}
		r.match(ev)
		return true
	case backend.EventTaskCompleted, backend.EventTaskFailed, backend.EventTimerFired,
		backend.EventSubOrchestrationCompleted, backend.EventSubOrchestrationFailed:
		return r.complete(ev, isNew)
	case backend.EventEventRaised:
		c.deliverEvent(ev)
		r.runCode()
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
}

var completionKind = map[backend.EventType]actionKind{
	backend.EventTaskCompleted:             kindActivity,
	backend.EventTaskFailed:                kindActivity,
	backend.EventTimerFired:                kindTimer,
	backend.EventSubOrchestrationCompleted: kindSubOrch,
	backend.EventSubOrchestrationFailed:    kindSubOrch,
}

func historyName(ev *backend.Event) string {
	if ev.Type == backend.EventTimerCreated {
		return "timer"
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

func (r *run) complete(ev *backend.Event, isNew bool) bool {
	c := r.c
	f, ok := c.pending[ev.TaskID]
	a := c.actions[ev.TaskID]
	if !ok || a == nil || a.kind != completionKind[ev.Type] {
		if !isNew {
			c.nondeterminism = fmt.Errorf("non-deterministic orchestration %q: history has %s for task %d which the code did not schedule as a %s",
				c.name, ev.Type, ev.TaskID, completionKind[ev.Type])
		}
		return false
	}
	delete(c.pending, ev.TaskID)
	c.completed[ev.TaskID] = true
	switch ev.Type {
	case backend.EventTaskFailed, backend.EventSubOrchestrationFailed:
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
func (r *run) finish(out *backend.CompleteOrchestrationStepParams, inst *backend.Instance) {
	c := r.c
	out.CustomStatus = c.customStatus
	var final *backend.Event
	switch {
	case c.nondeterminism != nil:
		final = failed(&backend.Failure{Message: c.nondeterminism.Error(), Type: FailureTypeNonDeterminism, NonRetryable: true})
	case r.notFound != "":
		final = failed(&backend.Failure{
			Message: fmt.Sprintf("orchestration %q is not registered with this worker", r.notFound),
			Type:    FailureTypeNotRegistered, NonRetryable: true,
		})
	case c.co.done && c.co.panicked != nil:
		final = failed(&backend.Failure{Message: c.co.panicked.String(), Type: FailureTypePanic, Stack: c.co.panicked.stack, TaskName: c.name})
	case c.co.done && c.continueAsNew:
		final = &backend.Event{Type: backend.EventExecutionCompleted, Status: backend.StatusContinuedAsNew, Result: c.continueAsNewArg}
	case c.co.done && c.co.err != nil:
		conv := r.p.FailureFromError
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

	for _, a := range c.order {
		if a.recorded {
			continue
		}
		out.NewEvents = append(out.NewEvents, a.event)
		switch {
		case a.activity != nil && final == nil:
			out.ActivityTasks = append(out.ActivityTasks, a.activity)
		case a.message != nil && (final == nil || a.kind == kindSend):
			out.Messages = append(out.Messages, a.message)
		case a.start != nil:
			a.start.Now = c.now
			out.StartInstances = append(out.StartInstances, a.start)
		}
	}

	switch {
	case final == nil && r.started:
		out.Status = backend.StatusRunning
	case final == nil:
		out.Status = backend.StatusPending
	default:
		final.Timestamp = c.now
		out.NewEvents = append(out.NewEvents, final)
		out.Status = final.Status
		switch final.Status {
		case backend.StatusContinuedAsNew:
			out.ContinueAsNew = &backend.ContinueAsNew{NewExecutionID: c.NewUUID().String(), Input: final.Result}
		case backend.StatusCompleted:
			out.Output, out.Failure = final.Result, nil
			notifyParent(out, c.parent, final, c.now)
		case backend.StatusFailed:
			out.Output, out.Failure = nil, final.Failure
			notifyParent(out, c.parent, final, c.now)
		}
	}
}

func failed(f *backend.Failure) *backend.Event {
	return &backend.Event{Type: backend.EventExecutionCompleted, Status: backend.StatusFailed, Failure: f}
}

// notifyParent sends a sub-orchestration's outcome to its parent task.
func notifyParent(out *backend.CompleteOrchestrationStepParams, parent *backend.ParentRef, final *backend.Event, now time.Time) {
	if parent == nil {
		return
	}
	ev := &backend.Event{Type: backend.EventSubOrchestrationCompleted, TaskID: parent.TaskID, Result: final.Result, Timestamp: now}
	if final.Status != backend.StatusCompleted {
		ev = &backend.Event{Type: backend.EventSubOrchestrationFailed, TaskID: parent.TaskID, Failure: final.Failure, Timestamp: now}
	}
	out.Messages = append(out.Messages, &backend.Message{
		ID:         backend.ResultMessageID(backend.TaskMessageID(parent.InstanceID, parent.ExecutionID, parent.TaskID)),
		InstanceID: parent.InstanceID, ExecutionID: parent.ExecutionID, Event: ev,
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

	children := map[int]string{}
	var order []int
	for _, ev := range history {
		switch ev.Type {
		case backend.EventSubOrchestrationCreated:
			children[ev.TaskID] = ev.InstanceID
			order = append(order, ev.TaskID)
		case backend.EventSubOrchestrationCompleted, backend.EventSubOrchestrationFailed:
			delete(children, ev.TaskID)
		}
	}
	for _, id := range order {
		child, ok := children[id]
		if !ok {
			continue
		}
		out.Messages = append(out.Messages, &backend.Message{
			ID:         backend.ResultMessageID(backend.TaskMessageID(inst.ID, inst.ExecutionID, id)) + "/terminate",
			InstanceID: child,
			Event:      &backend.Event{Type: backend.EventExecutionTerminated, Reason: "parent terminated: " + req.Reason, Timestamp: now},
		})
	}
	notifyParent(out, inst.Parent, failed(&backend.Failure{
		Message: "terminated: " + req.Reason, Type: FailureTypeTerminated, TaskName: inst.Name, NonRetryable: true,
	}), now)
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
