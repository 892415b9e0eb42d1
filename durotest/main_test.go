package durotest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that closed environments leave no goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
