package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// instanceJSON is the JSON form of an instance (status -o json, list -o json).
// Payloads appear as the JSON they were stored as.
type instanceJSON struct {
	ID               string          `json:"id"`
	Name             string          `json:"name"`
	Status           duro.Status     `json:"status"`
	ExecutionID      string          `json:"executionId,omitempty"`
	ParentInstanceID string          `json:"parentInstanceId,omitempty"`
	CreatedAt        time.Time       `json:"createdAt"`
	UpdatedAt        time.Time       `json:"updatedAt"`
	CompletedAt      time.Time       `json:"completedAt,omitzero"`
	Input            json.RawMessage `json:"input,omitempty"`
	Output           json.RawMessage `json:"output,omitempty"`
	CustomStatus     json.RawMessage `json:"customStatus,omitempty"`
	InputSize        int             `json:"inputSize"`
	OutputSize       int             `json:"outputSize"`
	CustomStatusSize int             `json:"customStatusSize"`
	Failure          *failureJSON    `json:"failure,omitempty"`
	Suspension       *suspensionJSON `json:"suspension,omitempty"`
	// PayloadsOmitted is set in lists, which leave out inputs, outputs
	// and large custom statuses ('duro status ID' shows them).
	PayloadsOmitted bool `json:"payloadsOmitted,omitempty"`
	// Termination is set, by status, for a Terminated instance.
	Termination *terminationJSON `json:"termination,omitempty"`
}

// terminationJSON is when and why an instance was terminated.
type terminationJSON struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// termination reads, from its history, why a Terminated instance was
// terminated (nil for other instances, or a history without the event).
func termination(ctx context.Context, c instanceAPI, inst *duro.Instance) *terminationJSON {
	if inst.Status != duro.StatusTerminated {
		return nil
	}
	h, err := c.History(ctx, inst.ID)
	if err != nil {
		return nil
	}
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].Type == backend.EventExecutionTerminated {
			return &terminationJSON{Reason: h[i].Reason, At: utc(h[i].Timestamp)}
		}
	}
	return nil
}

func toInstanceJSON(i *duro.Instance) instanceJSON {
	return instanceJSON{
		ID: i.ID, Name: i.Name, Status: i.Status, ExecutionID: i.ExecutionID, ParentInstanceID: i.ParentInstanceID,
		CreatedAt: utc(i.CreatedAt), UpdatedAt: utc(i.UpdatedAt), CompletedAt: utc(i.CompletedAt),
		Input: rawJSON(i.RawInput), Output: rawJSON(i.RawOutput), CustomStatus: rawJSON(i.RawCustomStatus),
		InputSize: i.InputSize, OutputSize: i.OutputSize, CustomStatusSize: i.CustomStatusSize,
		Failure: toFailureJSON(i.Failure), Suspension: toSuspensionJSON(i.Suspension), PayloadsOmitted: i.PayloadsOmitted,
	}
}

