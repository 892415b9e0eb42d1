package memory_test

import (
	"context"
	"testing"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/backendtest"
	"github.com/durohq/duro/backend/memory"
)

func TestConformance(t *testing.T) {
	backendtest.Exercise(context.Background(), t, func(t *testing.T) backend.Backend {
		b, err := memory.Open(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, nil)
}
