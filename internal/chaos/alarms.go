package chaos

import (
	"slices"
	"sort"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/telemetry"
)

// An alarm is a delivery of an at-most-once call that the engine treated as
// a possible duplicate: it did not run the code but failed the task
// (OnDuplicateFail), suspended the instance (OnDuplicateSuspend) or asked
// the reconciler (OnDuplicateReconcile). An alarm is false when no earlier
// delivery of the call ran its code — the ledger, written by the code before
// its effect, has no row for a smaller attempt: an operator was alarmed (or
// a reconciler asked the provider) for nothing. False alarms are not
// violations; they are what a precise at-most-once engine avoids.

// Alarm sources.
const (
	AlarmFailed     = "TaskFailed PossibleDuplicate" // OnDuplicateFail, in history
	AlarmSuspended  = "TaskDuplicate"                // OnDuplicateSuspend, in history
	AlarmReconciled = "reconciler call"              // OnDuplicateReconcile, in the ledger
)

// Alarm is one possible-duplicate delivery: the attempt of task Task of
// instance Instance.
type Alarm struct {
	Instance string `json:"instance"`
	Task     int    `json:"task"`
	Attempt  int    `json:"attempt"`
	Source   string `json:"source"`
}

// historyAlarms returns the alarms recorded in one instance's history. The
// task ID of the alarm is the scheduled task's: an operator decision that
// completes the task (CompleteTask) keeps it, so the ledger rows of the
// call, the alarm and the operator's result all share it.
func historyAlarms(instance string, h []*backend.Event) []Alarm {
	var out []Alarm
	for _, ev := range h {
		switch {
		case ev.Type == backend.EventTaskDuplicate:
			out = append(out, Alarm{Instance: instance, Task: ev.TaskID, Attempt: ev.Attempt, Source: AlarmSuspended})
		case ev.Type == backend.EventTaskFailed && ev.Failure != nil && ev.Failure.Type == duro.FailureTypePossibleDuplicate:
			out = append(out, Alarm{Instance: instance, Task: ev.TaskID, Attempt: ev.Attempt, Source: AlarmFailed})
		}
	}
	return out
}

// False-alarm causes: what became of the earlier deliveries of a call none
// of which ran the code. The first of these that applies names the cause.
const (
	// CauseKilledDuring: an earlier delivery reached the worker's code
	// path (its span started) and its process died before the delivery
	// ended: the crash window between the claim (or the start mark) and
	// the code's first durable act. The fate of the process follows.
	CauseKilledDuring = "crash: killed during an earlier delivery"
	// CauseNeverSeen: an earlier attempt reached no worker's code path:
	// the claiming worker died right after the claim (an eager claim in a
	// step's commit, a kill after the claim) or the claim's reply was lost.
	CauseNeverSeen = "crash: an earlier claim never reached the code"
	// CauseLeaseLost: an earlier delivery ended because it lost its lease
	// (its worker was paused past the lease, or cut off) before the code
	// ran.
	CauseLeaseLost = "pause: an earlier delivery lost its lease"
	// CauseStopped: every earlier delivery ended without running the code,
	// one of them on a worker being stopped gracefully (SIGTERM).
	CauseStopped = "stop: given up by a stopping worker"
	// CauseHandedBack: every earlier delivery ended without running the
	// code (handed back, released, or an alarm of its own whose outcome was
	// not kept), none on a stopping worker.
	CauseHandedBack = "hand-back: earlier deliveries ended unstarted"
)

// crashCause reports whether a cause counts among the crashes (kills,
// pauses, lost claims) rather than the hand-backs and stops.
func crashCause(c string) bool {
	return c != CauseStopped && c != CauseHandedBack
}

// Process fates, as the coordinator saw them.
const (
	FateSIGKILL  = "sigkill"
	FateSIGTERM  = "sigterm (graceful stop)"
	FateRunning  = "still running"
	FateExited   = "exited"
	fateFaultPre = "fault point: "
)

