package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
)

func (a *app) historyExportCmd() *cobra.Command {
	var dir, statuses, name, prefix, from, to string
	cmd := &cobra.Command{
		Use:   "export [ID...] --dir DIR",
		Short: "Write instances' histories to files, for replay tests",
		Long: `Export writes the history of each instance named (the current execution) to
DIR/ID.json, in the format duro.ReadHistory reads and duro.ReplayHistoryDir
replays against new orchestration code in CI (see docs/versioning.md). With
no ID it exports every instance that the filters select (all of them without
filters): --status takes a comma-separated list of statuses
(` + statusNames(allStatuses) + `); --name, --id-prefix,
--created-from and --created-to filter as in 'duro list'. Entities and
instances with no history yet (Pending) have none to export and are skipped.

A file name is the instance ID with every character other than a letter, a
digit, '.', '-' and '_' written %XX. Existing files are replaced. The
directory is created if needed. (The timeline of an instance whose ID is
"export": duro history -- export.)`,
		Example: `  duro history export --dir testdata/histories --name ProcessOrder --status Running,Suspended
  duro history export order-1 order-2 --dir histories`,
		RunE: func(cmd *cobra.Command, ids []string) error {
			if dir == "" {
				return usageErrorf("--dir is required: the directory to write the histories to")
			}
			filtered := statuses != "" || name != "" || prefix != "" || from != "" || to != ""
			if len(ids) > 0 && filtered {
				return usageErrorf("give instance IDs or filters, not both")
			}
			opts := duro.ListOptions{Name: name, IDPrefix: prefix, PageSize: maxPageSize, OmitPayloads: true}
			if err := parseListFilters(&opts, statuses, from, to); err != nil {
				return err
			}
			c, closeStore, err := a.client(cmd, storeRead)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx := cmd.Context()
			listed := len(ids) == 0
			if listed {
				for {
					page, err := c.List(ctx, opts)
					if err != nil {
						return err
					}
					for _, inst := range page.Instances {
						ids = append(ids, inst.ID)
					}
					if page.NextPageToken == "" {
						break
					}
					opts.PageToken = page.NextPageToken
				}
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			exported, skipped := 0, 0
			for _, id := range ids {
				if strings.HasPrefix(id, "@") {
					if !listed {
						return fmt.Errorf("%s is an entity: entities have no history", id)
					}
					skipped++
					continue
				}
				h, err := c.History(ctx, id)
				if err != nil {
					return explain(ctx, c, id, err)
				}
				if len(h) == 0 {
					fmt.Fprintf(a.stdout, "skipped %s: no history yet\n", id)
					skipped++
					continue
				}
				var b bytes.Buffer
				if err := duro.WriteHistory(&b, h); err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
				file := filepath.Join(dir, historyFileName(id))
				if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "exported %s (%d events) to %s\n", id, len(h), file)
				exported++
			}
			fmt.Fprintf(a.stdout, "exported %d %s to %s", exported, plural(exported, "history", "histories"), dir)
			if skipped > 0 {
				fmt.Fprintf(a.stdout, " (skipped %d without one)", skipped)
			}
			fmt.Fprintln(a.stdout)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "the directory to write the history files to (required)")
	f.StringVar(&statuses, "status", "", "only these statuses, comma-separated")
	f.StringVar(&name, "name", "", "only instances of this orchestration")
	f.StringVar(&prefix, "id-prefix", "", "only instances whose ID starts with this")
	f.StringVar(&from, "created-from", "", "only instances created at or after this time")
	f.StringVar(&to, "created-to", "", "only instances created before this time")
	return cmd
}

// historyFileName is the file an instance's history is exported to: its ID
// with the characters that are not safe in a file name on every system
// escaped, so that two IDs never share a file.
func historyFileName(id string) string {
	var b strings.Builder
	for _, c := range []byte(id) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_',
			c == '.' && b.Len() > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String() + ".json"
}
