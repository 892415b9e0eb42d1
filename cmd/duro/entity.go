package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
)

func (a *app) entityCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "entity",
		Short: "Read, list, signal and clean durable entities",
		Long: `Entities are small pieces of durable state with named operations,
addressed as @name@key (or NAME KEY). Operations run one at a time per
entity, inside a worker that has them registered.`,
	}
	cmd.AddCommand(a.entityGetCmd(), a.entityListCmd(), a.entitySignalCmd(), a.entityCleanCmd())
	return cmd
}

// entityArgs reads an entity as "@name@key" or as two arguments NAME KEY.
func entityArgs(args []string) (duro.EntityID, error) {
	var id duro.EntityID
	switch len(args) {
	case 1:
		var err error
		if id, err = duro.ParseEntityID(args[0]); err != nil {
			return id, usageErrorf("%q is not an entity: write @name@key or NAME KEY", args[0])
		}
	case 2:
		id = duro.EntityID{Name: args[0], Key: args[1]}
		if id.Name == "" || strings.Contains(id.Name, "@") || id.Key == "" {
			return id, usageErrorf("entity name %q and key %q: the name must be non-empty without '@', the key non-empty", id.Name, id.Key)
		}
	default:
		return id, usageErrorf("name the entity as @name@key or NAME KEY")
	}
	return id, nil
}