// byteSize renders a payload size for people: 0 B, 812 B, 2.0 MiB.
func byteSize(n int) string {
	switch {
	case n < 1024:
		return strconv.Itoa(n) + " B"
	case n < 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

// suspensionJSON is the JSON form of an instance's suspension.
type suspensionJSON struct {
	Reason   string        `json:"reason"`
	Since    time.Time     `json:"since"`
	Poisoned bool          `json:"poisoned,omitempty"`
	Pending  []pendingJSON `json:"pending,omitempty"`
}

func toSuspensionJSON(s *duro.Suspension) *suspensionJSON {
	if s == nil {
		return nil
	}
	j := &suspensionJSON{Reason: s.Reason, Since: utc(s.Since), Poisoned: s.Poisoned}
	for _, pd := range s.Pending {
		j.Pending = append(j.Pending, toPendingJSON(pd))
	}
	return j
}

// pendingJSON is the JSON form of a task that waits for a decision.
type pendingJSON struct {
	TaskID             int                     `json:"taskId"`
	Activity           string                  `json:"activity"`
	Attempt            int                     `json:"attempt"`
	PreviousDeliveryAt time.Time               `json:"previousDeliveryAt,omitzero"`
	Input              json.RawMessage         `json:"input,omitempty"`
	Options            backend.ActivityOptions `json:"options"`
}

func toPendingJSON(pd *duro.PendingDecision) pendingJSON {
	return pendingJSON{TaskID: pd.TaskID, Activity: pd.Name, Attempt: pd.Attempt,
		PreviousDeliveryAt: utc(pd.PreviousDeliveryAt), Input: rawJSON(pd.Input), Options: pd.Options}
}

// failureJSON is the JSON form of a recorded failure.
type failureJSON struct {
	Message      string          `json:"message"`
	Type         string          `json:"type,omitempty"`
	TaskName     string          `json:"taskName,omitempty"`
	NonRetryable bool            `json:"nonRetryable,omitempty"`
	Details      json.RawMessage `json:"details,omitempty"`
	Stack        string          `json:"stack,omitempty"`
	Cause        *failureJSON    `json:"cause,omitempty"`
}

func toFailureJSON(f *duro.Failure) *failureJSON {
	if f == nil {
		return nil
	}
	return &failureJSON{Message: f.Message, Type: f.Type, TaskName: f.TaskName, NonRetryable: f.NonRetryable,
		Details: rawJSON(f.Details), Stack: f.Stack, Cause: toFailureJSON(f.Cause)}
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// rawJSON returns a payload for embedding in JSON output: as it is if it is
// JSON (the default codec), else as a JSON string.
func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// preview renders a payload on one line, cut to limit runes (0: no cut).
func preview(b []byte, limit int) string {
	var s string
	var buf bytes.Buffer
	if json.Valid(b) && json.Compact(&buf, b) == nil {
		s = buf.String()
	} else {
		s = strconv.Quote(string(b))
	}
	if limit > 0 && utf8.RuneCountInString(s) > limit {
		r := []rune(s)
		s = string(r[:limit-1]) + "…"
	}
	return s
}

// payloadText renders a payload for the status summary; "-" if there is none.
func payloadText(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return preview(b, 0)
}

// formatTime renders a time for people, in the local zone; "-" if zero.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05.000 MST")
}

// failureText renders a failure and its causes on one line.
func failureText(f *duro.Failure) string {
	var parts []string
	for ; f != nil; f = f.Cause {
		s := f.Message
		if f.Type != "" {
			s = f.Type + ": " + s
		}
		if f.TaskName != "" {
			s += " (in " + f.TaskName + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; caused by ")
}

// renderInstance writes the readable summary of status and start --wait.
// store is the --store argument that printed commands need ("" for none);
// term, if not nil, is the instance's termination.
func renderInstance(w io.Writer, i *duro.Instance, store string, term *terminationJSON) error {
	type row struct{ k, v string }
	rows := []row{
		{"ID", i.ID},
		{"Name", i.Name},
		{"Status", string(i.Status)},
	}
	if s := i.Suspension; s != nil {
		rows = append(rows, row{"Suspended", "since " + formatTime(s.Since)})
		if s.Reason != "" {
			rows = append(rows, row{"Reason", s.Reason})
		}
		if s.Poisoned {
			rows = append(rows, row{"Poisoned", "yes: a step kept failing before it committed; resuming retries it"})
		}
		for _, pd := range s.Pending {
			rows = append(rows, row{"Awaiting", "a decision on " + pendingText(pd, 60)})
		}
	}
	if i.ParentInstanceID != "" {
		rows = append(rows, row{"Parent", i.ParentInstanceID})
	}
	rows = append(rows,
		row{"Execution", i.ExecutionID},
		row{"Created", formatTime(i.CreatedAt)},
		row{"Updated", formatTime(i.UpdatedAt)},
		row{"Completed", formatTime(i.CompletedAt)},
		row{"Input", payloadText(i.RawInput)},
		row{"Output", payloadText(i.RawOutput)},
		row{"Custom status", payloadText(i.RawCustomStatus)},
	)
	if term != nil {
		reason := term.Reason
		if reason == "" {
			reason = "(no reason given)"
		}
		rows = append(rows, row{"Terminated", reason + ", at " + formatTime(term.At)})
	}
	if i.Failure != nil {
		rows = append(rows, row{"Failure", failureText(i.Failure)})
		if i.Failure.Stack != "" {
			rows = append(rows, row{"Stack", indentLines(i.Failure.Stack, 15)})
		}
	}
	if i.Status == duro.StatusPending {
		rows = append(rows, row{"Note", "Pending until a worker with " + strconv.Quote(i.Name) + " registered runs it"})
	}
	if i.Status == duro.StatusSuspended {
		var pending []*duro.PendingDecision
		if i.Suspension != nil {
			pending = i.Suspension.Pending
		}
		rows = append(rows, row{"Resume with", indentLines(strings.Join(resumeCommands(i.ID, pending, store), "\n"), 15)})
	}
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%-14s %s\n", r.k+":", r.v)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func indentLines(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
}

// pendingText describes a task that waits for a decision on one line, its
// input cut to limit runes (0: no cut).
func pendingText(pd *duro.PendingDecision, limit int) string {
	s := fmt.Sprintf("task #%d %s (attempt %d", pd.TaskID, pd.Name, pd.Attempt)
	if !pd.PreviousDeliveryAt.IsZero() {
		s += ", previous delivery " + formatTime(pd.PreviousDeliveryAt)
	}
	if len(pd.Input) > 0 {
		s += ", input " + preview(pd.Input, limit)
	}
	return s + ")"
}

// pendingList names the tasks that wait for a decision: "task #0 (Charge,
// attempt 2)", "tasks #0 (Charge, attempt 2) and #3 (Ship, attempt 2)".
func pendingList(pending []*duro.PendingDecision) string {
	names := make([]string, len(pending))
	for i, pd := range pending {
		names[i] = fmt.Sprintf("#%d (%s, attempt %d)", pd.TaskID, pd.Name, pd.Attempt)
	}
	switch len(names) {
	case 0:
		return "no task"
	case 1:
		return "task " + names[0]
	}
	return "tasks " + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// decisionSyntax is what --decide takes, for messages and help.
const decisionSyntax = "retry, result:JSON or fail:MESSAGE"

// resumeCommands returns the commands that resume instance id with a
// decision for each of its pending tasks, each with a comment saying what it
// does. store is the --store argument the commands need ("" for none).
func resumeCommands(id string, pending []*duro.PendingDecision, store string) []string {
	base := "duro resume " + quoteArg(id)
	switch len(pending) {
	case 0:
		return []string{base + store}
	case 1:
		pd := pending[0]
		task := fmt.Sprintf("%s --task %d", base, pd.TaskID)
		cmds := []string{task + " --retry" + store, task + " --result JSON" + store, task + " --fail MESSAGE" + store}
		width := 0
		for _, c := range cmds {
			width = max(width, utf8.RuneCountInString(c))
		}
		notes := []string{
			fmt.Sprintf("run %s again (attempt %d)", pd.Name, pd.Attempt+1),
			"complete it with this result; the code does not run",
			"fail it (OperatorFailed, not retried)",
		}
		for i := range cmds {
			cmds[i] = fmt.Sprintf("%-*s  # %s", width, cmds[i], notes[i])
		}
		return cmds
	}
	var b strings.Builder
	b.WriteString(base)
	for _, pd := range pending {
		fmt.Fprintf(&b, " --decide %d=DECISION", pd.TaskID)
	}
	return []string{b.String() + store, "# DECISION for each task: " + decisionSyntax}
}
