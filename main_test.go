package duro_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("DURO_CRASH_WORKER") != "" {
		crashWorkerMain()
		return
	}
	goleak.VerifyTestMain(m)
}
