package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"duro"
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
	Failure          *failureJSON    `json:"failure,omitempty"`
}

func toInstanceJSON(i *duro.Instance) instanceJSON {
	return instanceJSON{
		ID: i.ID, Name: i.Name, Status: i.Status, ExecutionID: i.ExecutionID, ParentInstanceID: i.ParentInstanceID,
		CreatedAt: utc(i.CreatedAt), UpdatedAt: utc(i.UpdatedAt), CompletedAt: utc(i.CompletedAt),
		Input: rawJSON(i.RawInput), Output: rawJSON(i.RawOutput), CustomStatus: rawJSON(i.RawCustomStatus),
		Failure: toFailureJSON(i.Failure),
	}
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
func renderInstance(w io.Writer, i *duro.Instance) error {
	type row struct{ k, v string }
	rows := []row{
		{"ID", i.ID},
		{"Name", i.Name},
		{"Status", string(i.Status)},
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
	if i.Failure != nil {
		rows = append(rows, row{"Failure", failureText(i.Failure)})
		if i.Failure.Stack != "" {
			rows = append(rows, row{"Stack", indentLines(i.Failure.Stack, 15)})
		}
	}
	if i.Status == duro.StatusPending {
		rows = append(rows, row{"Note", "Pending until a worker with " + strconv.Quote(i.Name) + " registered runs it"})
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
