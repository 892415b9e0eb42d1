package main

import (
	"strings"
	"testing"

	"github.com/durohq/duro"
)

// TestPoisonedCause: an instance whose orchestration no worker has, and an
// entity whose name none has, are poisoned after their deliveries; status
// and entity get say why, not only how many deliveries there were.
func TestPoisonedCause(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "Foo", "--store", env.store, "--id", "foo").ok(t)
	env.waitFor(t, "foo", func(i *duro.Instance) bool { return i.Status == duro.StatusSuspended })
	r := cli(t, "status", "foo", "--store", env.store).ok(t)
	t.Logf("status:\n%s", r.stdout)
	if !strings.Contains(r.stdout, `orchestration not registered: "Foo"`) {
		t.Errorf("status of the poisoned foo lacks the cause:\n%s", r.stdout)
	}

	cli(t, "entity", "signal", "@ghost@k", "add", "--input", "1", "--store", env.store).ok(t)
	env.waitFor(t, "@ghost@k", func(i *duro.Instance) bool { return i.Status == duro.StatusSuspended })
	r = cli(t, "entity", "get", "@ghost@k", "--store", env.store).ok(t)
	t.Logf("entity get:\n%s", r.stdout)
	if strings.Contains(r.stdout, "State:         (none)\n") || !strings.Contains(r.stdout, `entity not registered: "ghost"`) ||
		!strings.Contains(r.stdout, "poisoned: its operations kept failing") {
		t.Errorf("entity get of the poisoned @ghost@k:\n%s", r.stdout)
	}
}
