package telemetry_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/memory"
	"github.com/durohq/duro/internal/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) (attribute.Value, bool) {
	for _, a := range s.Attributes() {
		if a.Key == k {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

// TestWorkerSpans runs an orchestration with an activity that fails once
// and checks the spans: every step and every delivery in the execution's
// trace, the activity's attempts as attributes, and the outcomes.
func TestWorkerSpans(t *testing.T) {
	t.Parallel()
	be, err := memory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	reg := duro.NewRegistry()
	var calls atomic.Int32
	duro.RegisterActivity(reg, "Flaky", func(ctx duro.ActivityContext, _ any) (string, error) {
		if calls.Add(1) == 1 {
			return "", duro.NewError("Down", "first call fails")
		}
		return "ok", nil
	})
	duro.RegisterOrchestration(reg, "Traced", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
		var s string
		err := ctx.CallActivity("Flaky", nil, duro.CallOptions{RetryPolicy: &duro.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond}}).Await(&s)
		return s, err
	})
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{PollInterval: 5 * time.Millisecond, Tracer: tp, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	c := duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := c.Start(ctx, "Traced", nil)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := c.Wait(ctx, id)
	if err != nil || inst.Status != duro.StatusCompleted {
		t.Fatalf("instance: %v %+v", err, inst)
	}
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	root := telemetry.ExecutionSpanContext(inst.ID, inst.ExecutionID)
	var steps, activities []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() != root.TraceID() || s.Parent().SpanID() != root.SpanID() {
			t.Errorf("span %q is outside the execution's trace", s.Name())
		}
		switch s.Name() {
		case "orchestration Traced":
			steps = append(steps, s)
		case "activity Flaky":
			activities = append(activities, s)
		default:
			t.Errorf("unexpected span %q", s.Name())
		}
	}
	if len(steps) < 3 || len(activities) != 2 {
		t.Fatalf("%d step spans, %d activity spans", len(steps), len(activities))
	}
	for i, s := range activities {
		if v, _ := attr(s, telemetry.AttrInstanceID); v.AsString() != inst.ID {
			t.Errorf("activity span %d: instance %q", i, v.AsString())
		}
		if v, _ := attr(s, telemetry.AttrAttempt); v.AsInt64() != 1 {
			t.Errorf("activity span %d: attempt %d (each retry is a new task, delivered once)", i, v.AsInt64())
		}
		if _, ok := attr(s, telemetry.AttrTaskID); !ok {
			t.Errorf("activity span %d has no task ID", i)
		}
	}
	if v, _ := attr(activities[0], telemetry.AttrOutcome); v.AsString() != telemetry.OutcomeFailed {
		t.Errorf("first delivery outcome %q", v.AsString())
	}
	if v, _ := attr(activities[1], telemetry.AttrOutcome); v.AsString() != telemetry.OutcomeCompleted {
		t.Errorf("second delivery outcome %q", v.AsString())
	}
	last := steps[len(steps)-1]
	if v, _ := attr(last, telemetry.AttrStatus); v.AsString() != string(duro.StatusCompleted) {
		t.Errorf("last step status %q", v.AsString())
	}
}
