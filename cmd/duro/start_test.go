package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
)

func TestStartErrors(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	cli(t, "start", "Echo", "--store", store, "--id", "taken").ok(t)
	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"no name", []string{"start"}, exitUsage, "want 1 argument(s) (NAME), got 0"},
		{"empty name", []string{"start", " "}, exitUsage, "must not be empty"},
		{"malformed input", []string{"start", "Echo", "--input", "{sku: 1}"}, exitUsage, "--input is not valid JSON"},
		{"bare word input", []string{"start", "Echo", "--input", "hello"}, exitUsage, "not valid JSON"},
		{"missing input file", []string{"start", "Echo", "--input", "@" + filepath.Join(t.TempDir(), "none.json")}, exitUsage, "--input"},
		{"bad start-at", []string{"start", "Echo", "--start-at", "tomorrow"}, exitUsage, "--start-at: \"tomorrow\" is not a time"},
		{"duplicate ID", []string{"start", "Echo", "--id", "taken"}, exitFailure, `an instance with ID "taken" already exists and has not finished (Pending)`},
		{"replace live", []string{"start", "Echo", "--id", "taken", "--replace"}, exitFailure, "already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cli(t, append(tt.args, "--store", store)...).fails(t, tt.code, tt.err)
		})
	}
}

func TestStartStoresInputAsGiven(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	file := filepath.Join(t.TempDir(), "in.json")
	if err := os.WriteFile(file, []byte("[1, 2, 3]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, input, want string }{
		{"object", `{"sku":"A-1","qty":2}`, `{"sku":"A-1","qty":2}`},
		{"string", `"hello"`, `"hello"`},
		{"number", `42`, `42`},
		{"null", `null`, `null`},
		{"file", "@" + file, `[1,2,3]`},
		{"none", ``, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := "in-" + tt.name
			r := cli(t, "start", "Echo", "--store", store, "--id", id, "--input", tt.input).ok(t)
			if r.stdout != id+"\n" {
				t.Fatalf("stdout %q, want the ID", r.stdout)
			}
			st := cli(t, "status", id, "--store", store, "-o", "json").ok(t)
			var got instanceJSON
			decodeJSON(t, st.stdout, &got)
			if compact(t, got.Input) != tt.want {
				t.Errorf("stored input %s, want %s", got.Input, tt.want)
			}
			if got.Status != duro.StatusPending {
				t.Errorf("status %s, want Pending (no worker)", got.Status)
			}
		})
	}
}

func TestStartRandomIDAndStartAt(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	r := cli(t, "start", "Echo", "--store", store, "--start-at", "1h").ok(t)
	id := strings.TrimSpace(r.stdout)
	if len(id) != 36 {
		t.Fatalf("ID %q is not a UUID", id)
	}
	cli(t, "start", "Echo", "--store", store, "--start-at", time.Now().Add(time.Hour).Format(time.RFC3339)).ok(t)
}

func TestStartWait(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	tests := []struct {
		name string
		args []string
		code int
		out  []string
	}{
		{"completed", []string{"start", "Echo", "--id", "w1", "--input", `{"a":1}`, "--wait"}, 0,
			[]string{"w1\n", "Status:        Completed", `Output:        {"a":1}`}},
		{"failed", []string{"start", "Boom", "--id", "w2", "--wait"}, exitFailure,
			[]string{"w2\n", "Status:        Failed", "Failure:       Boom: it broke"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := cli(t, append(tt.args, "--store", env.store)...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", r.code, tt.code, r.stdout, r.stderr)
			}
			for _, want := range tt.out {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
}

func TestStartReplaceFinished(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "Echo", "--store", env.store, "--id", "r", "--input", "1").ok(t)
	env.wait(t, "r")
	cli(t, "start", "Echo", "--store", env.store, "--id", "r", "--input", "2").fails(t, exitFailure, "(Completed); --replace replaces it")
	cli(t, "start", "Echo", "--store", env.store, "--id", "r", "--input", "2", "--replace").ok(t)
	inst := env.wait(t, "r")
	if string(inst.RawOutput) != "2" {
		t.Fatalf("output %s, want 2 from the replacement", inst.RawOutput)
	}
}
