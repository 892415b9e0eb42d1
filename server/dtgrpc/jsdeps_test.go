package dtgrpc_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// jsDir is where the JavaScript tests live; `npm ci` there installs
// @microsoft/durabletask-js 0.4.0 (node_modules is not committed).
const jsDir = "testdata/js"

// daprDir holds the scenarios of @dapr/durabletask-js 1.0.0, the Dapr
// fork of the SDK (older proto: no completion tokens, no tags); `npm ci`
// there installs it.
const daprDir = "testdata/dapr"

// needDapr returns the path of the Dapr SDK's test directory, skipping
// (failing with CI=true) when the package is not installed.
func needDapr(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(daprDir, "node_modules", "@dapr", "durabletask-js", "package.json")); err != nil {
		msg := "@dapr/durabletask-js is not installed (run npm ci in server/dtgrpc/testdata/dapr)"
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI must run the JavaScript tests", msg)
		}
		t.Skip(msg)
	}
	abs, err := filepath.Abs(daprDir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// needJS returns the path of node and of the JavaScript test directory.
// Without node or the installed SDK the test is skipped, except under
// CI=true, where it fails: CI must run it.
func needJS(t *testing.T) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	missing := ""
	switch {
	case err != nil:
		missing = "node is not installed"
	default:
		if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@microsoft", "durabletask-js", "package.json")); err != nil {
			missing = "@microsoft/durabletask-js is not installed (run npm ci in server/dtgrpc/testdata/js)"
		}
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI must run the JavaScript tests", missing)
		}
		t.Skip(missing)
	}
	abs, err := filepath.Abs(jsDir)
	if err != nil {
		t.Fatal(err)
	}
	return node, abs
}
