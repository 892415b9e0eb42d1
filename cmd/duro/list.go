package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
)

// listJSON is the JSON form of list's output.
type listJSON struct {
	Instances     []instanceJSON `json:"instances"`
	NextPageToken string         `json:"nextPageToken,omitempty"`
}

func (a *app) listCmd() *cobra.Command {
	var output, statuses, name, prefix, custom, from, to, token string
	var pageSize int
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List instances, newest first",
		Long: `List prints the instances of the store, newest first, one page at a time,
with the token of the next page. Filters combine: --status takes a
comma-separated list of statuses (` + statusNames(allStatuses) + `);
--id-prefix matches the start of instance IDs; --custom-status matches
custom statuses that contain the text (as stored: JSON, case-sensitive);
--created-from (inclusive) and --created-to (exclusive) take RFC 3339 times,
dates, or durations ago (24h, 7d).

Lists show the sizes of inputs and outputs, not the payloads ('duro status
ID' shows them); -o json leaves them out too, and custom statuses over 1 KiB.`,
		Example: `  duro list --status Running,Suspended
  duro list --name ProcessOrder --created-from 24h --all
  duro list --id-prefix order- --custom-status shipped
  duro list --page-size 20 --page-token TOKEN -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := parseOutput(output)
			if err != nil {
				return err
			}
			opts := duro.ListOptions{Name: name, IDPrefix: prefix, CustomStatus: custom, PageSize: pageSize, PageToken: token,
				OmitPayloads: true}
			if err := parseListFilters(&opts, statuses, from, to); err != nil {
				return err
			}
			if err := checkPageSize(pageSize); err != nil {
				return err
			}
			c, closeStore, err := a.client(cmd, storeRead)
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
	f.StringVar(&prefix, "id-prefix", "", "only instances whose ID starts with this")
	f.StringVar(&custom, "custom-status", "", "only instances whose custom status contains this text")
	f.StringVar(&from, "created-from", "", "only instances created at or after this time")
	f.StringVar(&to, "created-to", "", "only instances created before this time")
	f.IntVar(&pageSize, "page-size", defaultPageSize, fmt.Sprintf("instances per page, 1 to %d", maxPageSize))
	f.StringVar(&token, "page-token", "", "continue from a previous page's next page token")
	f.BoolVar(&all, "all", false, "fetch every page")
	return cmd
}

// parseListFilters sets the statuses and creation times of o from the
// values of the --status, --created-from and --created-to flags.
func parseListFilters(o *duro.ListOptions, statuses, from, to string) error {
	var err error
	if o.Statuses, err = parseStatuses("status", statuses, false); err != nil {
		return err
	}
	now := time.Now()
	if o.CreatedFrom, err = parseTimeFlag("created-from", from, now, false); err != nil {
		return err
	}
	o.CreatedTo, err = parseTimeFlag("created-to", to, now, false)
	return err
}

func renderList(a *app, insts []*duro.Instance, next string) error {
	if len(insts) == 0 {
		fmt.Fprintln(a.stdout, "no instances")
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tCREATED\tUPDATED\tINPUT\tOUTPUT\tCUSTOM STATUS")
		for _, i := range insts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i.ID, i.Name, i.Status, formatTime(i.CreatedAt), formatTime(i.UpdatedAt),
				sizeText(i.InputSize), sizeText(i.OutputSize), customStatusText(i))
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

// Page sizes of list and entity list: the API's bounds.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// checkPageSize refuses a --page-size outside what the API accepts, so a
// store and a server answer the same command line alike.
func checkPageSize(n int) error {
	if n < 1 || n > maxPageSize {
		return usageErrorf("--page-size %d: want 1 to %d", n, maxPageSize)
	}
	return nil
}

// sizeText is a payload size for a list: "-" for none.
func sizeText(n int) string {
	if n == 0 {
		return "-"
	}
	return byteSize(n)
}

// customStatusText is a listed instance's custom status on one line, or
// its size when the listing left it out.
func customStatusText(i *duro.Instance) string {
	switch {
	case len(i.RawCustomStatus) > 0:
		return preview(i.RawCustomStatus, 40)
	case i.CustomStatusSize > 0:
		return "(" + byteSize(i.CustomStatusSize) + ")"
	}
	return "-"
}
