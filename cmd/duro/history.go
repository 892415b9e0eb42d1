package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

func (a *app) historyCmd() *cobra.Command {
	var output string
	var full bool
	cmd := &cobra.Command{
		Use:   "history ID",
		Short: "Show an instance's history as a timeline",
		Long: `History prints the history of the instance ID (its current execution), one
line per event: the time since the first event, the event type, the task ID
that pairs a scheduled task with its result, the task's name, a preview of
its payload, the delivery attempt that produced a task's result, how long
the task took, and failure messages. An at-most-once activity shows its
policy when scheduled (at-most-once/Suspend); suspensions show their reason
and the tasks awaiting a decision, resumes the operator's decisions, and
rewinds the tasks they re-run, patch markers the patch and whether
DeprecatePatch recorded it. -o json prints the events as JSON.

'duro history export' writes histories to files for replay tests.`,
		Example: `  duro history order-1
  duro history order-1 --full
  duro history order-1 -o json
  duro history export --dir testdata/histories --name ProcessOrder`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := parseOutput(output)
			if err != nil {
				return err
			}
			c, closeStore, err := a.client(cmd, storeRead)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx := cmd.Context()
			events, err := c.History(ctx, args[0])
			if err != nil {
				return explain(ctx, c, args[0], err)
			}
			if asJSON {
				out := make([]eventJSON, 0, len(events))
				for _, e := range events {
					out = append(out, toEventJSON(e))
				}
				return writeJSON(a.stdout, out)
			}
			if len(events) == 0 {
				if inst, err := c.Get(ctx, args[0]); err == nil && inst.Status == duro.StatusPending {
					fmt.Fprintf(a.stdout, "no events yet: %s is Pending until a worker with %q registered runs it\n", inst.ID, inst.Name)
					return nil
				}
			}
			return renderTimeline(a.stdout, events, full)
		},
	}
	addOutputFlag(cmd, &output)
	cmd.Flags().BoolVar(&full, "full", false, "show payloads in full instead of a preview")
	cmd.AddCommand(a.historyExportCmd())
	return cmd
}

// eventJSON is the JSON form of a history event, with payloads as JSON.
type eventJSON struct {
	Type        backend.EventType  `json:"type"`
	Timestamp   time.Time          `json:"timestamp"`
	TaskID      *int               `json:"taskId,omitempty"`
	Name        string             `json:"name,omitempty"`
	InstanceID  string             `json:"instanceId,omitempty"`
	ExecutionID string             `json:"executionId,omitempty"`
	Input       json.RawMessage    `json:"input,omitempty"`
	Result      json.RawMessage    `json:"result,omitempty"`
	Failure     *failureJSON       `json:"failure,omitempty"`
	FireAt      time.Time          `json:"fireAt,omitzero"`
	Attempt     int                `json:"attempt,omitempty"`
	Status      duro.Status        `json:"status,omitempty"`
	Reason      string             `json:"reason,omitempty"`
	Parent      *backend.ParentRef `json:"parent,omitempty"`
	// Activity holds a scheduled activity's options (at-most-once policy), or
	// on a result the options the executing worker enforced instead.
	Activity   *backend.ActivityOptions `json:"activity,omitempty"`
	Suspension *suspensionJSON          `json:"suspension,omitempty"`
	Decisions  []decisionJSON           `json:"decisions,omitempty"`
	// ResumeOutcome is set on the event that records a resume's outcome.
	ResumeOutcome *duro.ResumeOutcome `json:"resumeOutcome,omitempty"`
	Rewind        *backend.Rewind     `json:"rewind,omitempty"`
	// Deprecated is set on a patch marker DeprecatePatch recorded.
	Deprecated bool `json:"deprecated,omitempty"`
}

// decisionJSON is the JSON form of an operator's decision on a task.
type decisionJSON struct {
	TaskID  int                 `json:"taskId"`
	Action  duro.DecisionAction `json:"action"`
	Result  json.RawMessage     `json:"result,omitempty"`
	Message string              `json:"message,omitempty"`
}

