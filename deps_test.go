package duro_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// leanPackages are what an application imports to run duro: the SDK and a
// backend. None of them may link the heavy dependencies below.
var leanPackages = []string{
	"github.com/durohq/duro",
	"github.com/durohq/duro/backend/sqlite",
	"github.com/durohq/duro/backend/memory",
	"github.com/durohq/duro/backend/postgres",
}

// heavyPrefixes are the import paths an application of duro must not link:
// gRPC and protobuf (the Durable Task protocol, OTLP), the gRPC gateway, and
// the OpenTelemetry SDK and exporters. Spans go through the OpenTelemetry API
// only; cmd/duro links the SDK (internal/telemetry/export).
var heavyPrefixes = []string{
	"google.golang.org/grpc",
	"google.golang.org/protobuf",
	"google.golang.org/genproto",
	"github.com/grpc-ecosystem",
	"go.opentelemetry.io/otel/exporters",
	"go.opentelemetry.io/otel/sdk",
	"go.opentelemetry.io/proto",
}

// TestLeanDependencies lists, with the go tool, every package the SDK and
// the backends link (not their tests) and fails on any gRPC, protobuf,
// OpenTelemetry SDK or exporter package, naming the package that imports it.
func TestLeanDependencies(t *testing.T) {
	t.Parallel()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list the dependencies: %v", err)
	}
	args := append([]string{"list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}"}, leanPackages...)
	cmd := exec.Command(gotool, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderr.Bytes())
	}
	heavy := func(path string) bool {
		for _, p := range heavyPrefixes {
			if path == p || strings.HasPrefix(path, p+"/") {
				return true
			}
		}
		return false
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, line := range lines {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		if heavy(pkg) {
			continue // reported where a lean package imports it
		}
		for _, imp := range imports {
			if heavy(imp) {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
	t.Logf("%d packages linked by %s", len(lines), strings.Join(leanPackages, ", "))
}
