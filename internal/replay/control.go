package replay

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/durohq/duro/backend"
)

// FailureTypeOperator marks a task an operator failed with a decision.
const FailureTypeOperator = "OperatorFailed"

// plan is what the messages of one step amount to once control messages
// (suspend, resume, duplicates, rewind) are applied in order: the events to
// run the code on, the messages consumed, and the instance's suspension.
type plan struct {
	consumed  []string
	events    []*backend.Event // in processing order, markers included
	suspended bool
	susp      *backend.Suspension
	// tasks are activity tasks enqueued by decisions and rewinds.
	tasks []*backend.ActivityTask
	// messages are timers re-created by a rewind and suspend/resume
	// requests to children.
	messages []*backend.Message
	rewinds  []*backend.RewindChild
	// outcomes are the outcomes of the step's resume requests, in order.
	outcomes []*backend.ResumeOutcome
}

// planStep applies the step's messages to the instance's suspension state.
// Messages that arrive while the instance is suspended stay in the inbox
// (not consumed) unless a resume in the same batch releases them, in which
// case they are processed after it, in their original order.
func planStep(wi *backend.OrchestrationWorkItem, now time.Time, logger logFunc) *plan {
	inst := wi.Instance
	pl := &plan{suspended: inst.Status == backend.StatusSuspended, susp: cloneSuspension(inst.Suspension),
		consumed: make([]string, 0, len(wi.Messages)), events: make([]*backend.Event, 0, len(wi.Messages))}
	var held []*backend.Message
	for _, m := range wi.Messages {
		ev := m.Event
		if ev == nil || (m.ExecutionID != "" && m.ExecutionID != inst.ExecutionID) {
			pl.consumed = append(pl.consumed, m.ID)
			continue
		}
		switch ev.Type {
		case backend.EventExecutionSuspended:
			pl.consumed = append(pl.consumed, m.ID)
			if pl.suspended {
				continue // idempotent
			}
			pl.suspend(ev.Reason, now, false)
			pl.children(wi, backend.EventExecutionSuspended, "parent suspended: "+ev.Reason, now)
		case backend.EventTaskDuplicate:
			pl.consumed = append(pl.consumed, m.ID)
			pd := pendingDecision(wi.History, ev)
			if !pl.suspended {
				pl.suspend(fmt.Sprintf("possible duplicate: activity %q (task %d) attempt %d; an earlier delivery may have run",
					ev.Name, ev.TaskID, ev.Attempt), now, true)
			}
			pl.susp.Pending = append(pl.susp.Pending, pd)
			sort.Slice(pl.susp.Pending, func(i, j int) bool { return pl.susp.Pending[i].TaskID < pl.susp.Pending[j].TaskID })
			pl.events = append(pl.events, &backend.Event{Type: backend.EventTaskDuplicate, TaskID: ev.TaskID, Name: ev.Name,
				Attempt: ev.Attempt, FireAt: ev.FireAt, Activity: ev.Activity, Timestamp: now})
			pl.events = append(pl.events, &backend.Event{Type: backend.EventExecutionSuspended, Reason: pl.susp.Reason,
				Suspension: cloneSuspension(pl.susp), Timestamp: now})
		case backend.EventExecutionResumed:
			pl.consumed = append(pl.consumed, m.ID)
			if !pl.suspended {
				// Idempotent: nothing to resume (refused if it decides
				// tasks, since none waits).
				pl.outcomes = append(pl.outcomes, ResumeNotSuspended(m.ID, ev, now))
				continue
			}
			if err := checkDecisions(pl.susp, ev.Decisions); err != nil {
				// The pending tasks changed since the client checked: record
				// the refusal so that operators see it, and stay suspended.
				logger("duro: resume refused; the instance stays suspended", "instance", inst.ID, "resume", m.ID, "err", err)
				pending := map[int]bool{}
				for _, pd := range pl.susp.Pending {
					pending[pd.TaskID] = true
				}
				o := ResumeRefused(m.ID, ev, err.Error(), pending, now)
				pl.outcomes = append(pl.outcomes, o)
				pl.events = append(pl.events, &backend.Event{Type: backend.EventExecutionSuspended,
					Reason: "resume refused (" + err.Error() + "): " + pl.susp.Reason, Suspension: cloneSuspension(pl.susp),
					ResumeOutcome: o, Timestamp: now})
				continue
			}
			pl.resume(wi, m.ID, ev, now)
			for _, h := range held {
				pl.consumed = append(pl.consumed, h.ID)
				pl.events = append(pl.events, h.Event)
			}
			held = nil
		case backend.EventExecutionRewound:
			pl.consumed = append(pl.consumed, m.ID)
			pl.rewind(wi, ev, now)
		default:
			if pl.suspended {
				held = append(held, m)
				continue
			}
			pl.consumed = append(pl.consumed, m.ID)
			pl.events = append(pl.events, ev)
		}
	}
	return pl
}

