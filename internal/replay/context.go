package replay

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/durohq/duro/backend"
)

// ErrTimeout resolves a WaitForEvent future whose timeout fired first.
var ErrTimeout = errors.New("timed out")

type actionKind string

const (
	kindActivity actionKind = "activity"
	kindTimer    actionKind = "timer"
	kindSubOrch  actionKind = "sub-orchestration"
	kindSend     actionKind = "event send"
)

// action is something the code asked for. Replayed actions are matched against
// the history events that recorded them; the rest are new and become this
// step's outgoing work.
type action struct {
	kind   actionKind
	taskID int
	name   string
	event  *backend.Event
	future *Future
	// recorded is true once a history event matched the action.
	recorded bool
	// pending is true while the action's future awaits a completion event.
	pending bool
	// effect builds the action's outgoing work when it is new (an
	// activity's task is made from its event by activityTask).
	message *backend.Message
	start   *backend.CreateInstanceParams
	// starts create entities an entity action addresses.
	starts []*backend.CreateInstanceParams
	// extra are further messages (lock releases).
	extra []*backend.Message
	// released marks a lock action whose locks were given back.
	released bool
}

func (a *action) describe() string {
	return fmt.Sprintf("%s %q (task %d)", a.kind, a.name, a.taskID)
}

// Context is the engine-side state of one orchestration execution while a step
// replays it. Orchestration code reaches it through the SDK; every method must
// be called from the orchestration's own goroutine (or from a future callback).
type Context struct {
	instanceID  string
	executionID string
	name        string
	input       []byte
	parent      *backend.ParentRef

	now       time.Time
	replaying bool
	// logger is the code's logger, built from baseLogger on first use: most
	// steps log nothing, and With allocates.
	logger     *slog.Logger
	loggerOnce sync.Once
	baseLogger *slog.Logger

	nextTaskID int
	uuidSeq    int
	actions    map[int]*action
	order      []*action
	// settled is how many actions of order a sticky executor knows to
	// be recorded in history (sticky.go); 0 after a replay, which matched
	// them against history itself.
	settled int

	// events buffers external events nobody waits for yet, and waiters
	// are the futures waiting for them, by name; both are nil until used.
	events  map[string][]*backend.Event
	waiters map[string][]*Future

	customStatus     []byte
	customStatusSet  bool
	continueAsNew    bool
	continueAsNewArg []byte

	co coroutine
	// rewinds counts the rewinds replayed so far.
	rewinds int
	// locks are the entity lock actions, in order.
	locks []*action
	// nondeterminism is set when replay diverges from history.
	nondeterminism error

	// patches are the code's patch decisions by patch ID, and
	// recordedPatches the markers history holds (patch.go); both nil
	// until used.
	patches         map[string]*patchDecision
	recordedPatches map[patchPoint]bool
}

// InstanceID returns the orchestration instance ID.
func (c *Context) InstanceID() string { return c.instanceID }

// ExecutionID returns the current execution's ID.
func (c *Context) ExecutionID() string { return c.executionID }

// Name returns the orchestration's registered name.
func (c *Context) Name() string { return c.name }

// Parent returns the parent reference of a sub-orchestration, or nil.
func (c *Context) Parent() *backend.ParentRef { return c.parent }

// Now returns the deterministic current time: the start time of the step
// being replayed.
func (c *Context) Now() time.Time { return c.now }

// IsReplaying reports whether the code is re-running steps already recorded.
func (c *Context) IsReplaying() bool { return c.replaying }

// Logger returns a logger that is silent while replaying.
func (c *Context) Logger() *slog.Logger {
	c.loggerOnce.Do(func() {
		c.logger = slog.New(&replayHandler{c: c, h: c.baseLogger.Handler()}).With(
			"instance", c.instanceID, "orchestration", c.name)
	})
	return c.logger
}

// NewUUID returns a UUID that is the same on every replay of this point of
// the code.
func (c *Context) NewUUID() uuid.UUID {
	c.uuidSeq++
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(c.instanceID+"/"+c.executionID+"/uuid/"+strconv.Itoa(c.uuidSeq)))
}

// SetCustomStatus replaces the instance's custom status at the end of the step.
func (c *Context) SetCustomStatus(payload []byte) {
	c.customStatus = payload
	c.customStatusSet = true
}

// ContinueAsNew asks for the execution to restart with input once the code
// returns.
func (c *Context) ContinueAsNew(input []byte) {
	c.continueAsNew = true
	c.continueAsNewArg = input
}

// Await parks the orchestration code until cond holds. cond is evaluated
// after every history event.
func (c *Context) Await(cond func() bool) { c.co.await(cond) }

// AwaitFuture parks the orchestration code until f is resolved. It is
// Await(f.Done) without allocating a func value.
func (c *Context) AwaitFuture(f *Future) { c.co.awaitFuture(f) }

// actionWithFuture allocates an action and its future together.
type actionWithFuture struct {
	a action
	f Future
}

func (c *Context) newAction(kind actionKind, name string, ev *backend.Event) *action {
	id := c.nextTaskID
	c.nextTaskID++
	ev.TaskID = id
	ev.Timestamp = c.now
	af := &actionWithFuture{a: action{kind: kind, taskID: id, name: name, event: ev}, f: Future{TaskID: id}}
	a := &af.a
	a.future = &af.f
	c.actions[id] = a
	c.order = append(c.order, a)
	return a
}

