package replay

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/durohq/duro/backend"
)

// Remote steps run orchestration code that lives outside this process: a
// Durable Task SDK replays the history itself and answers with the actions
// its code took. The engine keeps everything else — control messages,
// suspension, decisions, rewinds, terminations, the step's deterministic
// IDs and effects — so a remote orchestration behaves as a Go one does.
//
// PrepareRemote says what the code must see; Finish turns the code's
// actions into the step's effects.

// RemoteStep is one orchestration step prepared for remote code.
type RemoteStep struct {
	// Done, when not nil, is the whole step: no code needs to run (the
	// instance has finished, is terminated, or the step has nothing for
	// its code, such as a suspension). Commit it as is.
	Done *backend.CompleteOrchestrationStepParams
	// Past are the events the code replays, and New the events it
	// processes in this step (led by an OrchestratorStarted), both in the
	// code's numbering of task IDs. They hold no control events: the engine
	// applies suspensions, resumes, decisions and rewinds itself, and the
	// failures a rewind undid, with the branch the code abandoned, are left
	// out.
	Past, New []*backend.Event

	wi      *backend.OrchestrationWorkItem
	out     *backend.CompleteOrchestrationStepParams
	pl      *plan
	now     time.Time
	ids     idMap
	started bool
	parent  *backend.ParentRef
	rewinds int
	// recorded are the task IDs (duro's) history has a scheduling event for.
	recorded map[int]bool
	// all are history followed by the step's events, for the locks held.
	all []*backend.Event
}

// RemoteActionKind names what a remote action asks for.
type RemoteActionKind int

// Remote action kinds.
const (
	RemoteActivity RemoteActionKind = iota + 1
	RemoteTimer
	RemoteSubOrchestration
	RemoteSendEvent
	// RemoteComplete ends the execution with Status Completed (Result),
	// Failed (Failure) or ContinuedAsNew (Result is the next input;
	// Carryover are the external events the next execution receives
	// first, in order).
	RemoteComplete
	// RemoteTerminate terminates another instance, InstanceID, with
	// Reason; its running sub-orchestrations too unless NonRecursive.
	RemoteTerminate
	// RemoteEntitySignal sends operation Name to entity InstanceID.
	RemoteEntitySignal
	// RemoteEntityCall sends operation Name to entity InstanceID and
	// waits for its response.
	RemoteEntityCall
	// RemoteEntityLock asks for the locks of the entities Lock: a
	// critical section named RequestID.
	RemoteEntityLock
	// RemoteEntityUnlock releases entity InstanceID from the critical
	// section RequestID.
	RemoteEntityUnlock
)

// TerminateSentName is the name of the EventSent event that records, in
// the history of a remote orchestration, its termination of another
// instance. The code never sees that event: the protocol has no history
// event for a termination sent, and an SDK re-emits the action on every
// replay, which the recorded event makes a no-op.
const TerminateSentName = "duro.terminate"

// RemoteAction is one action of remote code, numbered by the code.
type RemoteAction struct {
	ID   int
	Kind RemoteActionKind
	// Name is the activity, orchestration or event name.
	Name string
	// InstanceID is the child (empty: the engine derives one) or the
	// event's target.
	InstanceID string
	Input      []byte
	// Activity are an activity's execution options.
	Activity backend.ActivityOptions
	FireAt   time.Time
	Status   backend.Status
	Result   []byte
	Failure  *backend.Failure
	// Carryover are EventRaised events (Name, Input) for continue-as-new.
	Carryover []*backend.Event
	// Reason and NonRecursive describe a termination.
	Reason       string
	NonRecursive bool
	// RequestID is the code's ID of an entity request (a call's or a
	// signal's request ID, a critical section's ID), kept in history for
	// the code to match responses with.
	RequestID string
	// Lock lists the entities a RemoteEntityLock locks.
	Lock []string
}

// ErrRemoteAction is returned (wrapped) by Finish for actions it cannot
// apply; nothing of the step is committed.
var ErrRemoteAction = errors.New("invalid orchestrator action")