type logFunc func(msg string, args ...any)

func (pl *plan) suspend(reason string, now time.Time, quiet bool) {
	pl.suspended = true
	pl.susp = &backend.Suspension{Reason: reason, Since: now}
	if !quiet {
		pl.events = append(pl.events, &backend.Event{Type: backend.EventExecutionSuspended, Reason: reason,
			Suspension: cloneSuspension(pl.susp), Timestamp: now})
	}
}

func (pl *plan) resume(wi *backend.OrchestrationWorkItem, id string, ev *backend.Event, now time.Time) {
	inst := wi.Instance
	pending := map[int]*backend.PendingDecision{}
	if pl.susp != nil {
		for _, pd := range pl.susp.Pending {
			pending[pd.TaskID] = pd
		}
	}
	o := ResumeApplied(id, ev, func(taskID int) int {
		if pd := pending[taskID]; pd != nil {
			return pd.Attempt + 1
		}
		return 0
	}, now)
	pl.outcomes = append(pl.outcomes, o)
	pl.events = append(pl.events, &backend.Event{Type: backend.EventExecutionResumed, Reason: ev.Reason,
		Decisions: ev.Decisions, ResumeOutcome: o, Timestamp: now})
	for _, d := range ev.Decisions {
		pd := pending[d.TaskID]
		switch d.Action {
		case backend.DecisionResult:
			pl.events = append(pl.events, &backend.Event{Type: backend.EventTaskCompleted, TaskID: d.TaskID, Result: d.Result, Timestamp: now})
		case backend.DecisionFail:
			pl.events = append(pl.events, &backend.Event{Type: backend.EventTaskFailed, TaskID: d.TaskID, Timestamp: now,
				Failure: &backend.Failure{Message: d.Message, Type: FailureTypeOperator, TaskName: pd.Name, NonRetryable: true}})
		case backend.DecisionRetry:
			opts := pd.Options
			opts.ApprovedAttempt = pd.Attempt + 1
			pl.tasks = append(pl.tasks, &backend.ActivityTask{
				ID:         backend.TaskMessageID(inst.ID, inst.ExecutionID, d.TaskID) + "/retry" + strconv.Itoa(pd.Attempt),
				InstanceID: inst.ID, ExecutionID: inst.ExecutionID, TaskID: d.TaskID, Name: pd.Name,
				Input: pd.Input, Options: opts, PriorAttempts: pd.Attempt,
			})
		}
	}
	if pl.susp != nil && !pl.susp.Poisoned && len(pl.susp.Pending) == 0 {
		pl.children(wi, backend.EventExecutionResumed, "parent resumed: "+ev.Reason, now)
	}
	pl.suspended = false
	pl.susp = nil
}

// checkDecisions verifies that a resume decides every pending task exactly
// once and nothing else.
func checkDecisions(susp *backend.Suspension, ds []*backend.Decision) error {
	pending := map[int]bool{}
	if susp != nil {
		for _, pd := range susp.Pending {
			pending[pd.TaskID] = true
		}
	}
	seen := map[int]bool{}
	for _, d := range ds {
		if !pending[d.TaskID] {
			return fmt.Errorf("decision for task %d, which is not pending", d.TaskID)
		}
		if seen[d.TaskID] {
			return fmt.Errorf("two decisions for task %d", d.TaskID)
		}
		switch d.Action {
		case backend.DecisionRetry, backend.DecisionResult, backend.DecisionFail:
		default:
			return fmt.Errorf("task %d: unknown decision %q", d.TaskID, d.Action)
		}
		seen[d.TaskID] = true
	}
	for id := range pending {
		if !seen[id] {
			return fmt.Errorf("task %d awaits a decision", id)
		}
	}
	return nil
}

