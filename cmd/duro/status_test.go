package main

import (
	"strings"
	"testing"

	"duro"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "Echo", "--store", env.store, "--id", "ok", "--input", `{"n":1}`).ok(t)
	cli(t, "start", "Boom", "--store", env.store, "--id", "bad").ok(t)
	env.wait(t, "ok")
	env.wait(t, "bad")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"completed", []string{"status", "ok"}, []string{
			"ID:            ok\n", "Name:          Echo\n", "Status:        Completed\n",
			`Input:         {"n":1}`, `Output:        {"n":1}`, "Custom status: -\n", "Completed:     2"}},
		{"failed", []string{"status", "bad"}, []string{"Status:        Failed\n", "Failure:       Boom: it broke (in Boom)\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := cli(t, append(tt.args, "--store", env.store)...).ok(t)
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "Boom", "--store", env.store, "--id", "bad", "--input", `[1]`).ok(t)
	env.wait(t, "bad")
	r := cli(t, "status", "bad", "--store", env.store, "-o", "json").ok(t)
	var got instanceJSON
	decodeJSON(t, r.stdout, &got)
	if got.ID != "bad" || got.Name != "Boom" || got.Status != duro.StatusFailed || compact(t, got.Input) != "[1]" ||
		got.CreatedAt.IsZero() || got.CompletedAt.IsZero() || got.Failure == nil ||
		got.Failure.Type != "Boom" || got.Failure.Message != "it broke" {
		t.Fatalf("status -o json = %+v\n%s", got, r.stdout)
	}
}

func TestStatusPendingNote(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	cli(t, "start", "Nobody", "--store", store, "--id", "p").ok(t)
	r := cli(t, "status", "p", "--store", store).ok(t)
	if !strings.Contains(r.stdout, `Pending until a worker with "Nobody" registered runs it`) {
		t.Fatalf("no note on a pending instance:\n%s", r.stdout)
	}
}

func TestStatusErrors(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"unknown ID", []string{"status", "ghost"}, exitFailure, `no instance with ID "ghost"`},
		{"bad output", []string{"status", "ghost", "-o", "yaml"}, exitUsage, "want text or json"},
		{"no ID", []string{"status"}, exitUsage, "(ID)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cli(t, append(tt.args, "--store", store)...).fails(t, tt.code, tt.err)
		})
	}
}
