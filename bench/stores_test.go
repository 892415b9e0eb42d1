package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
	"github.com/durohq/duro/backend/sqlite"
)

// openSQLite opens a SQLite store in a file of the benchmark's temporary
// directory (opts nil: the defaults).
func openSQLite(b *testing.B, opts *sqlite.Options) backend.Backend {
	be, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	return be
}

var pgSchemas sync.Mutex

// openPostgres opens a fresh hub in a schema of its own, dropped at the end.
func openPostgres(b *testing.B, url string) backend.Backend {
	pgSchemas.Lock()
	schema := fmt.Sprintf("bench_%d", time.Now().UnixNano())
	pgSchemas.Unlock()
	ctx := context.Background()
	be, err := postgres.Open(ctx, url, &postgres.Options{Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = be.Close()
		pool, _, err := postgres.OpenPool(ctx, url)
		if err != nil {
			b.Logf("drop schema %s: %v", schema, err)
			return
		}
		defer pool.Close()
		if _, err := pool.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			b.Logf("drop schema %s: %v", schema, err)
		}
	})
	return be
}
