package sqlite

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Options configure a Backend. The zero value, and a nil *Options, mean the
// defaults documented on each field.
type Options struct {
	// Synchronous is SQLite's synchronous setting for the file: "FULL"
	// (default), "EXTRA" or "NORMAL". FULL makes every commit, and so every
	// attempt number a claim hands out, survive power loss; NORMAL keeps it
	// across process crashes only (see the package documentation). OFF is
	// refused: it would break A1. Ignored by in-memory stores.
	Synchronous string

	// BusyTimeout is how long a transaction waits for a lock held by another
	// process that has the same file open (a CLI, a second worker). Default
	// 5s. Writers inside one process never wait on each other's locks: they
	// queue for the backend's single writer connection instead.
	BusyTimeout time.Duration

	// ReadConns is the size of the read connection pool that serves
	// GetInstance, ListInstances and GetHistory concurrently with the
	// writer. Default 4. In-memory stores use their single connection.
	ReadConns int

	// CacheKiB is the size of SQLite's page cache of each connection, in
	// KiB. Default 1,000. SQLite's own default is 2,000 KiB; duro's hot pages
	// (the claim indexes, the ends of the inbox and the history) are few,
	// and pages outside the cache come from the operating system's file
	// cache, so a smaller cache costs little speed and saves memory per
	// connection (see docs/benchmarks.md).
	CacheKiB int

	// MaxStepMessages caps the number of inbox messages handed to one
	// orchestration step; the rest wait for the next step. Default 1000.
	MaxStepMessages int

	// Logger receives the backend's log records (migrations, warnings).
	// Default: records are discarded.
	Logger *slog.Logger

	// ReadOnly opens the file for reading only, for inspecting a store this
	// process may not write (a read-only file): no migrations are applied
	// (the store's schema must be this build's), and every write fails with
	// ErrReadOnly. Other processes may write the store meanwhile. SQLite
	// still needs to write the shared-memory file beside the store (PATH-shm)
	// unless Immutable is set.
	ReadOnly bool

	// Clock, if set, is the store's clock: the time of every operation
	// that passes no Now (leases, visibility of messages, heartbeats).
	// Default: time.Now. It is for tests that run a store on a virtual
	// clock (package durotest does); every worker and client of the store
	// must then agree with it.
	Clock func() time.Time

	// Immutable, with ReadOnly, reads the file without any lock or
	// shared-memory file: for a store in a directory this process cannot
	// write, which no process writes while it is open. It is refused when a
	// write-ahead log (PATH-wal) exists, whose changes it would not see.
	Immutable bool
}

// Defaults of Options.
const (
	DefaultSynchronous     = "FULL"
	DefaultBusyTimeout     = 5 * time.Second
	DefaultReadConns       = 4
	DefaultMaxStepMessages = 1000
	DefaultCacheKiB        = 1000
)

// withDefaults returns a copy of o (which may be nil) with zero fields set
// to their defaults and names normalized, or an error naming the first
// invalid field.
func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	r.Synchronous = strings.ToUpper(strings.TrimSpace(r.Synchronous))
	switch r.Synchronous {
	case "":
		r.Synchronous = DefaultSynchronous
	case "FULL", "EXTRA", "NORMAL":
	default:
		return r, fmt.Errorf("invalid Options.Synchronous %q: must be FULL, EXTRA or NORMAL", r.Synchronous)
	}
	switch {
	case r.BusyTimeout < 0:
		return r, fmt.Errorf("invalid Options.BusyTimeout %v: must not be negative", r.BusyTimeout)
	case r.BusyTimeout == 0:
		r.BusyTimeout = DefaultBusyTimeout
	case r.BusyTimeout < time.Millisecond:
		return r, fmt.Errorf("invalid Options.BusyTimeout %v: must be at least 1ms", r.BusyTimeout)
	}
	switch {
	case r.ReadConns < 0:
		return r, fmt.Errorf("invalid Options.ReadConns %d: must not be negative", r.ReadConns)
	case r.ReadConns == 0:
		r.ReadConns = DefaultReadConns
	}
	switch {
	case r.CacheKiB < 0:
		return r, fmt.Errorf("invalid Options.CacheKiB %d: must not be negative", r.CacheKiB)
	case r.CacheKiB == 0:
		r.CacheKiB = DefaultCacheKiB
	}
	switch {
	case r.MaxStepMessages < 0:
		return r, fmt.Errorf("invalid Options.MaxStepMessages %d: must not be negative", r.MaxStepMessages)
	case r.MaxStepMessages == 0:
		r.MaxStepMessages = DefaultMaxStepMessages
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.Clock == nil {
		r.Clock = time.Now
	}
	if r.Immutable && !r.ReadOnly {
		return r, errors.New("invalid Options.Immutable: it needs ReadOnly")
	}
	return r, nil
}