func toEventJSON(e *duro.HistoryEvent) eventJSON {
	j := eventJSON{
		Type: e.Type, Timestamp: utc(e.Timestamp), Name: e.Name, InstanceID: e.InstanceID,
		ExecutionID: e.ExecutionID, Input: rawJSON(e.Input), Result: rawJSON(e.Result),
		Failure: toFailureJSON(e.Failure), FireAt: utc(e.FireAt), Attempt: e.Attempt,
		Status: e.Status, Reason: e.Reason, Parent: e.Parent,
		Activity: e.Activity, Suspension: toSuspensionJSON(e.Suspension), Rewind: e.Rewind,
		ResumeOutcome: e.ResumeOutcome, Deprecated: e.Deprecated,
	}
	for _, d := range e.Decisions {
		j.Decisions = append(j.Decisions, decisionJSON{TaskID: d.TaskID, Action: d.Action, Result: rawJSON(d.Result), Message: d.Message})
	}
	if hasTaskID(e.Type) || e.Type == backend.EventPatched {
		id := e.TaskID
		j.TaskID = &id
	}
	return j
}

// hasTaskID reports the event types that carry a task ID (0 included).
func hasTaskID(t backend.EventType) bool {
	switch t {
	case backend.EventTaskScheduled, backend.EventTaskCompleted, backend.EventTaskFailed,
		backend.EventTimerCreated, backend.EventTimerFired, backend.EventSubOrchestrationCreated,
		backend.EventSubOrchestrationCompleted, backend.EventSubOrchestrationFailed, backend.EventEventSent,
		backend.EventTaskDuplicate, backend.EventLateResult:
		return true
	}
	return false
}

// previewRunes is how much of a payload the timeline shows without --full.
const previewRunes = 60

// renderTimeline writes events as a readable timeline, one line per event.
// Results are paired with the event that scheduled them (same task ID) to
// name them and show how long they took.
func renderTimeline(w io.Writer, events []*duro.HistoryEvent, full bool) error {
	return renderEvents(w, events, full, true)
}