func (c *Context) taskMessageID(taskID int) string {
	return backend.TaskMessageID(c.instanceID, c.executionID, taskID)
}

// scheduledEvent allocates a TaskScheduled event and its options together.
type scheduledEvent struct {
	ev   backend.Event
	opts backend.ActivityOptions
}

// ScheduleActivity schedules an activity call.
func (c *Context) ScheduleActivity(name string, input []byte, opts backend.ActivityOptions) *Future {
	se := &scheduledEvent{ev: backend.Event{Type: backend.EventTaskScheduled, Name: name, Input: input}, opts: opts}
	se.ev.Activity = &se.opts
	a := c.newAction(kindActivity, name, &se.ev)
	a.pending = true
	return a.future
}

// activityTask returns the task of a new activity action. It is made only
// when a step commits the action: replayed actions need none.
func (c *Context) activityTask(a *action) *backend.ActivityTask {
	return &backend.ActivityTask{
		ID: c.taskMessageID(a.taskID), InstanceID: c.instanceID, ExecutionID: c.executionID,
		TaskID: a.taskID, Name: a.name, Input: a.event.Input, Options: *a.event.Activity,
	}
}

// CreateTimer schedules a durable timer firing at fireAt.
func (c *Context) CreateTimer(fireAt time.Time) *Future {
	fireAt = fireAt.UTC()
	a := c.newAction(kindTimer, "timer", &backend.Event{Type: backend.EventTimerCreated, FireAt: fireAt})
	a.message = &backend.Message{
		ID: backend.ResultMessageID(c.taskMessageID(a.taskID)), InstanceID: c.instanceID, ExecutionID: c.executionID,
		Event:     &backend.Event{Type: backend.EventTimerFired, TaskID: a.taskID, FireAt: fireAt, Timestamp: fireAt},
		VisibleAt: fireAt,
	}
	a.pending = true
	return a.future
}

// CallSubOrchestration starts a child orchestration. An empty instanceID gets a
// deterministic one derived from this instance and the task ID.
func (c *Context) CallSubOrchestration(name, instanceID string, input []byte) *Future {
	a := c.newAction(kindSubOrch, name, &backend.Event{Type: backend.EventSubOrchestrationCreated, Name: name, Input: input})
	if instanceID == "" {
		instanceID = c.instanceID + ":" + shortID(c.executionID) + ":" + strconv.Itoa(a.taskID)
	}
	a.event.InstanceID = instanceID
	parent := &backend.ParentRef{InstanceID: c.instanceID, ExecutionID: c.executionID, TaskID: a.taskID}
	a.start = &backend.CreateInstanceParams{
		ID: instanceID, Name: name, Input: input, Parent: parent,
		ExecutionID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(c.taskMessageID(a.taskID))).String(),
		IfExists:    backend.IfExistsReplaceFinished,
	}
	a.pending = true
	return a.future
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// SendEvent raises an event on another instance (fire and forget).
func (c *Context) SendEvent(instanceID, name string, input []byte) {
	a := c.newAction(kindSend, name, &backend.Event{Type: backend.EventEventSent, InstanceID: instanceID, Name: name, Input: input})
	a.message = &backend.Message{
		ID: c.taskMessageID(a.taskID), InstanceID: instanceID,
		Event: &backend.Event{Type: backend.EventEventRaised, Name: name, Input: input},
	}
	a.future.Resolve(nil)
}

// WaitForEvent returns a future resolved by the next external event with this
// name (events that arrived earlier are buffered, oldest first). A timeout > 0
// starts a durable timer; if it fires first the future fails with ErrTimeout.
// A timeout of 0 with no buffered event fails at once; a negative timeout
// waits forever.
func (c *Context) WaitForEvent(name string, timeout time.Duration) *Future {
	f := NewFuture()
	if buf := c.events[name]; len(buf) > 0 {
		c.events[name] = buf[1:]
		f.Resolve(buf[0].Input)
		return f
	}
	if timeout == 0 {
		f.FailErr(ErrTimeout)
		return f
	}
	if c.waiters == nil {
		c.waiters = map[string][]*Future{}
	}
	c.waiters[name] = append(c.waiters[name], f)
	if timeout > 0 {
		timer := c.CreateTimer(c.now.Add(timeout))
		timer.OnDone(func() {
			if f.done {
				return
			}
			ws := c.waiters[name]
			for i, w := range ws {
				if w == f {
					c.waiters[name] = append(ws[:i:i], ws[i+1:]...)
					break
				}
			}
			f.FailErr(ErrTimeout)
		})
	}
	return f
}

func (c *Context) deliverEvent(ev *backend.Event) {
	if ws := c.waiters[ev.Name]; len(ws) > 0 {
		c.waiters[ev.Name] = ws[1:]
		ws[0].Resolve(ev.Input)
		return
	}
	if c.events == nil {
		c.events = map[string][]*backend.Event{}
	}
	c.events[ev.Name] = append(c.events[ev.Name], ev)
}
