package main

import (
	"context"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Commands open stores and run workers in-process; each must leave no
// goroutine behind when it returns. With DURO_TEST_MAIN set, the test binary
// is the duro command instead (chaos spawns itself as a worker process).
func TestMain(m *testing.M) {
	if os.Getenv("DURO_TEST_MAIN") != "" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}
