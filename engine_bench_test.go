package duro

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// stepBackend is a backend for benchmarking the engine alone: it keeps the
// last committed step's effects and activity completion, and nothing else.
type stepBackend struct {
	backend.Backend
	step *backend.CompleteOrchestrationStepParams
	done *backend.Event
}

func (b *stepBackend) CompleteOrchestrationStep(_ context.Context, p *backend.CompleteOrchestrationStepParams) error {
	b.step = p
	return nil
}

func (b *stepBackend) CompleteActivity(_ context.Context, p *backend.CompleteActivityParams) error {
	b.done = p.Result
	return nil
}

func (b *stepBackend) RenewActivityLease(context.Context, *backend.RenewLeaseParams) error {
	return nil
}

// engineWorker returns a worker on a stepBackend with the bench package's
// orchestrations.
func engineWorker(b *testing.B) (*Worker, *stepBackend) {
	r := NewRegistry()
	RegisterActivity(r, "Hello", func(ctx ActivityContext, name string) (string, error) {
		return "Hello, " + name, nil
	})
	RegisterOrchestration(r, "Sequence", func(ctx *OrchestrationContext, g Guarantee) ([]string, error) {
		out := make([]string, 0, 3)
		for _, city := range []string{"Tokyo", "Seattle", "London"} {
			var s string
			if err := ctx.CallActivity("Hello", city, CallOptions{Guarantee: g}).Await(&s); err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	})
	RegisterOrchestration(r, "FanOut", func(ctx *OrchestrationContext, n int) (int, error) {
		tasks := make([]*Task, n)
		for i := range tasks {
			tasks[i] = ctx.CallActivity("Hello", strconv.Itoa(i))
		}
		if err := ctx.AwaitAll(tasks...); err != nil {
			return 0, err
		}
		return n, nil
	})
	be := &stepBackend{}
	opts := &WorkerOptions{Logger: slog.New(slog.DiscardHandler)}
	if os.Getenv("DURO_BENCH_STICKY") == "off" {
		opts.StickyOrchestrations = -1 // to compare with the sticky cache off
	}
	w, err := NewWorker(be, r, opts)
	if err != nil {
		b.Fatal(err)
	}
	return w, be
}

// runInstance runs one instance to completion through the worker's step and
// activity handlers, delivering activity results batch at a time.
func runInstance(b *testing.B, w *Worker, be *stepBackend, name string, input []byte, batch int) {
	ctx := context.Background()
	now := time.Now().UTC()
	inst := &backend.Instance{ID: "inst", Name: name, ExecutionID: "exec", Status: backend.StatusPending, CreatedAt: now}
	var history []*backend.Event
	var queue []*backend.Message
	msgs := []*backend.Message{{ID: "start", InstanceID: "inst",
		Event: &backend.Event{Type: backend.EventExecutionStarted, Input: input, Timestamp: now}}}
	for attempt := int64(1); ; attempt++ {
		in := *inst
		w.runStep(ctx, &backend.OrchestrationWorkItem{Instance: &in, History: history, Messages: msgs, Attempt: attempt, Deliveries: 1})
		p := be.step
		history = append(history, p.NewEvents...)
		inst.Status = p.Status
		if p.Status != backend.StatusRunning {
			if p.Status != backend.StatusCompleted {
				b.Fatalf("status %s", p.Status)
			}
			return
		}
		for _, t := range p.ActivityTasks {
			w.runActivity(ctx, &backend.ActivityWorkItem{Task: t, Attempt: 1})
			queue = append(queue, &backend.Message{ID: backend.ResultMessageID(t.ID), InstanceID: "inst", Event: be.done})
		}
		n := min(batch, len(queue))
		msgs, queue = queue[:n:n], queue[n:]
	}
}

// BenchmarkEngineSequence runs, per op, one instance of a three-activity
// sequence through the worker's step and activity handlers (4 steps, 3
// activities) without a store, so it measures the engine's own cost.
func BenchmarkEngineSequence(b *testing.B) {
	w, be := engineWorker(b)
	b.ReportAllocs()
	for b.Loop() {
		runInstance(b, w, be, "Sequence", []byte("1"), 1)
	}
}

// BenchmarkEngineFanOut runs, per op, one instance fanning out to 100
// activities whose results arrive 10 per step (11 steps).
func BenchmarkEngineFanOut(b *testing.B) {
	w, be := engineWorker(b)
	b.ReportAllocs()
	for b.Loop() {
		runInstance(b, w, be, "FanOut", []byte("100"), 10)
	}
}