// PrepareRemote prepares the step wi at time now for code that runs
// remotely.
func PrepareRemote(wi *backend.OrchestrationWorkItem, now time.Time, logger *slog.Logger) *RemoteStep {
	inst := wi.Instance
	now = now.UTC()
	if logger == nil {
		logger = discardLogger
	}
	out := newStepParams(wi, now)
	s := &RemoteStep{wi: wi, out: out, now: now, parent: inst.Parent, recorded: map[int]bool{}}
	if endedStep(out, wi, now) {
		s.Done = out
		return s
	}
	pl := planStep(carriedFirst(wi), now, logger.Warn)
	s.pl = pl
	out.ConsumedMessageIDs = pl.consumed
	out.ResumeOutcomes = KeepResumeOutcomes(inst.ResumeOutcomes, pl.outcomes)

	stepEvents := make([]*backend.Event, 0, 1+len(pl.events))
	stepEvents = append(stepEvents, &backend.Event{Type: backend.EventOrchestratorStarted, Timestamp: now})
	stepEvents = append(stepEvents, pl.events...)
	all := append(slices.Clip(wi.History), stepEvents...)
	s.all = all
	var rules *rewindRules
	if hasRewind(all) {
		rules = scanRewinds(all)
	}
	// pending are the tasks (duro's IDs) the code waits on, by the kind
	// of their scheduling event.
	pending := map[int]backend.EventType{}
	s.ids = idMap{{}}
	code := func(ev *backend.Event) *backend.Event {
		if !isScheduling(ev.Type) && completionKind[ev.Type] == "" {
			return ev
		}
		c := *ev
		c.TaskID = s.ids.code(ev.TaskID)
		return &c
	}
	maxCode := 0
	for i, ev := range all {
		isNew := i >= len(wi.History)
		skip := rules != nil && rules.skip[i]
		tolerant := rules != nil && rules.tolerant[i]
		var keep bool
		switch {
		case ev.Type == backend.EventExecutionRewound:
			if ev.Rewind != nil {
				s.ids = append(s.ids, idSeg{duro: ev.Rewind.NextTaskID, code: maxCode + 1})
			}
			s.rewinds++
			if isNew {
				out.NewEvents = append(out.NewEvents, ev)
			}
			continue
		case ev.Type.IsControl():
			if isNew {
				out.NewEvents = append(out.NewEvents, ev)
			}
			continue
		case skip:
		case ev.Type == backend.EventOrchestratorStarted:
			keep = true
		case ev.Type == backend.EventExecutionStarted:
			keep = !s.started
			s.started = true
			if ev.Parent != nil {
				s.parent = ev.Parent
			}
		case isScheduling(ev.Type):
			if !isNew {
				s.recorded[ev.TaskID] = true
			}
			if ev.Type == backend.EventEventSent && ev.Name == TerminateSentName {
				break // the code never saw it (TerminateSentName)
			}
			if tolerant || isNew {
				break // the abandoned branch; new ones cannot be
			}
			keep = true
			pending[ev.TaskID] = ev.Type
			maxCode = max(maxCode, s.ids.code(ev.TaskID))
			if ev.Type == backend.EventEventSent || ev.Type == backend.EventEntitySignaled || ev.Type == backend.EventEntityUnlocked {
				delete(pending, ev.TaskID) // nothing comes back
			}
		case completionKind[ev.Type] != "":
			st, ok := pending[ev.TaskID]
			if ok && completionKind[ev.Type] == scheduledKind[st] {
				keep = true
				delete(pending, ev.TaskID)
			}
		case ev.Type == backend.EventEventRaised:
			keep = true
		}
		if !keep {
			continue
		}
		if isNew {
			out.NewEvents = append(out.NewEvents, ev)
			s.New = append(s.New, code(ev))
		} else {
			s.Past = append(s.Past, code(ev))
		}
	}
	codeEvents := 0
	for _, ev := range s.New {
		if ev.Type != backend.EventOrchestratorStarted {
			codeEvents++
		}
	}
	if codeEvents == 0 {
		// Nothing for the code: the step only applies control messages.
		s.finish(nil)
		s.Done = out
	}
	return s
}

