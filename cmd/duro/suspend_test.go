package main

import (
	"strings"
	"testing"

	"github.com/durohq/duro"
)

func TestSuspend(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "WaitForGo", "--store", env.store, "--id", "s").ok(t)
	env.waitRunning(t, "s")

	r := cli(t, "suspend", "s", "--reason", "investigating", "--store", env.store).ok(t)
	if r.stdout != "suspension of s requested; a worker records it at the instance's next step\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	inst := env.waitStatus(t, "s", duro.StatusSuspended)
	if inst.Suspension == nil || inst.Suspension.Reason != "investigating" || inst.Suspension.Poisoned || len(inst.Suspension.Pending) != 0 {
		t.Fatalf("suspension %+v", inst.Suspension)
	}
	// Events wait while the instance is suspended.
	cli(t, "raise", "s", "go", "--data", `"kept"`, "--store", env.store).ok(t)

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"again", []string{"suspend", "s"}, []string{"suspension of s requested", "note: s is already suspended, since 2", "(investigating)"}},
		{"status", []string{"status", "s"}, []string{"Status:        Suspended\n", "Suspended:     since 2", "Reason:        investigating\n",
			"Resume with:   duro resume s --store "}},
		{"history", []string{"history", "s"}, []string{"ExecutionSuspended", "reason: investigating"}},
	}
	// In order, not in parallel: parallel subtests would wait for a free
	// slot behind every other test, with the instance suspended meanwhile.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, append(tt.args, "--store", env.store)...).ok(t)
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
		})
	}
	if st := cli(t, "status", "s", "--store", env.store).ok(t).stdout; strings.Contains(st, "Awaiting") || strings.Contains(st, "Poisoned") {
		t.Errorf("status of a plain suspension:\n%s", st)
	}

	r = cli(t, "resume", "s", "--reason", "all clear", "--store", env.store).ok(t)
	if !strings.HasPrefix(r.stdout, "resume of s requested (resume/") ||
		!strings.Contains(r.stdout, "); a worker applies or refuses it at the instance's next step\nits outcome: duro resume s --outcome resume/") {
		t.Errorf("resume stdout %q", r.stdout)
	}
	inst = env.wait(t, "s")
	if inst.Status != duro.StatusCompleted || string(inst.RawOutput) != `"kept"` {
		t.Fatalf("after resume: %s %s", inst.Status, inst.RawOutput)
	}
	h := cli(t, "history", "s", "--store", env.store).ok(t)
	if !strings.Contains(h.stdout, "ExecutionResumed") || !strings.Contains(h.stdout, "reason: all clear") {
		t.Errorf("history lacks the resume:\n%s", h.stdout)
	}
	cli(t, "suspend", "s", "--store", env.store).fails(t, exitFailure, `instance "s" has already finished (Completed)`)
}

func TestSuspendErrors(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"unknown ID", []string{"suspend", "ghost"}, exitFailure, `no instance with ID "ghost"`},
		{"no ID", []string{"suspend"}, exitUsage, "(ID)"},
		{"two IDs", []string{"suspend", "a", "b"}, exitUsage, "want 1 argument(s) (ID), got 2"},
		{"reason without text", []string{"suspend", "a", "--reason"}, exitUsage, "flag needs an argument: --reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cli(t, append([]string{"--store", store}, tt.args...)...).fails(t, tt.code, tt.err)
		})
	}
}
