// Package export builds an OpenTelemetry SDK tracer provider with an
// exporter (stdout or OTLP over HTTP) from the `duro server` flags. It is
// the only place the SDK and the exporters are linked: the worker and the
// backends know only the API interfaces (go.opentelemetry.io/otel/trace),
// so a program that imports duro and a backend links no exporter, gRPC or
// protobuf code.
package export

import (
	"context"
	"fmt"
	"io"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Exporters a TraceConfig may name.
const (
	ExporterNone   = "none"
	ExporterStdout = "stdout"
	ExporterOTLP   = "otlp"
)

// TraceConfig says where spans go.
type TraceConfig struct {
	// Exporter is ExporterNone (the default: no tracing), ExporterStdout
	// (JSON lines on Stdout) or ExporterOTLP (OTLP over HTTP).
	Exporter string
	// Endpoint is the OTLP/HTTP endpoint URL, such as
	// http://localhost:4318. Empty: the OTEL_EXPORTER_OTLP_ENDPOINT and
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT environment variables, else
	// https://localhost:4318.
	Endpoint string
	// ServiceName is the service.name resource attribute. Default: "duro".
	ServiceName string
	// SampleRatio is the fraction of executions traced, in (0, 1].
	// Default: 1.
	SampleRatio float64
	// Stdout receives the stdout exporter's spans.
	Stdout io.Writer
}

// NewTracerProvider returns the tracer provider cfg describes and the
// function that flushes and stops it. With ExporterNone it is a no-op
// provider.
func NewTracerProvider(ctx context.Context, cfg TraceConfig) (trace.TracerProvider, func(context.Context) error, error) {
	nop := func(context.Context) error { return nil }
	var exp sdktrace.SpanExporter
	var err error
	switch strings.ToLower(cfg.Exporter) {
	case "", ExporterNone:
		return noop.NewTracerProvider(), nop, nil
	case ExporterStdout:
		w := cfg.Stdout
		if w == nil {
			w = io.Discard
		}
		exp, err = stdouttrace.New(stdouttrace.WithWriter(w))
	case ExporterOTLP:
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(cfg.Endpoint))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, nil, fmt.Errorf("unknown trace exporter %q (want %s, %s or %s)", cfg.Exporter, ExporterNone, ExporterStdout, ExporterOTLP)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("trace exporter %s: %w", cfg.Exporter, err)
	}
	ratio := cfg.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	name := cfg.ServiceName
	if name == "" {
		name = "duro"
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))),
		// Spans join their execution's trace, whose virtual root is
		// sampled: the ratio applies per execution, by trace ID.
		sdktrace.WithSampler(sdktrace.TraceIDRatioBased(ratio)),
	)
	return tp, tp.Shutdown, nil
}
