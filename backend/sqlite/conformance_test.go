package sqlite_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/backendtest"
	"github.com/durohq/duro/backend/sqlite"
)

func TestConformance(t *testing.T) {
	ctx := context.Background()
	var paths sync.Map // backend.Backend -> its file
	open := func(t *testing.T, path string) backend.Backend {
		b, err := sqlite.Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		paths.Store(b, path)
		return b
	}
	backendtest.Exercise(ctx, t, func(t *testing.T) backend.Backend {
		return open(t, filepath.Join(t.TempDir(), "duro.db"))
	}, &backendtest.Options{Reopen: func(t *testing.T, b backend.Backend) backend.Backend {
		path, _ := paths.Load(b)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		return open(t, path.(string))
	}})
}
