package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
)

func (a *app) terminateCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "terminate ID",
		Short: "Ask an instance to stop",
		Long: `Terminate asks the instance ID to stop: a step records the termination
(status Terminated), terminates its running sub-orchestrations and runs no
more orchestration code. Activities already running are not interrupted.
When no worker holds the instance's step (none is running, or none
registers its orchestration, such as a Pending instance nobody can start),
terminate records the termination itself, at once; otherwise the request
waits in the inbox for the worker that holds the step.`,
		Example: `  duro terminate order-1 --reason "customer cancelled"`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			c, closeStore, err := a.client(cmd, storeWrite)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx := cmd.Context()
			if err := c.Terminate(ctx, id, reason); err != nil {
				return explain(ctx, c, id, err)
			}
			if inst, err := c.Get(ctx, id); err == nil && inst.Status == duro.StatusTerminated {
				fmt.Fprintf(a.stdout, "terminated %s (no worker held it, so the termination was recorded at once)\n", id)
				return nil
			}
			fmt.Fprintf(a.stdout, "termination of %s requested; the worker that holds it records it at the instance's next step\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the history")
	return cmd
}
