package replay

import (
	"fmt"
	"strconv"
	"time"

	"github.com/durohq/duro/backend"
)

// MaxResumeOutcomes is how many resume outcomes an instance keeps in its
// record (Instance.ResumeOutcomes); older ones stay in its history.
const MaxResumeOutcomes = 10

// KeepResumeOutcomes appends add to an instance's recorded resume outcomes
// and keeps the newest MaxResumeOutcomes. It returns nil, which keeps the
// stored ones, when add is empty.
func KeepResumeOutcomes(prev, add []*backend.ResumeOutcome) []*backend.ResumeOutcome {
	if len(add) == 0 {
		return nil
	}
	all := append(append(make([]*backend.ResumeOutcome, 0, len(prev)+len(add)), prev...), add...)
	return all[max(0, len(all)-MaxResumeOutcomes):]
}

// ResumeNotSuspended is the outcome of a resume that reached an instance
// that is not suspended: nothing to do without decisions, refused with
// them (no task waits for one).
func ResumeNotSuspended(id string, ev *backend.Event, now time.Time) *backend.ResumeOutcome {
	if len(ev.Decisions) == 0 {
		return &backend.ResumeOutcome{ID: id, Status: backend.ResumeApplied, At: now,
			Reason: "the instance was not suspended: nothing to resume"}
	}
	return ResumeRefused(id, ev, "the instance is not suspended", nil, now)
}

// ResumeRefused is the outcome of a resume refused for reason; pending
// are the tasks that waited for a decision, so that each decision says
// why it was not applied.
func ResumeRefused(id string, ev *backend.Event, reason string, pending map[int]bool, now time.Time) *backend.ResumeOutcome {
	o := &backend.ResumeOutcome{ID: id, Status: backend.ResumeRefused, Reason: reason, At: now}
	for _, d := range ev.Decisions {
		why := "not applied: the resume was refused"
		if !pending[d.TaskID] {
			why = "task " + strconv.Itoa(d.TaskID) + " does not wait for a decision"
		}
		o.Decisions = append(o.Decisions, &backend.DecisionOutcome{TaskID: d.TaskID, Action: d.Action,
			Status: backend.ResumeRefused, Reason: why})
	}
	return o
}

// ResumeApplied is the outcome of an applied resume; attempt gives, for a
// retried task, the attempt its code runs as (0 if unknown).
func ResumeApplied(id string, ev *backend.Event, attempt func(taskID int) int, now time.Time) *backend.ResumeOutcome {
	o := &backend.ResumeOutcome{ID: id, Status: backend.ResumeApplied, At: now}
	for _, d := range ev.Decisions {
		var what string
		switch d.Action {
		case backend.DecisionRetry:
			what = "its code runs again"
			if n := attempt(d.TaskID); n > 0 {
				what = fmt.Sprintf("its code runs again as attempt %d", n)
			}
		case backend.DecisionResult:
			what = "completed with the operator's result"
		case backend.DecisionFail:
			what = "failed: " + d.Message
		}
		o.Decisions = append(o.Decisions, &backend.DecisionOutcome{TaskID: d.TaskID, Action: d.Action,
			Status: backend.ResumeApplied, Reason: what})
	}
	return o
}

// refuseResumes records, for every resume among msgs, that the instance
// ended (how) before a step could apply it.
func refuseResumes(msgs []*backend.Message, how string, now time.Time) []*backend.ResumeOutcome {
	var out []*backend.ResumeOutcome
	for _, m := range msgs {
		if m.Event != nil && m.Event.Type == backend.EventExecutionResumed {
			decided := map[int]bool{}
			for _, d := range m.Event.Decisions {
				decided[d.TaskID] = true
			}
			out = append(out, ResumeRefused(m.ID, m.Event, how, decided, now))
		}
	}
	return out
}
