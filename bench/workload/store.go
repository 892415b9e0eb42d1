package workload

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
	"github.com/durohq/duro/backend/sqlite"
)

// Store kinds.
const (
	KindSQLite   = "sqlite"
	KindPostgres = "postgres"
)

// Store is the fresh store of one run: a SQLite file that does not exist
// yet, or a new schema of a PostgreSQL database. Remove deletes it.
type Store struct {
	Kind string
	// Path is the SQLite file.
	Path string
	// URL and Schema name the PostgreSQL database and the run's schema.
	URL    string
	Schema string
}

// IsPostgresURL reports whether spec is a PostgreSQL URL rather than a
// SQLite file path.
func IsPostgresURL(spec string) bool {
	s := strings.ToLower(spec)
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// NewStore returns a fresh store: spec is a SQLite file path, which must not
// exist, or a PostgreSQL URL, in whose database the store gets a new schema
// named prefix and random hex digits.
func NewStore(spec, prefix string) (*Store, error) {
	if IsPostgresURL(spec) {
		// A hub named in the URL is replaced by the run's own.
		u, err := url.Parse(spec)
		if err != nil {
			return nil, errors.New("malformed PostgreSQL URL") // never echo it: it may hold a password
		}
		q := u.Query()
		q.Del(postgres.SchemaParam)
		u.RawQuery = q.Encode()
		spec = u.String()
		var b [5]byte
		_, _ = rand.Read(b[:])
		schema := prefix + hex.EncodeToString(b[:])
		if err := postgres.ValidSchema(schema); err != nil {
			return nil, err
		}
		return &Store{Kind: KindPostgres, URL: spec, Schema: schema}, nil
	}
	if spec == "" {
		return nil, errors.New("no store")
	}
	switch _, err := os.Stat(spec); {
	case err == nil:
		return nil, fmt.Errorf("store %s exists: a benchmark needs a new file, which it deletes afterwards", spec)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return &Store{Kind: KindSQLite, Path: spec}, nil
}

// Spec names the store as duro's --store does: the SQLite file, or the
// PostgreSQL URL with the run's schema in its duro_schema parameter.
func (s *Store) Spec() string {
	if s.Kind != KindPostgres {
		return s.Path
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		return s.URL
	}
	q := u.Query()
	q.Set(postgres.SchemaParam, s.Schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// String describes the store without a password.
func (s *Store) String() string {
	if s.Kind == KindPostgres {
		return "postgres://…/" + s.Schema
	}
	return s.Path
}

// OpenDuro opens the store as a duro backend with the settings users get
// by default: SQLite's defaults (WAL, synchronous=FULL), or PostgreSQL's
// with the run's schema. (duro's CLI opens Spec the way it opens any
// --store, to the same effect.)
func (s *Store) OpenDuro(ctx context.Context) (backend.Backend, error) {
	if s.Kind == KindPostgres {
		return postgres.Open(ctx, s.URL, &postgres.Options{Schema: s.Schema})
	}
	return sqlite.Open(ctx, s.Path, nil)
}

// Size returns the store's size on disk: the SQLite file and its WAL, or
// pg_total_relation_size (tables, indexes, TOAST) summed over the schema's
// tables.
func (s *Store) Size(ctx context.Context) (int64, error) {
	if s.Kind == KindPostgres {
		conn, err := pgx.Connect(ctx, s.URL)
		if err != nil {
			return 0, err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var n int64
		err = conn.QueryRow(ctx, `SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')`, s.Schema).Scan(&n)
		return n, err
	}
	var total int64
	for _, p := range []string{s.Path, s.Path + "-wal"} {
		fi, err := os.Stat(p)
		switch {
		case err == nil:
			total += fi.Size()
		case !errors.Is(err, fs.ErrNotExist):
			return 0, err
		}
	}
	return total, nil
}

// Remove deletes the store: the SQLite file with its WAL and shared-memory
// files, or the schema with everything in it.
func (s *Store) Remove(ctx context.Context) error {
	if s.Kind == KindPostgres {
		conn, err := pgx.Connect(ctx, s.URL)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s.Schema}.Sanitize()+" CASCADE")
		return err
	}
	var errs []error
	for _, p := range []string{s.Path, s.Path + "-wal", s.Path + "-shm", s.Path + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
