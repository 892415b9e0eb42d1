package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
)

func (a *app) startCmd() *cobra.Command {
	var id, input, startAt string
	var replace, wait bool
	cmd := &cobra.Command{
		Use:   "start NAME",
		Short: "Start an orchestration instance and print its ID",
		Long: `Start creates an instance of the orchestration NAME and prints its ID.

The instance stays Pending until a worker (a duro.Worker with NAME
registered) polls the same store and runs it: duro start only records it.
With --wait, start also waits (up to --timeout) for it to finish and prints
its status; the exit status is then non-zero unless it Completed.`,
		Example: `  duro start ProcessOrder --input '{"id": "A-1", "quantity": 2}'
  duro start Nightly --id nightly-2024-06-01 --start-at 2024-06-01T02:00:00Z
  duro start ProcessOrder --id order-1 --replace --input @order.json --wait`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := notEmpty("the orchestration NAME", name); err != nil {
				return err
			}
			raw, err := parseJSONFlag("input", input)
			if err != nil {
				return err
			}
			at, err := parseTimeFlag("start-at", startAt, time.Now(), true)
			if err != nil {
				return err
			}
			var payload any
			if raw != nil {
				payload = raw
			}
			c, closeStore, err := a.client(cmd, storeCreate)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx := cmd.Context()
			got, err := c.Start(ctx, name, payload, duro.StartOptions{InstanceID: id, StartAt: at, ReplaceFinished: replace})
			if err != nil {
				return explain(ctx, c, id, err)
			}
			fmt.Fprintln(a.stdout, got)
			if !wait {
				return nil
			}
			inst, err := c.Wait(ctx, got)
			if err != nil {
				return waitError(ctx, c, got, name, a.timeout, err)
			}
			if err := renderInstance(a.stdout, inst, a.storeArg(cmd), termination(ctx, c, inst)); err != nil {
				return err
			}
			if inst.Status != duro.StatusCompleted {
				return fmt.Errorf("instance %q %s", got, inst.Status)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "the instance ID (default: a random UUID)")
	f.StringVar(&input, "input", "", "the input, as JSON (or @FILE to read it from a file)")
	f.StringVar(&startAt, "start-at", "", "do not run before this time: RFC 3339, or a duration from now (10m)")
	f.BoolVar(&replace, "replace", false, "replace a finished instance with the same --id (its history is deleted)")
	f.BoolVar(&wait, "wait", false, "wait for the instance to finish and print its status")
	return cmd
}

// waitError explains why waiting for an instance ended early.
func waitError(ctx context.Context, c instanceAPI, id, name string, timeout time.Duration, err error) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	status := "unknown status"
	if inst, gerr := c.Get(gctx, id); gerr == nil {
		status = string(inst.Status)
	}
	return fmt.Errorf("instance %q did not finish within --timeout %v (it is %s): is a worker with %q registered running against this store?",
		id, timeout, status, name)
}
