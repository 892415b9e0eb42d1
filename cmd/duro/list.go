package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"duro"
)

// listJSON is the JSON form of list's output.
type listJSON struct {
	Instances     []instanceJSON `json:"instances"`
	NextPageToken string         `json:"nextPageToken,omitempty"`
}

func (a *app) listCmd() *cobra.Command {
	var output, statuses, name, from, to, token string
	var pageSize int
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List instances, newest first",
		Long: `List prints the instances of the store, newest first, one page at a time,
with the token of the next page. Filters combine: --status takes a
comma-separated list of statuses (` + statusNames(allStatuses) + `);
--created-from (inclusive) and --created-to (exclusive) take RFC 3339 times,
dates, or durations ago (24h, 7d).`,
		Example: `  duro list --status Running,Suspended
  duro list --name ProcessOrder --created-from 24h --all
  duro list --page-size 20 --page-token TOKEN -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := parseOutput(output)
			if err != nil {
				return err
			}
			opts := duro.ListOptions{Name: name, PageSize: pageSize, PageToken: token}
			if opts.Statuses, err = parseStatuses("status", statuses, false); err != nil {
				return err
			}
			now := time.Now()
			if opts.CreatedFrom, err = parseTimeFlag("created-from", from, now, false); err != nil {
				return err
			}
			if opts.CreatedTo, err = parseTimeFlag("created-to", to, now, false); err != nil {
				return err
			}
			if pageSize < 0 {
				return usageErrorf("--page-size must not be negative")
			}
			c, closeStore, err := a.client(cmd, false)
			if err != nil {
				return err
			}
			defer closeStore()
			var out listJSON
			out.Instances = []instanceJSON{}
			var insts []*duro.Instance
			for {
				page, err := c.List(cmd.Context(), opts)
				if err != nil {
					return err
				}
				insts = append(insts, page.Instances...)
				out.NextPageToken = page.NextPageToken
				if !all || page.NextPageToken == "" {
					break
				}
				opts.PageToken = page.NextPageToken
			}
			if asJSON {
				for _, i := range insts {
					out.Instances = append(out.Instances, toInstanceJSON(i))
				}
				return writeJSON(a.stdout, out)
			}
			return renderList(a, insts, out.NextPageToken)
		},
	}
	f := cmd.Flags()
	addOutputFlag(cmd, &output)
	f.StringVar(&statuses, "status", "", "only these statuses, comma-separated")
	f.StringVar(&name, "name", "", "only instances of this orchestration")
	f.StringVar(&from, "created-from", "", "only instances created at or after this time")
	f.StringVar(&to, "created-to", "", "only instances created before this time")
	f.IntVar(&pageSize, "page-size", 0, "instances per page (default 100)")
	f.StringVar(&token, "page-token", "", "continue from a previous page's next page token")
	f.BoolVar(&all, "all", false, "fetch every page")
	return cmd
}

func renderList(a *app, insts []*duro.Instance, next string) error {
	if len(insts) == 0 {
		fmt.Fprintln(a.stdout, "no instances")
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tCREATED\tUPDATED")
		for _, i := range insts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", i.ID, i.Name, i.Status, formatTime(i.CreatedAt), formatTime(i.UpdatedAt))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if next != "" {
		fmt.Fprintf(a.stdout, "\nnext page token: %s\n(continue with --page-token %s, or pass --all)\n", next, quoteArg(next))
	}
	return nil
}
