package main

import (
	"testing"

	"github.com/durohq/duro"
)

func TestRaise(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	tests := []struct {
		name, data, want string
	}{
		{"object", `{"ok": true}`, `{"ok":true}`},
		{"string", `"yes"`, `"yes"`},
		{"no data", ``, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := "raise-" + tt.name
			cli(t, "start", "WaitForGo", "--store", env.store, "--id", id).ok(t)
			r := cli(t, "raise", id, "go", "--data", tt.data, "--store", env.store).ok(t)
			if r.stdout != `raised event "go" on `+id+"\n" {
				t.Errorf("stdout %q", r.stdout)
			}
			inst := env.wait(t, id)
			if inst.Status != duro.StatusCompleted || compact(t, inst.RawOutput) != tt.want {
				t.Fatalf("instance %s with output %s; want Completed with %s", inst.Status, inst.RawOutput, tt.want)
			}
		})
	}
}

func TestRaiseErrors(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "Echo", "--store", env.store, "--id", "done").ok(t)
	env.wait(t, "done")
	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"malformed data", []string{"raise", "done", "go", "--data", "{'a': 1}"}, exitUsage, "--data is not valid JSON"},
		{"unknown ID", []string{"raise", "ghost", "go"}, exitFailure, `no instance with ID "ghost"`},
		{"finished", []string{"raise", "done", "go"}, exitFailure, `instance "done" has already finished (Completed)`},
		{"empty event", []string{"raise", "done", ""}, exitUsage, "EVENT name must not be empty"},
		{"missing event", []string{"raise", "done"}, exitUsage, "(ID EVENT)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cli(t, append(tt.args, "--store", env.store)...).fails(t, tt.code, tt.err)
		})
	}
}