// children sends a control event to every running sub-orchestration.
func (pl *plan) children(wi *backend.OrchestrationWorkItem, t backend.EventType, reason string, now time.Time) {
	inst := wi.Instance
	for _, c := range runningChildren(wi.History) {
		pl.messages = append(pl.messages, &backend.Message{
			ID: fmt.Sprintf("%s/%s/%d", backend.ResultMessageID(backend.TaskMessageID(inst.ID, inst.ExecutionID, c.taskID)),
				t, wi.Attempt),
			InstanceID: c.instanceID,
			Event:      &backend.Event{Type: t, Reason: reason, Timestamp: now},
		})
	}
}

type child struct {
	taskID     int
	instanceID string
}

// runningChildren lists the sub-orchestrations history started and has no
// result for, in task order.
func runningChildren(history []*backend.Event) []child {
	ids := map[int]string{}
	var order []int
	for _, ev := range history {
		switch ev.Type {
		case backend.EventSubOrchestrationCreated:
			ids[ev.TaskID] = ev.InstanceID
			order = append(order, ev.TaskID)
		case backend.EventSubOrchestrationCompleted, backend.EventSubOrchestrationFailed:
			delete(ids, ev.TaskID)
		}
	}
	var out []child
	for _, id := range order {
		if c, ok := ids[id]; ok {
			out = append(out, child{taskID: id, instanceID: c})
		}
	}
	return out
}

// pendingDecision describes a duplicate from the task's scheduling event,
// with the options the delivery enforced when they differ from the
// scheduled ones (the executing worker's registration decided).
func pendingDecision(history []*backend.Event, ev *backend.Event) *backend.PendingDecision {
	pd := &backend.PendingDecision{TaskID: ev.TaskID, Name: ev.Name, Attempt: ev.Attempt, PreviousDeliveryAt: ev.FireAt}
	for _, h := range history {
		if h.Type == backend.EventTaskScheduled && h.TaskID == ev.TaskID {
			pd.Name, pd.Input = h.Name, h.Input
			if h.Activity != nil {
				pd.Options = *h.Activity
			}
		}
	}
	if ev.Activity != nil {
		pd.Options = *ev.Activity
	}
	return pd
}

func cloneSuspension(s *backend.Suspension) *backend.Suspension {
	if s == nil {
		return nil
	}
	c := *s
	c.Pending = append([]*backend.PendingDecision(nil), s.Pending...)
	return &c
}

// PoisonStep returns the effects that suspend an instance whose step keeps
// failing before it commits: nothing is consumed, so every message waits
// for the resume, which retries the step.
func PoisonStep(wi *backend.OrchestrationWorkItem, reason string, now time.Time) *backend.CompleteOrchestrationStepParams {
	inst := wi.Instance
	now = now.UTC()
	susp := cloneSuspension(inst.Suspension)
	if susp == nil {
		susp = &backend.Suspension{Since: now}
	}
	susp.Reason, susp.Poisoned = "poisoned: "+reason, true
	return &backend.CompleteOrchestrationStepParams{
		InstanceID: inst.ID, ExecutionID: inst.ExecutionID, Attempt: wi.Attempt,
		Status: backend.StatusSuspended, Suspension: susp,
		Output: inst.Output, Failure: inst.Failure, CustomStatus: inst.CustomStatus, Now: now,
		NewEvents: []*backend.Event{
			{Type: backend.EventOrchestratorStarted, Timestamp: now},
			{Type: backend.EventExecutionSuspended, Reason: susp.Reason, Suspension: cloneSuspension(susp), Timestamp: now},
		},
	}
}
