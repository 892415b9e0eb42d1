package postgres

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/durohq/duro/backend/internal/histlru"
)

// Options configure a Backend. The zero value, and a nil *Options, mean the
// defaults documented on each field.
type Options struct {
	// Schema names the task hub: every table of the backend lives in the
	// PostgreSQL schema of this name, created by the first migration if it
	// does not exist. Several hubs (several Schemas) share one database
	// without seeing each other's work. Default "duro". It must be a
	// lower-case identifier: letters, digits and underscores, starting with
	// a letter or underscore, at most 50 bytes.
	Schema string

	// MaxConns is the size of the connection pool for queries and claims.
	// Default 10. Each Backend also holds one more connection, for LISTEN.
	// A pool_max_conns parameter in the URL is overridden.
	MaxConns int

	// PollInterval is how often the backend wakes idle workers
	// (WorkAvailable) without a notification: the fallback for work that
	// becomes claimable by time alone (the lease of a crashed worker
	// lapses) and for notifications missed while the listening connection
	// was down. Default 1s; at least 10ms.
	PollInterval time.Duration

	// MaxStepMessages caps the number of inbox messages handed to one
	// orchestration step; the rest wait for the next step. Default 1000.
	MaxStepMessages int

	// HistoryCacheEvents bounds the backend's history cache: the decoded
	// histories its claims handed out, kept (least recently claimed
	// instances go first) so that the next claim of an instance reads only
	// the rows appended since, after checking in the same query that the
	// cached prefix is still the stored one (see doc.go). The bound counts
	// events over all instances; a history longer than half of it is not
	// cached. Default 100,000 (histories of small events take a few hundred
	// bytes each); negative disables the cache.
	HistoryCacheEvents int

	// ConnectTimeout bounds each attempt to open a connection, when the URL
	// sets no connect_timeout. Default 10s.
	ConnectTimeout time.Duration

	// SkipMigrate, if set, makes Open check the schema's migration version
	// instead of migrating: Open fails unless every migration of this build
	// has been applied (by Migrate, or the duro migrate command).
	SkipMigrate bool

	// Logger receives the backend's log records (migrations, the listening
	// connection lost and restored, warnings). Default: discarded.
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultSchema          = "duro"
	DefaultMaxConns        = 10
	DefaultPollInterval    = time.Second
	DefaultMaxStepMessages = 1000
	DefaultConnectTimeout  = 10 * time.Second
	// DefaultHistoryCacheEvents is the default of
	// Options.HistoryCacheEvents.
	DefaultHistoryCacheEvents = histlru.DefaultMaxEvents
)

// withDefaults returns a copy of o (which may be nil) with zero fields set
// to their defaults, or an error naming the first invalid field.
func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Schema == "" {
		r.Schema = DefaultSchema
	}
	if err := ValidSchema(r.Schema); err != nil {
		return r, fmt.Errorf("invalid Options.Schema: %w", err)
	}
	switch {
	case r.MaxConns < 0:
		return r, fmt.Errorf("invalid Options.MaxConns %d: must not be negative", r.MaxConns)
	case r.MaxConns == 0:
		r.MaxConns = DefaultMaxConns
	}
	switch {
	case r.PollInterval < 0:
		return r, fmt.Errorf("invalid Options.PollInterval %v: must not be negative", r.PollInterval)
	case r.PollInterval == 0:
		r.PollInterval = DefaultPollInterval
	case r.PollInterval < 10*time.Millisecond:
		return r, fmt.Errorf("invalid Options.PollInterval %v: must be at least 10ms", r.PollInterval)
	}
	switch {
	case r.MaxStepMessages < 0:
		return r, fmt.Errorf("invalid Options.MaxStepMessages %d: must not be negative", r.MaxStepMessages)
	case r.MaxStepMessages == 0:
		r.MaxStepMessages = DefaultMaxStepMessages
	}
	if r.HistoryCacheEvents == 0 {
		r.HistoryCacheEvents = DefaultHistoryCacheEvents
	}
	switch {
	case r.ConnectTimeout < 0:
		return r, fmt.Errorf("invalid Options.ConnectTimeout %v: must not be negative", r.ConnectTimeout)
	case r.ConnectTimeout == 0:
		r.ConnectTimeout = DefaultConnectTimeout
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// ValidSchema reports whether name can name a task hub's schema: a
// lower-case identifier (letters a-z, digits, underscores; not starting with
// a digit) of at most 50 bytes, not starting with "pg_". Such a name needs
// no quoting and leaves room for the channel name derived from it.
func ValidSchema(name string) error {
	if name == "" {
		return fmt.Errorf("empty schema name")
	}
	if len(name) > 50 {
		return fmt.Errorf("schema name %q is longer than 50 bytes", name)
	}
	for i, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return fmt.Errorf("schema name %q: want lower-case letters, digits and underscores, not starting with a digit", name)
		}
	}
	if len(name) >= 3 && name[:3] == "pg_" {
		return fmt.Errorf("schema name %q: names starting with pg_ are reserved by PostgreSQL", name)
	}
	return nil
}