type entityJSON struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Key          string          `json:"key"`
	Exists       bool            `json:"exists"`
	State        json.RawMessage `json:"state,omitempty"`
	LockedBy     string          `json:"lockedBy,omitempty"`
	Queued       int             `json:"queued,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Suspension   *suspensionJSON `json:"suspension,omitempty"`
}

func toEntityJSON(e *duro.EntityState) entityJSON {
	j := entityJSON{ID: e.ID.String(), Name: e.ID.Name, Key: e.ID.Key, Exists: e.Exists, State: rawJSON(e.RawState),
		LockedBy: e.LockedBy, Queued: e.Queued, Suspension: toSuspensionJSON(e.Suspension)}
	if !e.LastModified.IsZero() {
		j.LastModified = formatTime(e.LastModified)
	}
	return j
}

func (a *app) entityGetCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "get ENTITY",
		Short:   "Show an entity's state",
		Example: "  duro entity get @counter@page-views\n  duro entity get counter page-views -o json",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := entityArgs(args)
			if err != nil {
				return err
			}
			asJSON, err := parseOutput(output)
			if err != nil {
				return err
			}
			c, closeStore, err := a.client(cmd, storeRead)
			if err != nil {
				return err
			}
			defer closeStore()
			st, err := c.GetEntity(cmd.Context(), id)
			if errors.Is(err, duro.ErrInstanceNotFound) {
				return fmt.Errorf("no entity %s (it was never signalled, or was cleaned)", id)
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, toEntityJSON(st))
			}
			fmt.Fprintf(a.stdout, "Entity:        %s\n", id)
			if s := st.Suspension; s != nil {
				what := "suspended"
				if s.Poisoned {
					what = "poisoned: its operations kept failing before they committed"
				}
				fmt.Fprintf(a.stdout, "Suspended:     since %s, %s\n", formatTime(s.Since), what)
				if s.Reason != "" {
					fmt.Fprintf(a.stdout, "Reason:        %s\n", s.Reason)
				}
			}
			switch {
			case st.Exists:
				fmt.Fprintf(a.stdout, "State:         %s\n", payloadText(st.RawState))
			case st.Suspension != nil:
				fmt.Fprintf(a.stdout, "State:         (none yet: its requests wait until it is resumed)\n")
			default:
				fmt.Fprintf(a.stdout, "State:         (none)\n")
			}
			if st.Suspension != nil {
				fmt.Fprintf(a.stdout, "Resume with:   duro resume %s%s\n", quoteArg(id.String()), a.storeArg(cmd))
			}
			if st.LockedBy != "" {
				fmt.Fprintf(a.stdout, "Locked by:     %s\n", st.LockedBy)
			}
			if st.Queued > 0 {
				fmt.Fprintf(a.stdout, "Waiting:       %d requests for the lock\n", st.Queued)
			}
			if !st.LastModified.IsZero() {
				fmt.Fprintf(a.stdout, "Last modified: %s\n", formatTime(st.LastModified))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (a *app) entityListCmd() *cobra.Command {
	var (
		name, output, token string
		empty, all          bool
		size                int
	)
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List entities, newest first",
		Example: "  duro entity list --name counter\n  duro entity list --all --include-empty",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := parseOutput(output)
			if err != nil {
				return err
			}
			if err := checkPageSize(size); err != nil {
				return err
			}
			if cmd.Flags().Changed("empty") {
				fmt.Fprintln(a.stderr, "duro: --empty is now --include-empty, as the API's includeEmpty")
			}
			c, closeStore, err := a.client(cmd, storeRead)
			if err != nil {
				return err
			}
			defer closeStore()
			var list []*duro.EntityState
			for {
				page, err := c.ListEntities(cmd.Context(), duro.EntityQuery{Name: name, IncludeEmpty: empty, PageSize: size, PageToken: token})
				if err != nil {
					return err
				}
				list = append(list, page.Entities...)
				token = page.NextPageToken
				if !all || token == "" {
					break
				}
			}
			if asJSON {
				out := struct {
					Entities      []entityJSON `json:"entities"`
					NextPageToken string       `json:"nextPageToken,omitempty"`
				}{Entities: []entityJSON{}, NextPageToken: token}
				for _, e := range list {
					out.Entities = append(out.Entities, toEntityJSON(e))
				}
				return writeJSON(a.stdout, out)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ENTITY\tSTATE\tLOCKED BY\tMODIFIED")
			for _, e := range list {
				state := "(none)"
				if e.Exists {
					state = preview(e.RawState, 40)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.ID, state, e.LockedBy, formatTime(e.LastModified))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if token != "" {
				fmt.Fprintf(a.stdout, "next page: --page-token %s\n", token)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "only entities with this name")
	f.BoolVar(&empty, "include-empty", false, "include entities without state (the API's includeEmpty)")
	f.BoolVar(&empty, "empty", false, "the same as --include-empty")
	_ = f.MarkHidden("empty")
	f.BoolVar(&all, "all", false, "read every page")
	f.IntVar(&size, "page-size", defaultPageSize, fmt.Sprintf("entities read per page, 1 to %d", maxPageSize))
	f.StringVar(&token, "page-token", "", "continue a listing")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (a *app) entitySignalCmd() *cobra.Command {
	var input, key string
	cmd := &cobra.Command{
		Use:   "signal ENTITY OPERATION",
		Short: "Send an operation to an entity",
		Long: `Signal sends OPERATION, with optional JSON --input, to the entity, creating
it if needed. With --key the signal is idempotent: the entity applies a
signal with a given key once (within its window of processed requests).`,
		Example: "  duro entity signal @counter@page-views add --input 1 --key visit-42",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := entityArgs(args[:1])
			if err != nil {
				return err
			}
			if err := notEmpty("the OPERATION name", args[1]); err != nil {
				return err
			}
			raw, err := parseJSONFlag("input", input)
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
			if err := c.SignalEntity(cmd.Context(), id, args[1], payload, duro.SignalOptions{IdempotencyKey: key}); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "signalled %s on %s\n", args[1], id)
			return nil
		},
	}
	cmd.Flags().StringVar(&input, "input", "", "the operation's input, as JSON (or @FILE)")
	cmd.Flags().StringVar(&key, "key", "", "idempotency key (default: a random one)")
	return cmd
}

func (a *app) entityCleanCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "clean",
		Short: "Remove empty entities whose window of processed requests has expired",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, closeStore, err := a.client(cmd, storeWrite)
			if err != nil {
				return err
			}
			defer closeStore()
			purged, asked, err := c.CleanEntities(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "purged %d removed entities; asked %d empty entities to remove themselves (run again later to purge them)\n", purged, asked)
			return nil
		},
	}
}
