package main

import (
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/durohq/duro"
	"github.com/durohq/duro/server"
)

// serveEnv serves the API of env's store, for commands with --server.
func serveEnv(t *testing.T, c *duro.Client) string {
	t.Helper()
	srv, err := server.New(server.Options{Client: c, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs.URL
}

// storeClock matches the "now" line of an in-flight view.
var storeClock = regexp.MustCompile(`(?m)^\s*"now": "[^"]*",?\n`)

// TestRemoteMatchesLocal runs the reading commands on a store directly and
// through a server: the JSON they print is the same.
func TestRemoteMatchesLocal(t *testing.T) {
	t.Parallel()
	env := newDecisionEnv(t, "pay", 2)
	cli(t, "start", "Pay", "--store", env.store, "--id", "paid", "--input", `1`, "--wait").ok(t)
	cli(t, "start", "FailOnce", "--store", env.store, "--id", "boom", "--wait").fails(t, exitFailure, "Failed")
	url := serveEnv(t, env.c)
	for _, args := range [][]string{
		{"status", "paid", "-o", "json"},
		{"history", "paid", "-o", "json"},
		{"status", "boom", "-o", "json"},
		{"status", "pay", "-o", "json"},
		{"history", "pay", "-o", "json"},
		{"history", "boom", "-o", "json"},
		{"list", "-o", "json"},
		{"list", "--status", "Failed,Suspended", "-o", "json"},
		{"list", "--page-size", "1", "-o", "json"},
		{"decisions", "-o", "json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			local := cli(t, append(args, "--store", env.store)...).ok(t)
			remote := cli(t, append(args, "--server", url)...).ok(t)
			// The in-flight view carries the store's clock when it was read.
			want := storeClock.ReplaceAllString(strings.ReplaceAll(local.stdout, " --store "+env.store, ""), "")
			got := storeClock.ReplaceAllString(strings.ReplaceAll(remote.stdout, " --server "+url, ""), "")
			if got != want {
				t.Errorf("through the server:\n%s\ndirectly:\n%s", got, want)
			}
		})
	}
}

// TestRemoteCommands acts on instances through a server and checks the
// errors read as they do on a store.
func TestRemoteCommands(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	url := serveEnv(t, env.c)
	run := func(args ...string) result { return cli(t, append(args, "--server", url)...) }

	r := run("start", "Echo", "--id", "e", "--input", `"hi"`, "--wait").ok(t)
	if !strings.Contains(r.stdout, "Status:        Completed") || !strings.Contains(r.stdout, `Output:        "hi"`) {
		t.Errorf("start --wait:\n%s", r.stdout)
	}
	run("start", "WaitForGo", "--id", "w").ok(t)
	env.waitRunning(t, "w")
	run("suspend", "w", "--reason", "look").ok(t)
	env.waitStatus(t, "w", duro.StatusSuspended)
	run("raise", "w", "go", "--data", `{"n":1}`).ok(t)
	run("resume", "w", "--reason", "done looking").ok(t)
	if inst := env.wait(t, "w"); string(inst.RawOutput) != `{"n":1}` {
		t.Errorf("w: %s %s", inst.Status, inst.RawOutput)
	}
	run("start", "WaitForGo", "--id", "t").ok(t)
	run("terminate", "t", "--reason", "stop").ok(t)
	if inst := env.wait(t, "t"); inst.Status != duro.StatusTerminated {
		t.Errorf("t: %s", inst.Status)
	}
	run("start", "FailOnce", "--id", "f").ok(t)
	if inst := env.wait(t, "f"); inst.Status != duro.StatusFailed {
		t.Fatalf("f: %s", inst.Status)
	}
	run("rewind", "f", "--reason", "b is back").ok(t)
	if inst := env.wait(t, "f"); inst.Status != duro.StatusCompleted {
		t.Errorf("f after rewind: %s", inst.Status)
	}
	run("purge", "e").ok(t)
	if r := run("purge", "--status", "Completed"); r.code != 0 || !strings.Contains(r.stdout, "purged 2 instances") {
		t.Errorf("purge --status: %d %s %s", r.code, r.stdout, r.stderr)
	}

	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"unknown", []string{"status", "ghost"}, exitFailure, `no instance with ID "ghost"`},
		{"finished", []string{"raise", "t", "go"}, exitFailure, `instance "t" has already finished (Terminated)`},
		{"exists", []string{"start", "WaitForGo", "--id", "t"}, exitFailure, `an instance with ID "t" already exists (Terminated); --replace replaces it`},
		{"not failed", []string{"rewind", "t"}, exitFailure, `instance "t" is Terminated, not Failed`},
		{"no decision pending", []string{"resume", "t", "--retry"}, exitFailure, `instance "t" has already finished`},
		{"store and server", []string{"list", "--store", env.store}, exitUsage, "give --store or --server, not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(tt.args...).fails(t, tt.code, tt.err)
		})
	}
	cli(t, "list", "--server", "localhost:1").fails(t, exitUsage, "want the server's URL")
	cli(t, "list", "--server", "http://127.0.0.1:1").fails(t, exitFailure, "does not answer (is 'duro server' running there?)")
}

// TestRemoteDecisions decides a waiting payment through a server.
func TestRemoteDecisions(t *testing.T) {
	t.Parallel()
	env := newDecisionEnv(t, "pay", 1)
	url := serveEnv(t, env.c)
	cli(t, "resume", "pay", "--server", url).fails(t, exitFailure, `instance "pay" waits for a decision on task #0 (Charge, attempt 2)`)
	cli(t, "resume", "pay", "--task", "3", "--retry", "--server", url).fails(t, exitFailure, "task #3 does not wait for a decision")
	r := cli(t, "resume", "pay", "--result", `"PAY-9"`, "--wait", "--server", url).ok(t)
	for _, w := range []string{"task #0 (Charge): complete with result \"PAY-9\"", " of pay: applied\n",
		"  task #0 result: applied: completed with the operator's result\n"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("resume lacks %q:\n%s", w, r.stdout)
		}
	}
	if inst := env.wait(t, "pay"); string(inst.RawOutput) != `["PAY-9"]` {
		t.Errorf("pay: %s %s", inst.Status, inst.RawOutput)
	}
}
