package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/backendtest"
	"github.com/durohq/duro/backend/postgres"
)

// TestConformance runs the backend conformance suite, each subtest on a
// fresh schema of the test database (dropped when it ends). Reopen closes
// the backend's pool and opens the same schema again.
func TestConformance(t *testing.T) {
	url := testURL(t)
	ctx := context.Background()
	var schemas sync.Map // backend.Backend -> its schema
	openSchema := func(t *testing.T, schema string) backend.Backend {
		b, err := postgres.Open(ctx, url, &postgres.Options{Schema: schema, MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		schemas.Store(b, schema)
		return b
	}
	backendtest.Exercise(ctx, t, func(t *testing.T) backend.Backend {
		return openSchema(t, freshSchema(t, url))
	}, &backendtest.Options{Reopen: func(t *testing.T, b backend.Backend) backend.Backend {
		schema, _ := schemas.Load(b)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		return openSchema(t, schema.(string))
	}})
}
