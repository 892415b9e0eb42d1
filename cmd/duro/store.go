package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"duro"
	"duro/backend"
	"duro/backend/sqlite"
)

// openStore opens the store named by spec: today a SQLite file path. Other
// kinds of store (postgres:// URLs) get their own branch here.
func openStore(ctx context.Context, spec string) (backend.Backend, error) {
	switch {
	case spec == "":
		return nil, usageErrorf("no store: give --store PATH or set DURO_STORE")
	case isPostgresURL(spec):
		// Never echo the URL: it may hold a password.
		return nil, usageErrorf("PostgreSQL stores are not supported by this version of duro yet")
	}
	be, err := sqlite.Open(ctx, spec, nil)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", spec, err)
	}
	return be, nil
}

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

// client opens the store and returns a client for it, with the function that
// closes it. Unless create is set, a store that does not exist is an error.
func (a *app) client(cmd *cobra.Command, create bool) (*duro.Client, func(), error) {
	if !create {
		ok, err := storeExists(a.store)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return nil, nil, fmt.Errorf("store %s does not exist (name another with --store PATH or DURO_STORE)", a.store)
		}
	}
	be, err := openStore(cmd.Context(), a.store)
	if err != nil {
		return nil, nil, err
	}
	return duro.NewClient(be, nil), func() { _ = be.Close() }, nil
}

// explain turns the SDK's sentinel errors about instance id into messages
// that say what to do; other errors are returned as they are.
func explain(ctx context.Context, c *duro.Client, id string, err error) error {
	status := func() string {
		inst, gerr := c.Get(ctx, id)
		if gerr != nil {
			return ""
		}
		return " (" + string(inst.Status) + ")"
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
