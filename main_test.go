package duro_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	switch os.Getenv("DURO_CRASH_WORKER") {
	case "":
	case "fleet":
		fleetWorkerMain()
		return
	default:
		crashWorkerMain()
		return
	}
	goleak.VerifyTestMain(m)
}
