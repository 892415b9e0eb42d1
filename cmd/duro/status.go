package main

import (
	"github.com/spf13/cobra"
)

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
operator's decision, and the command that resumes it. -o json prints the
same as a JSON object.`,
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
			if asJSON {
				j := toInstanceJSON(inst)
				j.Termination = term
				return writeJSON(a.stdout, j)
			}
			return renderInstance(a.stdout, inst, a.storeArg(cmd), term)
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// addOutputFlag adds -o/--output to cmd.
func addOutputFlag(cmd *cobra.Command, output *string) {
	cmd.Flags().StringVarP(output, "output", "o", "text", "output format: text or json")
}
