package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) rewindCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "rewind ID",
		Short: "Run a Failed instance again from its first failure",
		Long: `Rewind returns the Failed instance ID to Running: the tasks whose failure
ended it (and, in turn, its failed sub-orchestrations) run again with new
attempt numbers, the tasks that completed do not, and the orchestration
continues from the point before the first failure. The history keeps the
old failure and records the rewind; 'duro history ID' shows both.

Only Failed instances can be rewound. Fix the cause first (deploy the
fixed activity, bring the service back), or the tasks fail again.`,
		Example: `  duro rewind order-1 --reason "the payment service is back"`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			c, closeStore, err := a.client(cmd, storeWrite)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx := cmd.Context()
			if err := c.Rewind(ctx, id, reason); err != nil {
				return explain(ctx, c, id, err)
			}
			fmt.Fprintf(a.stdout, "%s rewound: it is Running again, and a worker re-runs its failed tasks at its next step\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the history")
	return cmd
}
