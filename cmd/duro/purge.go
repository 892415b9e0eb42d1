package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
)

func (a *app) purgeCmd() *cobra.Command {
	var statuses, name, from, to, before string
	cmd := &cobra.Command{
		Use:   "purge [ID]",
		Short: "Delete finished instances and their history",
		Long: `Purge deletes finished instances (Completed, Failed or Terminated) with their
history: the instance ID, or every finished instance that matches the
filters, which are those of 'duro list': --created-from (inclusive) and
--created-to (exclusive) take RFC 3339 times, dates, or durations ago (7d).
Instances that have not finished are never purged. It prints how many
instances it deleted.`,
		Example: `  duro purge order-1
  duro purge --status Completed,Failed
  duro purge --status Completed --name ProcessOrder --created-to 7d`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("want at most one instance ID, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if before != "" {
				if to != "" {
					return usageErrorf("give --created-to or --created-before (its old name), not both")
				}
				fmt.Fprintln(a.stderr, "duro: --created-before is now --created-to, as in 'duro list'")
				to = before
			}
			filtered := statuses != "" || name != "" || from != "" || to != ""
			switch {
			case len(args) == 1 && filtered:
				return usageErrorf("give an instance ID or filters (--status, --name, --created-from, --created-to), not both")
			case len(args) == 0 && !filtered:
				return usageErrorf("give an instance ID, or filters: --status, --name, --created-from, --created-to")
			}
			var f duro.PurgeFilter
			var err error
			if f.Statuses, err = parseStatuses("status", statuses, true); err != nil {
				return err
			}
			now := time.Now()
			if f.CreatedFrom, err = parseTimeFlag("created-from", from, now, false); err != nil {
				return err
			}
			if f.CreatedTo, err = parseTimeFlag("created-to", to, now, false); err != nil {
				return err
			}
			f.Name = name
			c, closeStore, err := a.client(cmd, storeWrite)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx := cmd.Context()
			if len(args) == 1 {
				if err := c.Purge(ctx, args[0]); err != nil {
					return explain(ctx, c, args[0], err)
				}
				fmt.Fprintf(a.stdout, "purged 1 instance (%s)\n", args[0])
				return nil
			}
			n, err := c.PurgeWhere(ctx, f)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "purged %d %s\n", n, plural(n, "instance", "instances"))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&statuses, "status", "", "only these finished statuses, comma-separated (Completed, Failed, Terminated)")
	f.StringVar(&name, "name", "", "only instances of this orchestration")
	f.StringVar(&from, "created-from", "", "only instances created at or after this time")
	f.StringVar(&to, "created-to", "", "only instances created before this time")
	f.StringVar(&before, "created-before", "", "the same as --created-to")
	_ = f.MarkHidden("created-before")
	return cmd
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