// Finish returns the step's effects once the code answered with actions
// and, if customStatusSet, a new custom status. An action ID the code
// already used in history is ignored (history recorded it). It returns an
// error wrapping ErrRemoteAction for an action it cannot apply.
func (s *RemoteStep) Finish(actions []RemoteAction, customStatus []byte, customStatusSet bool) (*backend.CompleteOrchestrationStepParams, error) {
	if s.Done != nil {
		return s.Done, nil
	}
	out, inst, now := s.out, s.wi.Instance, s.now
	if customStatusSet {
		out.CustomStatus = customStatus
	}
	actions = slices.Clone(actions)
	sort.SliceStable(actions, func(i, j int) bool { return actions[i].ID < actions[j].ID })
	var final *backend.Event
	type newAction struct {
		ev      *backend.Event
		task    *backend.ActivityTask
		message *backend.Message
		start   *backend.CreateInstanceParams
		// entity are an entity action's messages and entity creations.
		entity *entityEffects
	}
	var news []newAction
	seen := map[int]bool{}
	for _, a := range actions {
		if a.Kind == RemoteComplete {
			if final != nil {
				return nil, fmt.Errorf("%w: two completions", ErrRemoteAction)
			}
			switch a.Status {
			case backend.StatusCompleted:
				final = &backend.Event{Type: backend.EventExecutionCompleted, Status: backend.StatusCompleted, Result: a.Result}
			case backend.StatusContinuedAsNew:
				final = &backend.Event{Type: backend.EventExecutionCompleted, Status: backend.StatusContinuedAsNew, Result: a.Result}
				carry, err := s.carryover(a.Carryover)
				if err != nil {
					return nil, err
				}
				out.Messages = append(out.Messages, carry...)
			case backend.StatusFailed:
				f := a.Failure
				if f == nil {
					f = &backend.Failure{Message: "orchestration failed"}
				}
				if f.TaskName == "" {
					f.TaskName = inst.Name
				}
				final = failed(f)
			default:
				return nil, fmt.Errorf("%w: completion with status %q", ErrRemoteAction, a.Status)
			}
			continue
		}
		if a.ID <= 0 {
			return nil, fmt.Errorf("%w: action ID %d", ErrRemoteAction, a.ID)
		}
		id := s.ids.duro(a.ID)
		if s.recorded[id] {
			continue
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: two actions with ID %d", ErrRemoteAction, a.ID)
		}
		seen[id] = true
		msgID := backend.TaskMessageID(inst.ID, inst.ExecutionID, id)
		var na newAction
		switch a.Kind {
		case RemoteActivity:
			if a.Name == "" {
				return nil, fmt.Errorf("%w: activity %d without a name", ErrRemoteAction, a.ID)
			}
			opts := a.Activity
			na.ev = &backend.Event{Type: backend.EventTaskScheduled, TaskID: id, Name: a.Name, Input: a.Input, Activity: &opts, Timestamp: now}
			na.task = &backend.ActivityTask{ID: msgID, InstanceID: inst.ID, ExecutionID: inst.ExecutionID,
				TaskID: id, Name: a.Name, Input: a.Input, Options: opts}
		case RemoteTimer:
			if a.FireAt.IsZero() {
				return nil, fmt.Errorf("%w: timer %d without a fire time", ErrRemoteAction, a.ID)
			}
			fireAt := a.FireAt.UTC()
			na.ev = &backend.Event{Type: backend.EventTimerCreated, TaskID: id, FireAt: fireAt, Timestamp: now}
			na.message = &backend.Message{
				ID: backend.ResultMessageID(msgID), InstanceID: inst.ID, ExecutionID: inst.ExecutionID,
				Event:     &backend.Event{Type: backend.EventTimerFired, TaskID: id, FireAt: fireAt, Timestamp: fireAt},
				VisibleAt: fireAt,
			}
		case RemoteSubOrchestration:
			if a.Name == "" {
				return nil, fmt.Errorf("%w: sub-orchestration %d without a name", ErrRemoteAction, a.ID)
			}
			child := a.InstanceID
			if child == "" {
				child = inst.ID + ":" + shortID(inst.ExecutionID) + ":" + strconv.Itoa(id)
			}
			na.ev = &backend.Event{Type: backend.EventSubOrchestrationCreated, TaskID: id, Name: a.Name, InstanceID: child,
				Input: a.Input, Timestamp: now}
			na.start = &backend.CreateInstanceParams{
				ID: child, Name: a.Name, Input: a.Input, Now: now,
				Parent:      &backend.ParentRef{InstanceID: inst.ID, ExecutionID: inst.ExecutionID, TaskID: id},
				ExecutionID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(msgID)).String(),
				IfExists:    backend.IfExistsReplaceFinished,
			}
		case RemoteSendEvent:
			if a.Name == "" || a.InstanceID == "" {
				return nil, fmt.Errorf("%w: event %d without a name or target", ErrRemoteAction, a.ID)
			}
			na.ev = &backend.Event{Type: backend.EventEventSent, TaskID: id, InstanceID: a.InstanceID, Name: a.Name,
				Input: a.Input, Timestamp: now}
			na.message = &backend.Message{ID: msgID, InstanceID: a.InstanceID,
				Event: &backend.Event{Type: backend.EventEventRaised, Name: a.Name, Input: a.Input, Timestamp: now}}
		case RemoteTerminate:
			if a.InstanceID == "" || a.InstanceID == inst.ID {
				return nil, fmt.Errorf("%w: termination %d of instance %q: name another instance", ErrRemoteAction, a.ID, a.InstanceID)
			}
			na.ev = &backend.Event{Type: backend.EventEventSent, TaskID: id, InstanceID: a.InstanceID, Name: TerminateSentName,
				Reason: a.Reason, Timestamp: now}
			na.message = &backend.Message{ID: msgID, InstanceID: a.InstanceID,
				Event: &backend.Event{Type: backend.EventExecutionTerminated, Reason: a.Reason, NonRecursive: a.NonRecursive, Timestamp: now}}
		case RemoteEntitySignal, RemoteEntityCall, RemoteEntityLock, RemoteEntityUnlock:
			fx, err := s.entityAction(a, id, msgID)
			if err != nil {
				return nil, err
			}
			na.ev, na.entity = fx.ev, fx
		default:
			return nil, fmt.Errorf("%w: unknown kind %d (action %d)", ErrRemoteAction, a.Kind, a.ID)
		}
		news = append(news, na)
	}
	for _, na := range news {
		out.NewEvents = append(out.NewEvents, na.ev)
		if na.task != nil && final == nil {
			out.ActivityTasks = append(out.ActivityTasks, na.task)
		}
		if na.message != nil && (final == nil || na.ev.Type != backend.EventTimerCreated) {
			out.Messages = append(out.Messages, na.message)
		}
		if na.start != nil {
			out.StartInstances = append(out.StartInstances, na.start)
		}
		if na.entity != nil {
			out.Messages = append(out.Messages, na.entity.messages...)
			out.StartInstances = append(out.StartInstances, na.entity.starts...)
			s.all = append(s.all, na.ev) // for the locks an ending execution releases
		}
	}
	s.finish(final)
	return out, nil
}

