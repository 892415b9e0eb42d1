package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) terminateCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "terminate ID",
		Short: "Ask an instance to stop",
		Long: `Terminate asks the instance ID to stop. The request waits in the instance's
inbox: the next step a worker runs records the termination (status
Terminated), terminates its running sub-orchestrations and runs no more
orchestration code. Activities already running are not interrupted.`,
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
			fmt.Fprintf(a.stdout, "termination of %s requested; a worker records it at the instance's next step\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the history")
	return cmd
}
