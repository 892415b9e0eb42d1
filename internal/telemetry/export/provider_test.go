package export_test

import (
	"context"
	"testing"

	"github.com/durohq/duro/internal/telemetry/export"
)

func TestNewTracerProvider(t *testing.T) {
	t.Parallel()
	for _, exp := range []string{"", "none", "stdout"} {
		tp, shutdown, err := export.NewTracerProvider(context.Background(), export.TraceConfig{Exporter: exp})
		if err != nil || tp == nil {
			t.Fatalf("%q: %v", exp, err)
		}
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("%q: shutdown: %v", exp, err)
		}
	}
	if _, _, err := export.NewTracerProvider(context.Background(), export.TraceConfig{Exporter: "zipkin"}); err == nil {
		t.Error("unknown exporter accepted")
	}
}
