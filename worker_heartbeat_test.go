package duro_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/memory"
)

// TestWorkerGoneIsStopping: a worker stopped at once, with nothing in
// flight, is recorded gone and stopping. Its heartbeat loop then sees the
// stop and the end of its work together; whichever it takes first, the
// last row says stopping.
func TestWorkerGoneIsStopping(t *testing.T) {
	ctx := context.Background()
	be, err := memory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	c := duro.NewClient(be, nil)
	for i := range 40 {
		name := fmt.Sprintf("w%d", i)
		w, err := duro.NewWorker(be, duro.NewRegistry(), &duro.WorkerOptions{Name: name, HeartbeatInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := c.Workers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, info := range l.Workers {
			if info.Name != name {
				continue
			}
			found = true
			if info.GoneAt.IsZero() || !info.Stopping {
				t.Fatalf("worker %s after Stop: gone at %v, stopping %v; want gone and stopping", name, info.GoneAt, info.Stopping)
			}
		}
		if !found {
			t.Fatalf("worker %s has no heartbeat row", name)
		}
	}
}
