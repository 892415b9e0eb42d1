package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
	"github.com/durohq/duro/backend/sqlite"
)

// openStore opens the store named by spec: a SQLite file path, or a
// postgres:// URL (whose duro_schema parameter names the task hub).
func openStore(ctx context.Context, spec string) (backend.Backend, error) {
	return openStoreFor(ctx, spec, storeCreate, nil)
}

// storeAccess is what a command does with its store.
type storeAccess int

const (
	// storeRead only reads: a store this user may not write is opened
	// read-only.
	storeRead storeAccess = iota
	// storeWrite changes an existing store.
	storeWrite
	// storeCreate changes the store, creating a SQLite file if needed.
	storeCreate
)

// openStoreFor opens the store for access. A read of a SQLite file this
// user may not write opens it read-only, without locks when its directory
// is not writable either (a note goes to stderr, if not nil).
func openStoreFor(ctx context.Context, spec string, access storeAccess, stderr io.Writer) (backend.Backend, error) {
	switch {
	case spec == "":
		return nil, usageErrorf("no store: give --store PATH or set DURO_STORE")
	case isPostgresURL(spec):
		be, err := postgres.Open(ctx, spec, nil) // the URL may carry ?duro_schema=HUB
		if err != nil {
			// Never echo the URL: it may hold a password.
			if msg, ok := strings.CutPrefix(err.Error(), "postgres: open: "); ok {
				err = &trimmedError{msg: msg, err: err}
			}
			return nil, fmt.Errorf("PostgreSQL store: %w", err)
		}
		return be, nil
	}
	be, err := sqlite.Open(ctx, spec, nil)
	if err != nil && access == storeRead && errors.Is(err, sqlite.ErrReadOnly) {
		var rerr error
		if be, rerr = sqlite.Open(ctx, spec, &sqlite.Options{ReadOnly: true}); rerr == nil {
			return be, nil
		}
		// A directory this user may not write: SQLite cannot keep its
		// shared memory beside the file, so read it without locks.
		if be, rerr = sqlite.Open(ctx, spec, &sqlite.Options{ReadOnly: true, Immutable: true}); rerr == nil {
			if stderr != nil {
				fmt.Fprintf(stderr, "duro: note: this user may not write the directory of %s: read the file as it is, without locks\n", spec)
			}
			return be, nil
		}
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", spec, trimSQLitePrefix(err, spec))
	}
	return be, nil
}

// trimSQLitePrefix drops the "sqlite: open PATH: " the backend puts before
// its errors, which the CLI's "store PATH: " says already.
func trimSQLitePrefix(err error, spec string) error {
	for _, p := range []string{"sqlite: open " + spec + " read-only: ", "sqlite: open " + spec + ": "} {
		if msg, ok := strings.CutPrefix(err.Error(), p); ok {
			return &trimmedError{msg: msg, err: err}
		}
	}
	return err
}

// trimmedError is err with a shorter message.
type trimmedError struct {
	msg string
	err error
}

func (e *trimmedError) Error() string { return e.msg }
func (e *trimmedError) Unwrap() error { return e.err }

func isPostgresURL(spec string) bool {
	s := strings.ToLower(spec)
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// storeExists reports whether the store named by spec exists. A SQLite file
// is created by openStore, which is wanted by start and demo but would leave
// an empty duro.db behind a mistyped 'duro status'.
func storeExists(spec string) (bool, error) {
	if spec == "" || isPostgresURL(spec) {
		return true, nil // openStore reports these
	}
	_, err := os.Stat(spec)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("store %s: %w", spec, err)
	}
}

// client opens the store for access and returns a client for it, with the
// function that closes it. Unless access is storeCreate, a store that does
// not exist is an error.
// With --server it returns a client of that server's API instead.
func (a *app) client(cmd *cobra.Command, access storeAccess) (instanceAPI, func(), error) {
	if a.server != "" {
		c, err := a.remote(cmd)
		if err != nil {
			return nil, nil, err
		}
		return c, func() {}, nil
	}
	if access != storeCreate {
		ok, err := storeExists(a.store)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return nil, nil, fmt.Errorf("store %s does not exist (name another with --store PATH or DURO_STORE)", a.store)
		}
	}
	be, err := openStoreFor(cmd.Context(), a.store, access, a.stderr)
	if err != nil {
		return nil, nil, err
	}
	return duro.NewClient(be, nil), func() { _ = be.Close() }, nil
}

// storeArg is the --store or --server argument of the commands the CLI
// prints: empty unless one was given on the command line (DURO_STORE and
// DURO_SERVER carry over to a printed command). A token is never printed.
func (a *app) storeArg(cmd *cobra.Command) string {
	switch {
	case cmd.Flags().Changed("server"):
		return " --server " + quoteArg(a.server)
	case cmd.Flags().Changed("store"):
		return " --store " + quoteArg(a.store)
	}
	return ""
}