// AlarmStats sums up the alarms of a run.
type AlarmStats struct {
	// PossibleDuplicates counts the distinct alarms (instance, task,
	// attempt).
	PossibleDuplicates int `json:"possibleDuplicates"`
	// BySource counts them by where they were seen.
	BySource map[string]int `json:"possibleDuplicatesBySource,omitempty"`
	// FalseAlarms counts the alarms none of whose earlier deliveries ran
	// the code.
	FalseAlarms int `json:"falseAlarms"`
	// AfterHandBack counts the false alarms whose earlier deliveries all
	// ended without running the code (CauseHandedBack, CauseStopped): a
	// precise engine raises none.
	AfterHandBack int `json:"falseAlarmsAfterHandBackOrStop"`
	// AfterCrash counts the other false alarms: an earlier delivery died,
	// was lost or was paused (CauseKilledDuring, CauseNeverSeen,
	// CauseLeaseLost).
	AfterCrash int `json:"falseAlarmsAfterCrash"`
	// Causes counts the false alarms by cause (CauseKilledDuring is
	// followed by the fate of the process).
	Causes map[string]int `json:"falseAlarmCauses,omitempty"`
	// Examples are the first false alarms (by instance, task, attempt),
	// with their causes.
	Examples []FalseAlarm `json:"falseAlarmExamples,omitempty"`
}

// FalseAlarm is one false alarm and its cause.
type FalseAlarm struct {
	Alarm
	Cause string `json:"cause"`
}

const maxExamples = 10

// classifyAlarms judges alarms against ran (per call, the attempts whose
// code started: Ledger.Attempts), explaining each false one by the earlier
// deliveries seen (readDeliveries) and the fates of their processes (by
// pid; a pid not in fates is taken to be running).
func classifyAlarms(alarms []Alarm, ran map[taskKey][]int, deliveries map[taskKey]map[int][]delivery, fates map[int]string) AlarmStats {
	st := AlarmStats{BySource: map[string]int{}, Causes: map[string]int{}}
	type akey struct {
		taskKey
		attempt int
	}
	seen := map[akey]bool{}
	var uniq []Alarm
	for _, a := range alarms {
		k := akey{taskKey{a.Instance, a.Task}, a.Attempt}
		if seen[k] {
			continue
		}
		seen[k] = true
		uniq = append(uniq, a)
	}
	sort.Slice(uniq, func(i, j int) bool {
		a, b := uniq[i], uniq[j]
		if a.Instance != b.Instance {
			return a.Instance < b.Instance
		}
		if a.Task != b.Task {
			return a.Task < b.Task
		}
		return a.Attempt < b.Attempt
	})
	for _, a := range uniq {
		st.PossibleDuplicates++
		st.BySource[a.Source]++
		k := taskKey{a.Instance, a.Task}
		if slices.ContainsFunc(ran[k], func(n int) bool { return n < a.Attempt }) {
			continue
		}
		st.FalseAlarms++
		cause := falseAlarmCause(a.Attempt, deliveries[k], fates)
		if crashCause(cause) {
			st.AfterCrash++
		} else {
			st.AfterHandBack++
		}
		if cause == CauseKilledDuring {
			// One killed delivery names the fate; the earliest, for a
			// stable answer.
			cause += " (" + killedFate(a.Attempt, deliveries[k], fates) + ")"
		}
		st.Causes[cause]++
		if len(st.Examples) < maxExamples {
			st.Examples = append(st.Examples, FalseAlarm{Alarm: a, Cause: cause})
		}
	}
	return st
}

// falseAlarmCause explains a false alarm at attempt from the earlier
// deliveries of its call (by attempt).
func falseAlarmCause(attempt int, byAttempt map[int][]delivery, fates map[int]string) string {
	killed, unseen, leaseLost, stopped := false, false, false, false
	for n := 1; n < attempt; n++ {
		ds := byAttempt[n]
		if len(ds) == 0 {
			unseen = true
			continue
		}
		for _, d := range ds {
			switch {
			case !d.Ended:
				killed = true
			case d.Outcome == telemetry.OutcomeLeaseLost:
				leaseLost = true
			case fates[d.PID] == FateSIGTERM:
				stopped = true
			}
		}
	}
	switch {
	case killed:
		return CauseKilledDuring
	case unseen:
		return CauseNeverSeen
	case leaseLost:
		return CauseLeaseLost
	case stopped:
		return CauseStopped
	}
	return CauseHandedBack
}

// killedFate returns the fate of the process of the earliest earlier
// delivery that never ended.
func killedFate(attempt int, byAttempt map[int][]delivery, fates map[int]string) string {
	for n := 1; n < attempt; n++ {
		for _, d := range byAttempt[n] {
			if !d.Ended {
				if f, ok := fates[d.PID]; ok {
					return f
				}
				return FateRunning
			}
		}
	}
	return FateRunning
}
