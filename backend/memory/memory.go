// Package memory is duro's in-memory backend, for unit tests of code that
// uses duro: nothing to set up, nothing left behind.
//
// It is the SQLite backend of package duro/backend/sqlite running on a
// private in-memory database, so it has exactly the semantics of the
// embedded default, and passes the same conformance suite. Each Open returns
// an independent, empty store that lives until Close; nothing survives Close
// or the process. All operations share one connection, so they run one at a
// time; durability settings do not apply.
package memory

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
)

// Options configure an in-memory Backend. The zero value, and a nil
// *Options, mean the defaults documented on each field.
type Options struct {
	// MaxStepMessages caps the number of inbox messages handed to one
	// orchestration step. Default 1000.
	MaxStepMessages int

	// Logger receives the backend's log records. Default: records are
	// discarded.
	Logger *slog.Logger

	// Clock, if set, is the store's clock: the time of every operation
	// that passes no Now (leases, visibility of messages). Default:
	// time.Now. Package durotest sets a virtual clock here, and the same
	// clock in the workers and clients of the store.
	Clock func() time.Time
}

// Backend is an in-memory backend.Backend, backend.WorkNotifier and
// backend.FinishNotifier. It is safe for concurrent use.
type Backend struct {
	// Backend is the SQLite engine underneath; its extra methods (such as
	// MigrationVersion) work on the in-memory store too.
	*sqlite.Backend
}

var (
	_ backend.Backend        = (*Backend)(nil)
	_ backend.WorkNotifier   = (*Backend)(nil)
	_ backend.FinishNotifier = (*Backend)(nil)
	// The SQLite engine's capabilities come with it.
	_ backend.ActivityStepClaimer = (*Backend)(nil)
)

// Open returns a new, empty in-memory store. A nil opts means the defaults.
func Open(opts *Options) (*Backend, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	b, err := sqlite.OpenMemory(context.Background(), &sqlite.Options{
		MaxStepMessages: o.MaxStepMessages,
		Logger:          o.Logger,
		Clock:           o.Clock,
	})
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	return &Backend{Backend: b}, nil
}