// renderEvents is renderTimeline, with or without the OrchestratorStarted
// events. Each of those carries its step's time, which comes after the
// times of the messages the step then records (an event is timed when it
// happened, not when a step took it in): without them, a timeline's times
// go forward.
func renderEvents(w io.Writer, events []*duro.HistoryEvent, full, steps bool) error {
	if !steps {
		var kept []*duro.HistoryEvent
		for _, e := range events {
			if e.Type != backend.EventOrchestratorStarted {
				kept = append(kept, e)
			}
		}
		events = kept
	}
	if len(events) == 0 {
		_, err := fmt.Fprintln(w, "no events")
		return err
	}
	limit := previewRunes
	if full {
		limit = 0
	}
	start := events[0].Timestamp
	for _, e := range events {
		if e.Timestamp.Before(start) {
			start = e.Timestamp
		}
	}
	type row struct{ offset, typ, task, name, rest string }
	rows := make([]row, 0, len(events))
	nameWidth := 0
	tl := &timeline{start: start, limit: limit, scheduled: map[int]*duro.HistoryEvent{}, decided: map[int]bool{}}
	for _, e := range events {
		name, rest := tl.describe(e)
		task := ""
		if hasTaskID(e.Type) {
			task = "#" + strconv.Itoa(e.TaskID)
		}
		rows = append(rows, row{offset(e.Timestamp.Sub(start)), string(e.Type), task, name, rest})
		if n := utf8.RuneCountInString(name); n > nameWidth && n <= maxNameWidth {
			nameWidth = n
		}
	}
	var b strings.Builder
	for _, r := range rows {
		line := fmt.Sprintf("%9s  %-25s %4s  %-*s  %s", r.offset, r.typ, r.task, nameWidth, r.name, r.rest)
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// maxNameWidth caps the name column; longer names push their line's details.
const maxNameWidth = 24

// timeline is what rendering an event needs to know of the events before it.
type timeline struct {
	start time.Time // the first event's time
	limit int       // payload previews' length (0: no cut)
	// scheduled holds the events that scheduled tasks, by task ID.
	scheduled map[int]*duro.HistoryEvent
	// decided marks the tasks whose result an operator's decision supplies.
	decided map[int]bool
}

// describe returns the name column and the details of one event.
func (tl *timeline) describe(e *duro.HistoryEvent) (name, details string) {
	scheduled, start, limit := tl.scheduled, tl.start, tl.limit
	var parts []string
	add := func(s ...string) { parts = append(parts, s...) }
	payload := func(label string, p []byte) {
		if len(p) > 0 {
			add(label + "=" + preview(p, limit))
		}
	}
	since := func() string {
		if s, ok := scheduled[e.TaskID]; ok {
			return "after " + shortDuration(e.Timestamp.Sub(s.Timestamp))
		}
		return ""
	}
	// enforced names the options the executing worker's registration
	// enforced instead of the scheduled ones.
	enforced := func(e *duro.HistoryEvent) {
		if o := e.Activity; o != nil && o.AtMostOnce {
			add("enforced at-most-once/" + policyName(o) + " (executing worker's registration)")
		}
	}
	name = e.Name
	if s, ok := scheduled[e.TaskID]; ok && isTaskResult(e.Type) {
		name = s.Name
	}
	switch e.Type {
	case backend.EventExecutionStarted:
		if e.Parent != nil {
			add(fmt.Sprintf("parent=%s (task #%d)", e.Parent.InstanceID, e.Parent.TaskID))
		}
		payload("input", e.Input)
	case backend.EventTaskScheduled:
		scheduled[e.TaskID] = e
		if o := e.Activity; o != nil {
			if o.AtMostOnce {
				add("at-most-once/" + policyName(o))
			}
			if o.MaxDeliveries > 0 {
				add("max " + strconv.Itoa(o.MaxDeliveries) + " deliveries")
			}
			if o.ApprovedAttempt > 0 {
				add("approved attempt " + strconv.Itoa(o.ApprovedAttempt))
			}
		}
		payload("input", e.Input)
	case backend.EventTaskCompleted, backend.EventTaskFailed:
		if e.Attempt == 0 && tl.decided[e.TaskID] {
			delete(tl.decided, e.TaskID)
			add("decided by an operator", since())
		} else {
			add("attempt "+strconv.Itoa(e.Attempt), since())
		}
		enforced(e)
		payload("result", e.Result)
	case backend.EventTaskDuplicate:
		if s, ok := scheduled[e.TaskID]; ok && name == "" {
			name = s.Name
		}
		add("attempt " + strconv.Itoa(e.Attempt))
		if !e.FireAt.IsZero() {
			add("previous delivery at " + offset(e.FireAt.Sub(start)))
		}
		add("possible duplicate: not run again")
		enforced(e)
	case backend.EventExecutionSuspended:
		if e.Reason != "" {
			add("reason: " + e.Reason)
		}
		if s := e.Suspension; s != nil {
			if s.Poisoned && !strings.HasPrefix(e.Reason, "poisoned") {
				add("poisoned")
			}
			if len(s.Pending) > 0 {
				add("awaits a decision on " + pendingList(s.Pending))
			}
		}
	case backend.EventExecutionResumed:
		if e.Reason != "" {
			add("reason: " + e.Reason)
		}
		if len(e.Decisions) > 0 {
			ds := make([]string, len(e.Decisions))
			for i, d := range e.Decisions {
				ds[i] = tl.decision(d)
			}
			add("decisions: " + strings.Join(ds, ", "))
		}
	case backend.EventExecutionRewound:
		if e.Reason != "" {
			add("reason: " + e.Reason)
		}
		if e.Rewind != nil {
			if len(e.Rewind.Tasks) == 0 {
				add("re-runs no task")
			} else {
				ids := make([]string, len(e.Rewind.Tasks))
				for i, id := range e.Rewind.Tasks {
					ids[i] = "#" + strconv.Itoa(id)
					if s, ok := scheduled[id]; ok {
						ids[i] += " " + taskName(s)
					}
				}
				add("re-runs " + strings.Join(ids, ", "))
			}
		}
	case backend.EventTimerCreated:
		scheduled[e.TaskID] = e
		name = "timer"
		add("fires in " + shortDuration(e.FireAt.Sub(e.Timestamp)))
	case backend.EventTimerFired:
		name = "timer"
		add(since())
	case backend.EventSubOrchestrationCreated:
		scheduled[e.TaskID] = e
		add("instance=" + e.InstanceID)
		payload("input", e.Input)
	case backend.EventSubOrchestrationCompleted, backend.EventSubOrchestrationFailed:
		add(since())
		payload("result", e.Result)
	case backend.EventEventRaised:
		name = strconv.Quote(e.Name)
		payload("data", e.Input)
	case backend.EventEventSent:
		name = strconv.Quote(e.Name)
		add("to=" + e.InstanceID)
		payload("data", e.Input)
	case backend.EventExecutionTerminated:
		if e.Reason != "" {
			add("reason: " + e.Reason)
		}
	case backend.EventPatched:
		name = strconv.Quote(e.Name)
		what := "new path (Patched)"
		if e.Deprecated {
			what = "deprecated (DeprecatePatch)"
		}
		add(what, "at task #"+strconv.Itoa(e.TaskID))
	case backend.EventLateResult:
		// "Charge completed after termination: ch_1"
		what := "completed"
		if e.Failure != nil {
			what = "failed"
		}
		what = e.Name + " " + what + " after " + endWord(e.Status)
		if len(e.Result) > 0 {
			what += ": " + preview(e.Result, limit)
		}
		add(what, "attempt "+strconv.Itoa(e.Attempt), "not processed")
	case backend.EventExecutionCompleted:
		name = string(e.Status)
		add("after " + shortDuration(e.Timestamp.Sub(start)))
		label := "output"
		if e.Status == duro.StatusContinuedAsNew {
			label = "next input"
		}
		payload(label, e.Result)
	}
	if e.Failure != nil {
		add("failed: " + failureText(e.Failure))
	}
	return name, joinNonEmpty(parts)
}

// decision renders an operator's decision and notes the tasks it completes.
func (tl *timeline) decision(d *backend.Decision) string {
	s := "#" + strconv.Itoa(d.TaskID) + " "
	switch d.Action {
	case backend.DecisionRetry:
		return s + "retry"
	case backend.DecisionResult:
		tl.decided[d.TaskID] = true
		return s + "result=" + preview(d.Result, tl.limit)
	case backend.DecisionFail:
		tl.decided[d.TaskID] = true
		return s + "fail: " + strconv.Quote(d.Message)
	}
	return s + string(d.Action)
}

// taskName names what a scheduling event scheduled.
func taskName(s *duro.HistoryEvent) string {
	switch s.Type {
	case backend.EventTimerCreated:
		return "timer"
	case backend.EventEventSent:
		return strconv.Quote(s.Name)
	}
	return s.Name
}

// policyName is an at-most-once task's policy, Fail when unset.
func policyName(o *backend.ActivityOptions) string {
	if o.OnDuplicate == "" {
		return string(duro.OnDuplicateFail)
	}
	return o.OnDuplicate
}

// isTaskResult reports the event types that complete a scheduled task.
// endWord names how an instance that ended with status s ended.
func endWord(s duro.Status) string {
	switch s {
	case duro.StatusTerminated:
		return "termination"
	case duro.StatusCompleted:
		return "completion"
	case duro.StatusFailed:
		return "failure"
	}
	return "the end (" + string(s) + ")"
}

func isTaskResult(t backend.EventType) bool {
	switch t {
	case backend.EventTaskCompleted, backend.EventTaskFailed, backend.EventTimerFired,
		backend.EventSubOrchestrationCompleted, backend.EventSubOrchestrationFailed:
		return true
	}
	return false
}

func joinNonEmpty(parts []string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "  ")
}

// offset renders a time offset from the first event: +1.234s.
func offset(d time.Duration) string {
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	if d < time.Minute {
		return fmt.Sprintf("%s%.3fs", sign, d.Seconds())
	}
	return sign + d.Round(time.Second).String()
}

// shortDuration renders a duration rounded to what people read: 12ms, 1.5s.
func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + shortDuration(-d)
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
