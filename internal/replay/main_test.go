package replay

import (
	"testing"

	"go.uber.org/goleak"
)

// Every orchestration runs on a goroutine of its own; Execute must unwind it
// before returning, whatever the code was waiting for.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
