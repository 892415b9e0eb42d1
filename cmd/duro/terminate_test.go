package main

import (
	"strings"
	"testing"

	"github.com/durohq/duro"
)

func TestTerminate(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "WaitForGo", "--store", env.store, "--id", "t").ok(t)
	env.waitRunning(t, "t")
	r := cli(t, "terminate", "t", "--reason", "no longer needed", "--store", env.store).ok(t)
	// The instance waits for an event, so no worker holds its step: the
	// client records the termination itself, unless the worker, woken by
	// the request, claims the step first.
	if !strings.Contains(r.stdout, "terminated t (no worker held it") && !strings.Contains(r.stdout, "termination of t requested") {
		t.Errorf("stdout %q", r.stdout)
	}
	if inst := env.wait(t, "t"); inst.Status != duro.StatusTerminated {
		t.Fatalf("status %s, want Terminated", inst.Status)
	}
	h := cli(t, "history", "t", "--store", env.store).ok(t)
	if !strings.Contains(h.stdout, "reason: no longer needed") {
		t.Errorf("history lacks the reason:\n%s", h.stdout)
	}
	cli(t, "terminate", "t", "--store", env.store).fails(t, exitFailure, `instance "t" has already finished (Terminated)`)

	// status says why, as text and as JSON, on a store and through a
	// server alike.
	url := serveEnv(t, env.c)
	for _, where := range [][]string{{"--store", env.store}, {"--server", url}} {
		st := cli(t, append([]string{"status", "t"}, where...)...).ok(t)
		if !strings.Contains(st.stdout, "Terminated:    no longer needed, at ") {
			t.Errorf("status %s lacks the termination's reason:\n%s", where[0], st.stdout)
		}
		st = cli(t, append([]string{"status", "t", "-o", "json"}, where...)...).ok(t)
		var j instanceJSON
		decodeJSON(t, st.stdout, &j)
		if j.Termination == nil || j.Termination.Reason != "no longer needed" || j.Termination.At.IsZero() {
			t.Errorf("status -o json %s: termination %+v", where[0], j.Termination)
		}
	}
}

func TestTerminateErrors(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	cli(t, "terminate", "ghost", "--store", store).fails(t, exitFailure, `no instance with ID "ghost"`)
	cli(t, "terminate", "--store", store).fails(t, exitUsage, "(ID)")
}
