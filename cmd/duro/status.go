package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/durohq/duro/server"
)

// statusJSON is status -o json: the instance with its work in flight.
type statusJSON struct {
	instanceJSON
	InFlight *server.InFlight `json:"inFlight,omitempty"`
}

func (a *app) statusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show an instance's status, input, output and failure",
		Long: `Status shows a summary of the instance ID: its status, orchestration name,
times, input, output and custom status (as JSON) and, for a failed instance,
the failure's type and message; for a terminated one, the termination's
reason and time. For a suspended instance it shows why and
since when, whether its step was poisoned, the tasks that await an
operator's decision, and the command that resumes it.

Under "In flight" it shows the work the instance has in flight: its
orchestration step (waiting, running on a worker, or leased to one whose
lease lapsed), each activity call that has not finished (its task,
attempt, lease owner and expiry, its last failure and when it runs
again), its timers, and what keeps it from progressing, such as no live
worker registering its orchestration ('duro workers' lists them). -o json
prints the same as a JSON object.`,
		Example: `  duro status order-1
  duro status order-1 -o json | jq .output`,
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
			inst, err := c.Get(ctx, args[0])
			if err != nil {
				return explain(ctx, c, args[0], err)
			}
			term := termination(ctx, c, inst)
			// The work in flight; a store or server that cannot show it
			// does not keep the summary from printing.
			f, ferr := c.InFlight(ctx, inst.ID)
			if asJSON {
				j := toInstanceJSON(inst)
				j.Termination = term
				out := statusJSON{instanceJSON: j}
				if f != nil && (!f.Status.IsTerminal() || len(f.Activities) > 0) {
					out.InFlight = server.NewInFlight(f)
				}
				return writeJSON(a.stdout, out)
			}
			if err := renderInstance(a.stdout, inst, a.storeArg(cmd), term); err != nil {
				return err
			}
			if ferr != nil {
				_, err := fmt.Fprintf(a.stdout, "In flight:     unavailable: %v\n", ferr)
				return err
			}
			if f == nil {
				return nil
			}
			return renderInFlight(a.stdout, f)
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// addOutputFlag adds -o/--output to cmd.
func addOutputFlag(cmd *cobra.Command, output *string) {
	cmd.Flags().StringVarP(output, "output", "o", "text", "output format: text or json")
}
