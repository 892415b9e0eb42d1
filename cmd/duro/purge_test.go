package main

import (
	"strings"
	"testing"
)

func TestPurgeOne(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "WaitForGo", "--store", env.store, "--id", "live").ok(t)
	cli(t, "start", "Echo", "--store", env.store, "--id", "done").ok(t)
	env.wait(t, "done")
	env.waitRunning(t, "live")

	cli(t, "purge", "live", "--store", env.store).fails(t, exitFailure, `instance "live" has not finished (Running)`)
	r := cli(t, "purge", "done", "--store", env.store).ok(t)
	if r.stdout != "purged 1 instance (done)\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	cli(t, "status", "done", "--store", env.store).fails(t, exitFailure, `no instance with ID "done"`)
	cli(t, "purge", "done", "--store", env.store).fails(t, exitFailure, `no instance with ID "done"`)
}

func TestPurgeWhere(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	for _, id := range []string{"e1", "e2"} {
		cli(t, "start", "Echo", "--store", env.store, "--id", id).ok(t)
	}
	cli(t, "start", "Boom", "--store", env.store, "--id", "b1").ok(t)
	cli(t, "start", "WaitForGo", "--store", env.store, "--id", "w1").ok(t)
	for _, id := range []string{"e1", "e2", "b1"} {
		env.wait(t, id)
	}
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"--status", "Completed", "--created-before", "2001-01-01"}, "purged 0 instances\n"},
		{[]string{"--status", "Terminated"}, "purged 0 instances\n"},
		{[]string{"--status", "completed", "--name", "Echo"}, "purged 2 instances\n"},
		{[]string{"--name", "Boom", "--created-before", "0s"}, "purged 1 instance\n"},
		{[]string{"--status", "Completed,Failed,Terminated"}, "purged 0 instances\n"},
	}
	for _, s := range steps {
		r := cli(t, append([]string{"purge", "--store", env.store}, s.args...)...).ok(t)
		if r.stdout != s.want {
			t.Errorf("purge %v: stdout %q, want %q", s.args, r.stdout, s.want)
		}
	}
	r := cli(t, "list", "--store", env.store).ok(t)
	if want := "w1  WaitForGo"; !strings.Contains(r.stdout, want) || strings.Contains(r.stdout, "e1") || strings.Contains(r.stdout, "b1") {
		t.Fatalf("after purging, list:\n%s", r.stdout)
	}
}

func TestPurgeErrors(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	tests := []struct {
		name string
		args []string
		err  string
	}{
		{"nothing", nil, "give an instance ID, or filters"},
		{"both", []string{"x", "--status", "Completed"}, "not both"},
		{"two IDs", []string{"x", "y"}, "at most one instance ID"},
		{"live status", []string{"--status", "Completed,Running"}, "Running instances have not finished"},
		{"unknown status", []string{"--status", "Gone"}, `unknown status "Gone"`},
		{"bad time", []string{"--status", "Failed", "--created-before", "last week"}, "--created-before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cli(t, append([]string{"purge", "--store", store}, tt.args...)...).fails(t, exitUsage, tt.err)
		})
	}
}
