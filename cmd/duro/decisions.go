package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

func (a *app) decisionsCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "decisions",
		Short: "List the tasks that wait for an operator's decision",
		Long: `Decisions lists, oldest suspension first, every task that waits for an
operator's decision: an at-most-once activity (OnDuplicateSuspend) delivered
again after a delivery whose outcome is unknown, which may have done the
work. Its instance stays Suspended until 'duro resume' decides the task:
run it again (--retry), complete it with the result the work produced
(--result JSON), or fail it (--fail MESSAGE). Find out first, for example
from the payment provider, whether the earlier delivery did the work.

For each task it shows the instance and orchestration, the task ID and
activity, the attempt that found the duplicate and when the delivery before
it started, the task's input, the suspension's reason and time, and the
resume command to use. -o json prints the same as a JSON array.`,
		Example: `  duro decisions
  duro decisions -o json | jq -r '.[].instanceId'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := parseOutput(output)
			if err != nil {
				return err
			}
			c, closeStore, err := a.client(cmd, storeRead)
			if err != nil {
				return err
			}
			defer closeStore()
			tasks, err := c.PendingDecisions(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, toPendingTasksJSON(tasks, a.storeArg(cmd)))
			}
			return renderDecisions(a.stdout, tasks, a.storeArg(cmd))
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// pendingTaskJSON is the JSON form of a task that waits for a decision, with
// its instance.
type pendingTaskJSON struct {
	InstanceID         string                  `json:"instanceId"`
	Orchestration      string                  `json:"orchestration"`
	TaskID             int                     `json:"taskId"`
	Activity           string                  `json:"activity"`
	Attempt            int                     `json:"attempt"`
	PreviousDeliveryAt time.Time               `json:"previousDeliveryAt,omitzero"`
	Input              json.RawMessage         `json:"input,omitempty"`
	Reason             string                  `json:"reason"`
	SuspendedAt        time.Time               `json:"suspendedAt"`
	Options            backend.ActivityOptions `json:"options"`
	// Resume is the command that resumes the instance, with a placeholder
	// decision for each of its waiting tasks.
	Resume string `json:"resume"`
}

func toPendingTasksJSON(tasks []*duro.PendingTask, store string) []pendingTaskJSON {
	out := make([]pendingTaskJSON, 0, len(tasks))
	for _, g := range groupPending(tasks) {
		cmd := resumeTemplate(g[0].InstanceID, pendingOf(g), store)
		for _, t := range g {
			out = append(out, pendingTaskJSON{
				InstanceID: t.InstanceID, Orchestration: t.Orchestration, TaskID: t.TaskID, Activity: t.Name,
				Attempt: t.Attempt, PreviousDeliveryAt: utc(t.PreviousDeliveryAt), Input: rawJSON(t.Input),
				Reason: t.Reason, SuspendedAt: utc(t.SuspendedAt), Options: t.Options, Resume: cmd,
			})
		}
	}
	return out
}

// resumeTemplate is the command that resumes instance id with a placeholder
// decision for each pending task.
func resumeTemplate(id string, pending []*duro.PendingDecision, store string) string {
	if len(pending) == 1 {
		return fmt.Sprintf("duro resume %s --task %d (--retry | --result JSON | --fail MESSAGE)%s", quoteArg(id), pending[0].TaskID, store)
	}
	return resumeCommands(id, pending, store)[0]
}

// groupPending groups tasks by instance, in the order instances first appear.
func groupPending(tasks []*duro.PendingTask) [][]*duro.PendingTask {
	var groups [][]*duro.PendingTask
	index := map[string]int{}
	for _, t := range tasks {
		i, ok := index[t.InstanceID]
		if !ok {
			i = len(groups)
			index[t.InstanceID] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], t)
	}
	return groups
}

func pendingOf(g []*duro.PendingTask) []*duro.PendingDecision {
	out := make([]*duro.PendingDecision, len(g))
	for i, t := range g {
		out[i] = &t.PendingDecision
	}
	return out
}

// renderDecisions writes the tasks that wait for a decision, grouped by
// instance, each instance with the command that resumes it. store is the
// --store argument of the printed commands ("" for none).
func renderDecisions(w io.Writer, tasks []*duro.PendingTask, store string) error {
	var b strings.Builder
	switch len(tasks) {
	case 0:
		b.WriteString("no task waits for a decision\n")
	case 1:
		b.WriteString("1 task waits for a decision:\n")
	default:
		fmt.Fprintf(&b, "%d tasks wait for a decision:\n", len(tasks))
	}
	const pad = "            "
	for _, g := range groupPending(tasks) {
		first := g[0]
		fmt.Fprintf(&b, "\n%s (%s), suspended since %s\n", first.InstanceID, first.Orchestration, formatTime(first.SuspendedAt))
		if first.Reason != "" {
			fmt.Fprintf(&b, "  reason:   %s\n", first.Reason)
		}
		for _, t := range g {
			fmt.Fprintf(&b, "  %-9s %s, attempt %d", fmt.Sprintf("task #%d:", t.TaskID), t.Name, t.Attempt)
			if !t.PreviousDeliveryAt.IsZero() {
				fmt.Fprintf(&b, ", previous delivery %s", formatTime(t.PreviousDeliveryAt))
			}
			b.WriteString("\n")
			if len(t.Input) > 0 {
				fmt.Fprintf(&b, "%sinput: %s\n", pad, preview(t.Input, previewRunes))
			}
		}
		for i, line := range resumeCommands(first.InstanceID, pendingOf(g), store) {
			label := pad
			if i == 0 {
				label = "  resume:   "
			}
			fmt.Fprintf(&b, "%s%s\n", label, line)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
