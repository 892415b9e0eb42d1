package main

import (
	"testing"

	"go.uber.org/goleak"
)

// Commands open stores and run workers in-process; each must leave no
// goroutine behind when it returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