// finish sets the step's status and end, as the engine's finish does for
// Go code.
func (s *RemoteStep) finish(final *backend.Event) {
	out, inst, pl, now := s.out, s.wi.Instance, s.pl, s.now
	if final != nil {
		out.Messages = append(out.Messages, heldLocks(inst, s.all)...)
		for _, m := range pl.messages {
			if m.InstanceID != inst.ID {
				out.Messages = append(out.Messages, m)
			}
		}
	} else {
		out.ActivityTasks = append(out.ActivityTasks, pl.tasks...)
		out.Messages = append(out.Messages, pl.messages...)
	}
	out.RewindInstances = pl.rewinds
	finishStep(out, pl, final, s.started, now, s.parent, s.rewinds, s.nextExecutionID)
}

// nextExecutionID is the execution a continue-as-new of this step starts.
func (s *RemoteStep) nextExecutionID() string {
	inst := s.wi.Instance
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(inst.ID+"/"+inst.ExecutionID+"/continue")).String()
}

// carryPrefix starts the IDs of the messages that carry events over to
// execution exec of instance id.
func carryPrefix(id, exec string) string { return backend.StartMessageID(id, exec) + "/carry/" }

// carryover turns the events a continue-as-new carries over into messages
// to the next execution, numbered in order.
func (s *RemoteStep) carryover(events []*backend.Event) ([]*backend.Message, error) {
	if len(events) == 0 {
		return nil, nil
	}
	inst, exec := s.wi.Instance, s.nextExecutionID()
	out := make([]*backend.Message, 0, len(events))
	for i, ev := range events {
		if ev.Type != backend.EventEventRaised || ev.Name == "" {
			return nil, fmt.Errorf("%w: continue-as-new carries over event %d of type %s; only named external events carry over",
				ErrRemoteAction, i, ev.Type)
		}
		out = append(out, &backend.Message{
			ID: carryPrefix(inst.ID, exec) + fmt.Sprintf("%06d", i), InstanceID: inst.ID, ExecutionID: exec,
			Event: &backend.Event{Type: backend.EventEventRaised, Name: ev.Name, Input: ev.Input, Timestamp: s.now},
		})
	}
	return out, nil
}

// carriedFirst returns wi with the messages that carry events over to its
// execution (sent by the continue-as-new that started it) ahead of the
// others, in their order: the previous execution had received them before
// any event still in the inbox.
func carriedFirst(wi *backend.OrchestrationWorkItem) *backend.OrchestrationWorkItem {
	prefix := carryPrefix(wi.Instance.ID, wi.Instance.ExecutionID)
	var carried, rest []*backend.Message
	for _, m := range wi.Messages {
		if strings.HasPrefix(m.ID, prefix) {
			carried = append(carried, m)
		} else {
			rest = append(rest, m)
		}
	}
	if len(carried) == 0 {
		return wi
	}
	sort.SliceStable(carried, func(i, j int) bool { return carried[i].ID < carried[j].ID })
	c := *wi
	c.Messages = append(carried, rest...)
	return &c
}

// idMap translates duro's task IDs to the remote code's and back. Without
// rewinds they are the same. After a rewind duro numbers new tasks from
// the rewind's NextTaskID (past the abandoned branch), while the code,
// which never saw that branch, goes on from its last task: each rewind
// starts a segment.
type idMap []idSeg

type idSeg struct{ duro, code int }

func (m idMap) code(duro int) int {
	s := m[0]
	for _, g := range m[1:] {
		if g.duro <= duro {
			s = g
		}
	}
	return duro - s.duro + s.code
}

func (m idMap) duro(code int) int {
	s := m[0]
	for _, g := range m[1:] {
		if g.code <= code {
			s = g
		}
	}
	return code - s.code + s.duro
}
