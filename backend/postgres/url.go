package postgres

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// SchemaParam is the URL query parameter that names a task hub's schema,
// so that a single string (a CLI's --store) can say which hub to open:
// postgres://user@host/db?duro_schema=payments. Open and OpenPool remove
// it before connecting (PostgreSQL would reject it as an unknown setting).
const SchemaParam = "duro_schema"

// splitURL returns connString without the duro_schema parameter, and the
// parameter's value ("" if absent). Only URLs carry it; a key=value
// connection string is returned as it is.
func splitURL(connString string) (string, string, error) {
	lower := strings.ToLower(connString)
	if !strings.HasPrefix(lower, "postgres://") && !strings.HasPrefix(lower, "postgresql://") {
		return connString, "", nil
	}
	u, err := url.Parse(connString)
	if err != nil {
		// Leave the error (without echoing a password) to pgx.
		return connString, "", nil
	}
	q := u.Query()
	if !q.Has(SchemaParam) {
		return connString, "", nil
	}
	schema := q.Get(SchemaParam)
	if schema == "" {
		return "", "", fmt.Errorf("empty %s in the URL", SchemaParam)
	}
	q.Del(SchemaParam)
	u.RawQuery = q.Encode()
	return u.String(), schema, nil
}

// schemaFor reconciles the schema named in the URL with Options.Schema.
func schemaFor(fromURL, fromOpts string) (string, error) {
	switch {
	case fromURL == "":
		return fromOpts, nil
	case fromOpts == "" || fromOpts == fromURL:
		return fromURL, nil
	}
	return "", fmt.Errorf("the URL names schema %q (%s) but Options.Schema is %q", fromURL, SchemaParam, fromOpts)
}

// OpenPool connects a pool to the database of url without opening a
// backend, and returns it with the hub's schema: the URL's duro_schema
// parameter, or DefaultSchema. It serves tools such as a duro migrate
// command, with Migrate and MigrationStatus.
func OpenPool(ctx context.Context, connString string) (*pgxpool.Pool, string, error) {
	conn, schema, err := splitURL(connString)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: %w", err)
	}
	if schema == "" {
		schema = DefaultSchema
	}
	if err := ValidSchema(schema); err != nil {
		return nil, "", fmt.Errorf("postgres: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(conn)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: %w", err)
	}
	return pool, schema, nil
}
