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
