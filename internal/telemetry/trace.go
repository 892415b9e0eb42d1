// Package telemetry holds what the worker and the server share for
// OpenTelemetry traces: the span names and attribute keys and the trace an
// orchestration execution's spans belong to. It uses only the OpenTelemetry
// API (go.opentelemetry.io/otel/trace); the SDK and the exporters are in
// internal/telemetry/export, which only cmd/duro imports.
//
// Every span of one execution of an instance — its orchestration steps and
// its activity deliveries, on whatever worker they run — belongs to one
// trace whose ID derives from the instance and execution IDs, as children of
// a virtual root span that stands for the execution. Nothing has to travel
// through the store for that: any worker computes the same IDs.
package telemetry

import (
	"context"
	"crypto/sha256"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of duro's spans.
const ScopeName = "duro"

// Attribute keys of duro's spans.
const (
	AttrInstanceID    = attribute.Key("duro.instance.id")
	AttrExecutionID   = attribute.Key("duro.execution.id")
	AttrOrchestration = attribute.Key("duro.orchestration")
	AttrActivity      = attribute.Key("duro.activity")
	AttrTaskID        = attribute.Key("duro.task.id")
	AttrAttempt       = attribute.Key("duro.attempt")
	AttrDeliveries    = attribute.Key("duro.step.deliveries")
	AttrMessages      = attribute.Key("duro.step.messages")
	AttrStatus        = attribute.Key("duro.status")
	AttrGuarantee     = attribute.Key("duro.guarantee")
	AttrOnDuplicate   = attribute.Key("duro.on_duplicate")
	AttrOutcome       = attribute.Key("duro.outcome")
	AttrParent        = attribute.Key("duro.parent.instance.id")
)

// ExecutionSpanContext is the span context of the virtual root span of an
// execution: the trace ID and span ID are the first bytes of a SHA-256 of
// the instance and execution IDs, and the context is marked sampled and
// remote, so spans started under it join the execution's trace.
func ExecutionSpanContext(instanceID, executionID string) trace.SpanContext {
	sum := sha256.Sum256([]byte("duro\x00" + instanceID + "\x00" + executionID))
	var tid trace.TraceID
	var sid trace.SpanID
	copy(tid[:], sum[:16])
	copy(sid[:], sum[16:24])
	if !tid.IsValid() {
		tid[0] = 1
	}
	if !sid.IsValid() {
		sid[0] = 1
	}
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true,
	})
}

// ExecutionContext returns ctx with the execution's virtual root span as the
// parent of the spans started from it.
func ExecutionContext(ctx context.Context, instanceID, executionID string) context.Context {
	return trace.ContextWithRemoteSpanContext(ctx, ExecutionSpanContext(instanceID, executionID))
}