// explain turns the SDK's sentinel errors about instance id into messages
// that say what to do; other errors are returned as they are.
func explain(ctx context.Context, c instanceAPI, id string, err error) error {
	status := func() string {
		inst, gerr := c.Get(ctx, id)
		if gerr != nil {
			return ""
		}
		return " (" + string(inst.Status) + ")"
	}
	pending := func() (*duro.Instance, []*duro.PendingDecision) {
		inst, gerr := c.Get(ctx, id)
		if gerr != nil {
			return nil, nil
		}
		if inst.Suspension == nil {
			return inst, nil
		}
		return inst, inst.Suspension.Pending
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, duro.ErrInstanceNotFound):
		return fmt.Errorf("no instance with ID %q", id)
	case errors.Is(err, duro.ErrInstanceFinished):
		return fmt.Errorf("instance %q has already finished%s", id, status())
	case errors.Is(err, duro.ErrInstanceNotFinished):
		return fmt.Errorf("instance %q has not finished%s; only finished instances can be purged (terminate it first)", id, status())
	case errors.Is(err, duro.ErrInstanceNotFailed):
		if inst, gerr := c.Get(ctx, id); gerr == nil {
			return fmt.Errorf("instance %q is %s, not Failed: only Failed instances can be rewound", id, inst.Status)
		}
		return fmt.Errorf("instance %q has not failed: only Failed instances can be rewound", id)
	case errors.Is(err, duro.ErrDecisionRequired):
		_, p := pending()
		return decisionRequired(id, p, nil)
	case errors.Is(err, duro.ErrNoPendingDecision):
		return noPendingDecision(id, nil)(pending())
	case errors.Is(err, duro.ErrInstanceExists):
		inst, gerr := c.Get(ctx, id)
		switch {
		case gerr != nil:
			return fmt.Errorf("an instance with ID %q already exists", id)
		case inst.Status.IsTerminal():
			return fmt.Errorf("an instance with ID %q already exists (%s); --replace replaces it", id, inst.Status)
		default:
			return fmt.Errorf("an instance with ID %q already exists and has not finished (%s); --replace only replaces finished instances", id, inst.Status)
		}
	}
	return err
}

// decisionRequired explains that a resume of instance id lacks decisions:
// pending are the tasks that wait for one, decided those the resume decides.
func decisionRequired(id string, pending []*duro.PendingDecision, decided map[int]bool) error {
	var missing []*duro.PendingDecision
	for _, pd := range pending {
		if !decided[pd.TaskID] {
			missing = append(missing, pd)
		}
	}
	switch {
	case len(pending) == 0:
		return fmt.Errorf("instance %q waits for decisions on tasks that changed meanwhile: run 'duro decisions' and try again", id)
	case len(pending) == 1:
		return fmt.Errorf("instance %q waits for a decision on %s: resume it with one of --retry, --result JSON or --fail MESSAGE (see 'duro decisions')",
			id, pendingList(pending))
	case len(decided) > 0:
		return fmt.Errorf("instance %q also waits for a decision on %s: a resume decides every waiting task; add --decide N=DECISION for each (DECISION: %s)",
			id, pendingList(missing), decisionSyntax)
	}
	var flags []string
	for _, pd := range pending {
		flags = append(flags, fmt.Sprintf("--decide %d=DECISION", pd.TaskID))
	}
	return fmt.Errorf("instance %q waits for decisions on %s: a resume decides each one, with %s (DECISION: %s; see 'duro decisions')",
		id, pendingList(pending), strings.Join(flags, " "), decisionSyntax)
}

// noPendingDecision explains that a resume of instance inst (nil if it
// could not be read) decided tasks that do not wait for a decision: tasks,
// if known.
func noPendingDecision(id string, tasks []int) func(*duro.Instance, []*duro.PendingDecision) error {
	return func(inst *duro.Instance, pending []*duro.PendingDecision) error {
		switch {
		case inst == nil:
			return fmt.Errorf("no task of instance %q waits for a decision", id)
		case inst.Status != duro.StatusSuspended:
			return fmt.Errorf("instance %q is %s, not Suspended: no task waits for a decision", id, inst.Status)
		case len(pending) == 0:
			return fmt.Errorf("no task of instance %q waits for a decision: resume it without --retry, --result, --fail or --decide", id)
		}
		which := "a decision names a task that does not wait for one"
		if len(tasks) > 0 {
			names := make([]string, len(tasks))
			for i, t := range tasks {
				names[i] = fmt.Sprintf("#%d", t)
			}
			which = "task " + names[0] + " does not wait for a decision"
			if len(tasks) > 1 {
				which = "tasks " + strings.Join(names, ", ") + " do not wait for a decision"
			}
		}
		return fmt.Errorf("%s: instance %q waits on %s (see 'duro decisions')", which, id, pendingList(pending))
	}
}
