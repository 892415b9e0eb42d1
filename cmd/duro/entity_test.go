package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/sqlite"
)

// newEntityEnv is a store with a worker running the "counter" entity.
func newEntityEnv(t *testing.T) (string, *duro.Client) {
	t.Helper()
	path := newStore(t)
	be, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := duro.NewRegistry()
	duro.RegisterEntityOperation(reg, "counter", "add", func(ctx duro.EntityContext, n *int, d int) (int, error) {
		*n += d
		return *n, nil
	})
	duro.RegisterEntityOperation(reg, "counter", "reset", func(ctx duro.EntityContext, n *int, _ any) (any, error) {
		ctx.DeleteState()
		return nil, nil
	})
	startWorker(t, be, reg)
	t.Cleanup(func() { _ = be.Close() })
	return path, duro.NewClient(be, nil)
}

func waitCounter(t *testing.T, c *duro.Client, id duro.EntityID, want int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var n int
		if st, err := c.GetEntity(context.Background(), id); err == nil && st.State(&n) == nil && n == want {
			return
		}
	}
	t.Fatalf("entity %s never reached %d", id, want)
}

func TestEntity(t *testing.T) {
	t.Parallel()
	store, c := newEntityEnv(t)
	id := duro.EntityID{Name: "counter", Key: "a"}
	for _, args := range [][]string{
		{"entity", "signal", "@counter@a", "add", "--input", "2", "--key", "k1"},
		{"entity", "signal", "@counter@a", "add", "--input", "2", "--key", "k1"}, // same key: applied once
		{"entity", "signal", "@counter@a", "add", "--input", "5"},
	} {
		r := cli(t, append(args, "--store", store)...).ok(t)
		if !strings.HasPrefix(r.stdout, "signalled add on @counter@a") {
			t.Fatalf("stdout %q", r.stdout)
		}
	}
	waitCounter(t, c, id, 7)
	r := cli(t, "entity", "get", "counter", "a", "--store", store).ok(t)
	if !strings.Contains(r.stdout, "Entity:        @counter@a") || !strings.Contains(r.stdout, "State:         7") {
		t.Fatalf("get:\n%s", r.stdout)
	}
	r = cli(t, "entity", "get", "@counter@a", "-o", "json", "--store", store).ok(t)
	var j entityJSON
	decodeJSON(t, r.stdout, &j)
	if j.ID != "@counter@a" || string(j.State) != "7" || !j.Exists {
		t.Fatalf("json %+v", j)
	}
	r = cli(t, "entity", "list", "--name", "counter", "--store", store).ok(t)
	if !strings.Contains(r.stdout, "@counter@a") || !strings.Contains(r.stdout, "ENTITY") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	cli(t, "entity", "signal", "@counter@a", "reset", "--store", store).ok(t)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, err := c.GetEntity(context.Background(), id)
		if err == nil && !st.Exists {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("reset never applied")
		}
	}
	if r := cli(t, "entity", "list", "--store", store).ok(t); strings.Contains(r.stdout, "@counter@a") {
		t.Fatalf("an empty entity is listed without --include-empty:\n%s", r.stdout)
	}
	if r := cli(t, "entity", "list", "--include-empty", "--store", store).ok(t); !strings.Contains(r.stdout, "@counter@a") {
		t.Fatalf("--include-empty does not list it:\n%s", r.stdout)
	}
	// The old name still works, and says the new one.
	if r := cli(t, "entity", "list", "--empty", "--store", store).ok(t); !strings.Contains(r.stdout, "@counter@a") ||
		!strings.Contains(r.stderr, "--empty is now --include-empty") {
		t.Fatalf("--empty:\n%s\n%s", r.stdout, r.stderr)
	}
	r = cli(t, "entity", "clean", "--store", store).ok(t)
	if !strings.Contains(r.stdout, "asked 1 empty entities") {
		t.Fatalf("clean: %s", r.stdout)
	}
}

func TestEntityErrors(t *testing.T) {
	t.Parallel()
	store, _ := newEntityEnv(t)
	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"not an entity", []string{"entity", "get", "order-1"}, exitUsage, `"order-1" is not an entity`},
		{"unknown", []string{"entity", "get", "@counter@ghost"}, exitFailure, "no entity @counter@ghost"},
		{"bad name", []string{"entity", "get", "co@unter", "x"}, exitUsage, "the name must be non-empty without '@'"},
		{"bad input", []string{"entity", "signal", "@counter@a", "add", "--input", "{nope"}, exitUsage, "--input is not valid JSON"},
		{"empty op", []string{"entity", "signal", "@counter@a", ""}, exitUsage, "OPERATION name must not be empty"},
		{"bad output", []string{"entity", "get", "@counter@a", "-o", "xml"}, exitUsage, "xml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cli(t, append(tt.args, "--store", store)...).fails(t, tt.code, tt.err)
		})
	}
}
