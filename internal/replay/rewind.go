package replay

import (
	"slices"
	"strconv"
	"time"

	"github.com/durohq/duro/backend"
)

// rewind plans the rewind of a failed execution: the first failure after
// the last rewind, and every task scheduled before it that failed or never
// got a result, run again; what the code did after that failure is the
// abandoned branch, which replay tolerates and skips.
func (pl *plan) rewind(wi *backend.OrchestrationWorkItem, ev *backend.Event, now time.Time) {
	inst, h := wi.Instance, wi.History
	n := 1
	last := -1
	orphan := map[int]bool{}
	for i, e := range h {
		if e.Type == backend.EventExecutionRewound && e.Rewind != nil {
			n++
			last = i
			for j := max(e.Rewind.From, 0); j < i && j < len(h); j++ {
				if isScheduling(h[j].Type) {
					orphan[h[j].TaskID] = true
				}
			}
		}
	}
	from := len(h)
	for i := last + 1; i < len(h); i++ {
		if t := h[i].Type; t == backend.EventTaskFailed || t == backend.EventSubOrchestrationFailed || t == backend.EventExecutionCompleted {
			from = i
			break
		}
	}
	type state struct {
		sched  *backend.Event
		failed *backend.Event
		done   bool
	}
	tasks := map[int]*state{}
	maxID := -1
	// attempts is the highest delivery attempt history mentions per task
	// (results, failures, duplicates, results that came after the end), so
	// re-runs continue the numbering.
	attempts := map[int]int{}
	for i, e := range h {
		if e.Attempt > attempts[e.TaskID] && (completionKind[e.Type] != "" || e.Type == backend.EventTaskDuplicate ||
			e.Type == backend.EventLateResult) {
			attempts[e.TaskID] = e.Attempt
		}
		switch {
		case isScheduling(e.Type):
			maxID = max(maxID, e.TaskID)
			if i < from && !orphan[e.TaskID] {
				tasks[e.TaskID] = &state{sched: e}
			}
		case e.Type == backend.EventExecutionRewound && e.Rewind != nil:
			for _, id := range e.Rewind.Tasks {
				if s := tasks[id]; s != nil {
					s.failed, s.done = nil, false
				}
			}
			maxID = max(maxID, e.Rewind.NextTaskID-1)
		default:
			if s := tasks[e.TaskID]; s != nil && completionKind[e.Type] != "" {
				if e.Type == backend.EventTaskFailed || e.Type == backend.EventSubOrchestrationFailed {
					s.failed = e
				} else {
					s.done = true
				}
			}
		}
	}
	rw := &backend.Rewind{From: from, NextTaskID: maxID + 1}
	suffix := "/rewind" + strconv.Itoa(n)
	ids := make([]int, 0, len(tasks))
	for id := range tasks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := tasks[id]
		if s.done || s.sched.Type == backend.EventEventSent {
			continue
		}
		msgID := backend.TaskMessageID(inst.ID, inst.ExecutionID, id)
		switch s.sched.Type {
		case backend.EventTaskScheduled:
			var opts backend.ActivityOptions
			if s.sched.Activity != nil {
				opts = *s.sched.Activity
			}
			prior := max(attempts[id], 1) // a task lost with the failure may have run
			if s.failed != nil {
				opts.ApprovedAttempt = prior + 1 // it failed: running it again is the rewind's point
			}
			pl.tasks = append(pl.tasks, &backend.ActivityTask{ID: msgID + suffix, InstanceID: inst.ID,
				ExecutionID: inst.ExecutionID, TaskID: id, Name: s.sched.Name, Input: s.sched.Input,
				Options: opts, PriorAttempts: prior})
		case backend.EventTimerCreated:
			// A timer whose time passed while the instance was Failed
			// fires now, not in the past.
			fired := s.sched.FireAt
			if fired.Before(now) {
				fired = now
			}
			pl.messages = append(pl.messages, &backend.Message{
				ID: backend.ResultMessageID(msgID) + suffix, InstanceID: inst.ID, ExecutionID: inst.ExecutionID,
				Event:     &backend.Event{Type: backend.EventTimerFired, TaskID: id, FireAt: s.sched.FireAt, Timestamp: fired},
				VisibleAt: s.sched.FireAt,
			})
		case backend.EventSubOrchestrationCreated:
			if s.failed == nil {
				continue // still running: its result reaches the parent once it is Running again
			}
			pl.rewinds = append(pl.rewinds, &backend.RewindChild{
				InstanceID: s.sched.InstanceID, Reason: "parent rewound: " + ev.Reason,
				Parent:        &backend.ParentRef{InstanceID: inst.ID, ExecutionID: inst.ExecutionID, TaskID: id},
				MessageID:     "rewind/" + s.sched.InstanceID + "/" + inst.ExecutionID + suffix,
				FailMessageID: backend.ResultMessageID(msgID) + suffix,
			})
		}
		rw.Tasks = append(rw.Tasks, id)
	}
	// The rewind is recorded at its own time (when it was asked for), as
	// an event raised is, not at the step that applies it.
	at := now
	if !ev.Timestamp.IsZero() && ev.Timestamp.Before(now) {
		at = ev.Timestamp.UTC()
	}
	pl.events = append(pl.events, &backend.Event{Type: backend.EventExecutionRewound, Reason: ev.Reason, Rewind: rw, Timestamp: at})
}

func isScheduling(t backend.EventType) bool {
	_, ok := scheduledKind[t]
	return ok
}

// IsScheduling reports whether events of type t record an action the code
// took (an activity, timer, child, event or entity request).
func IsScheduling(t backend.EventType) bool { return isScheduling(t) }

// rewindRules are what replay must know about the rewinds in a history: which
// failure events are undone and where divergence from history is tolerated.
type rewindRules struct {
	// skip marks positions of failure events undone by a later rewind.
	skip map[int]bool
	// tolerant marks positions in an abandoned branch.
	tolerant map[int]bool
}

// hasRewind reports whether events hold a rewind marker scanRewinds reads.
func hasRewind(events []*backend.Event) bool {
	for _, e := range events {
		if e.Type == backend.EventExecutionRewound && e.Rewind != nil {
			return true
		}
	}
	return false
}

// scanRewinds reads the rewind markers of events (history followed by the
// step's new events, in processing order).
func scanRewinds(events []*backend.Event) *rewindRules {
	var rules *rewindRules
	for mp, e := range events {
		if e.Type != backend.EventExecutionRewound || e.Rewind == nil {
			continue
		}
		if rules == nil {
			rules = &rewindRules{skip: map[int]bool{}, tolerant: map[int]bool{}}
		}
		undo := map[int]bool{}
		for _, id := range e.Rewind.Tasks {
			undo[id] = true
		}
		for p := max(e.Rewind.From, 0); p < mp; p++ {
			rules.tolerant[p] = true
			ev := events[p]
			switch ev.Type {
			case backend.EventTaskFailed, backend.EventSubOrchestrationFailed:
				if undo[ev.TaskID] {
					rules.skip[p] = true
				}
			case backend.EventExecutionCompleted:
				rules.skip[p] = true
			}
		}
	}
	return rules
}
