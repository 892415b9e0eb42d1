package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
)

func (a *app) suspendCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "suspend ID",
		Short: "Suspend an instance until 'duro resume'",
		Long: `Suspend asks the instance ID to pause. The request waits in the instance's
inbox: the next step a worker runs records the suspension (status Suspended)
and suspends its running sub-orchestrations. From then on, activity results,
events and timers that arrive are kept, in order, and processed after
'duro resume'. Activities already running are not interrupted. Suspending a
suspended instance changes nothing.`,
		Example: `  duro suspend order-1 --reason "investigating a double charge"`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			c, closeStore, err := a.client(cmd, storeWrite)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx := cmd.Context()
			// Read the status before the request: afterwards a worker may
			// already have recorded this very suspension.
			before, _ := c.Get(ctx, id)
			if err := c.Suspend(ctx, id, reason); err != nil {
				return explain(ctx, c, id, err)
			}
			fmt.Fprintf(a.stdout, "suspension of %s requested; a worker records it at the instance's next step\n", id)
			if before != nil && before.Status == duro.StatusSuspended && before.Suspension != nil {
				fmt.Fprintf(a.stdout, "note: %s is already suspended, since %s (%s)\n", id, formatTime(before.Suspension.Since), before.Suspension.Reason)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the history")
	return cmd
}
