package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
)

func (a *app) raiseCmd() *cobra.Command {
	var data string
	cmd := &cobra.Command{
		Use:   "raise ID EVENT",
		Short: "Raise an external event to an instance",
		Long: `Raise delivers the external event EVENT, with optional JSON --data, to the
instance ID, where the orchestration's WaitForEvent(EVENT) receives it.
Events wait in the instance's inbox until a worker runs its next step; an
instance that has finished takes no more events.`,
		Example: `  duro raise order-1 shipped --data '{"tracking": "1Z999"}'
  duro raise order-1 approved`,
		Args: exactArgs("ID", "EVENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, event := args[0], args[1]
			if err := notEmpty("the EVENT name", event); err != nil {
				return err
			}
			raw, err := parseJSONFlag("data", data)
			if err != nil {
				return err
			}
			var payload any
			if raw != nil {
				payload = raw
			}
			c, closeStore, err := a.client(cmd, storeWrite)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx := cmd.Context()
			if err := c.RaiseEvent(ctx, id, event, payload); err != nil {
				return explain(ctx, c, id, err)
			}
			fmt.Fprintf(a.stdout, "raised event %s on %s\n", strconv.Quote(event), id)
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "the event's data, as JSON (or @FILE to read it from a file)")
	return cmd
}
