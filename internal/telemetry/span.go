package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/durohq/duro/backend"
)

// Outcomes recorded on spans as AttrOutcome.
const (
	OutcomeCommitted  = "committed"           // a step committed
	OutcomeCompleted  = "completed"           // an activity's result committed
	OutcomeFailed     = "failed"              // an activity's failure committed
	OutcomeDuplicate  = "duplicate_suspended" // an at-most-once delivery suspended its instance
	OutcomeHandedBack = "handed_back"         // the delivery was abandoned, to be redelivered
	OutcomeLeaseLost  = "lease_lost"          // a newer delivery holds the work item (A2)
	OutcomePoisoned   = "poisoned"            // too many deliveries
	OutcomeError      = "error"               // the commit failed
)

// StartStep starts the span of one delivery of an orchestration step, in
// its execution's trace.
func StartStep(ctx context.Context, tr trace.Tracer, wi *backend.OrchestrationWorkItem) (context.Context, trace.Span) {
	inst := wi.Instance
	ctx = ExecutionContext(ctx, inst.ID, inst.ExecutionID)
	ctx, span := tr.Start(ctx, "orchestration "+inst.Name, trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(
			AttrInstanceID.String(inst.ID), AttrExecutionID.String(inst.ExecutionID),
			AttrOrchestration.String(inst.Name), AttrAttempt.Int64(wi.Attempt),
			AttrDeliveries.Int(wi.Deliveries), AttrMessages.Int(len(wi.Messages)),
		)
		if inst.Parent != nil {
			span.SetAttributes(AttrParent.String(inst.Parent.InstanceID))
			span.AddLink(trace.Link{SpanContext: ExecutionSpanContext(inst.Parent.InstanceID, inst.Parent.ExecutionID)})
		}
	}
	return ctx, span
}

// StartActivity starts the span of one delivery of an activity task, in its
// execution's trace.
func StartActivity(ctx context.Context, tr trace.Tracer, wi *backend.ActivityWorkItem) (context.Context, trace.Span) {
	task := wi.Task
	ctx = ExecutionContext(ctx, task.InstanceID, task.ExecutionID)
	ctx, span := tr.Start(ctx, "activity "+task.Name, trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		guarantee := "AtLeastOnce"
		if task.Options.AtMostOnce {
			guarantee = "AtMostOnce"
		}
		span.SetAttributes(
			AttrInstanceID.String(task.InstanceID), AttrExecutionID.String(task.ExecutionID),
			AttrActivity.String(task.Name), AttrTaskID.Int(task.TaskID), AttrAttempt.Int(wi.Attempt),
			AttrGuarantee.String(guarantee),
		)
		if task.Options.OnDuplicate != "" {
			span.SetAttributes(AttrOnDuplicate.String(task.Options.OnDuplicate))
		}
	}
	return ctx, span
}

// End records the outcome of a delivery on span and ends it. err, if not
// nil, marks the span as an error.
func End(span trace.Span, outcome string, err error) {
	if span.IsRecording() {
		span.SetAttributes(AttrOutcome.String(outcome))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}
