package duro_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/memory"
)

// recordHandler keeps the records logged through it.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// count returns how many debug records mention msg and carry attr=value.
func (h *recordHandler) count(msg, attr, value string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Level != slog.LevelDebug || !strings.Contains(r.Message, msg) {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == attr && a.Value.String() == value {
				n++
			}
			return true
		})
	}
	return n
}

// TestStepLogsUnregisteredActivityOnce: a worker whose steps call an
// activity it does not register says so once per activity name, at debug
// level, however many steps call it; and it does not claim the task.
func TestStepLogsUnregisteredActivityOnce(t *testing.T) {
	t.Parallel()
	be, err := memory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	reg := duro.NewRegistry()
	duro.RegisterOrchestration(reg, "Calls", func(ctx *duro.OrchestrationContext, _ any) (any, error) {
		return nil, ctx.AwaitAll(ctx.CallActivity("Elsewhere", 1), ctx.CallActivity("Elsewhere", 2),
			ctx.CallActivity("AlsoElsewhere", 3))
	})
	h := &recordHandler{}
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{PollInterval: 10 * time.Millisecond, Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	}()
	c := duro.NewClient(be, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var ids []string
	for range 3 {
		id, err := c.Start(ctx, "Calls", nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Every instance's step has committed its three calls.
	for _, id := range ids {
		for {
			h, err := c.History(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, ev := range h {
				if ev.Type == backend.EventTaskScheduled {
					n++
				}
			}
			if n == 3 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("instance %s: %d calls scheduled", id, n)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	const msg = "does not register"
	if a, b := h.count(msg, "activity", "Elsewhere"), h.count(msg, "activity", "AlsoElsewhere"); a != 1 || b != 1 {
		t.Fatalf("logged %d times for Elsewhere and %d for AlsoElsewhere, want once each", a, b)
	}
	if s := w.Stats(); s.Redeliveries != 0 || s.ActivitiesCompleted != 0 {
		t.Fatalf("the worker touched activities it does not register: %+v", s)
	}
}
