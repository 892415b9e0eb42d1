package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/sqlite"
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

func TestStatusSuspension(t *testing.T) {
	t.Parallel()
	one := newDecisionEnv(t, "one", 1)
	two := newDecisionEnv(t, "two", 2)
	poisoned := newPoisonedEnv(t, "sick")
	tests := []struct {
		name   string
		store  string
		id     string
		want   []string
		absent []string
	}{
		{"one decision", one.store, "one", []string{
			"Status:        Suspended\n",
			"Suspended:     since 2",
			`Reason:        possible duplicate: activity "Charge" (task 0) attempt 2; an earlier delivery may have run` + "\n",
			"Awaiting:      a decision on task #0 Charge (attempt 2, previous delivery 2",
			", input 0)\n",
			"Resume with:   duro resume one --task 0 --retry --store ",
			"               duro resume one --task 0 --result JSON --store ",
			"               duro resume one --task 0 --fail MESSAGE --store ",
		}, []string{"Poisoned"}},
		{"two decisions", two.store, "two", []string{
			"Awaiting:      a decision on task #0 Charge (attempt 2",
			"Awaiting:      a decision on task #1 Charge (attempt 2",
			"Resume with:   duro resume two --decide 0=DECISION --decide 1=DECISION --store ",
			"               # DECISION for each task: retry, result:JSON or fail:MESSAGE\n",
		}, nil},
		{"poisoned", poisoned.store, "sick", []string{
			"Status:        Suspended\n",
			"Reason:        poisoned: ",
			"Poisoned:      yes: a step kept failing before it committed; resuming retries it\n",
			"Resume with:   duro resume sick --store ",
		}, []string{"Awaiting"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := cli(t, "status", tt.id, "--store", tt.store).ok(t)
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
			for _, w := range tt.absent {
				if strings.Contains(r.stdout, w) {
					t.Errorf("stdout has %q:\n%s", w, r.stdout)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		r := cli(t, "status", "two", "--store", two.store, "-o", "json").ok(t)
		var got instanceJSON
		decodeJSON(t, r.stdout, &got)
		s := got.Suspension
		if got.Status != duro.StatusSuspended || s == nil || s.Since.IsZero() || s.Poisoned || !strings.Contains(s.Reason, "possible duplicate") ||
			len(s.Pending) != 2 || s.Pending[1].TaskID != 1 || s.Pending[1].Activity != "Charge" || s.Pending[1].Attempt != 2 ||
			compact(t, s.Pending[1].Input) != "1" || s.Pending[1].PreviousDeliveryAt.IsZero() || s.Pending[1].Options.OnDuplicate != "Suspend" {
			t.Fatalf("suspension %+v\n%s", s, r.stdout)
		}
		r = cli(t, "status", "sick", "--store", poisoned.store, "-o", "json").ok(t)
		var sick instanceJSON
		decodeJSON(t, r.stdout, &sick)
		if sick.Suspension == nil || !sick.Suspension.Poisoned || len(sick.Suspension.Pending) != 0 {
			t.Fatalf("poisoned suspension %+v", sick.Suspension)
		}
	})
}

// newPoisonedEnv starts instance id of an orchestration no worker knows on
// a worker that gives up on a step after two deliveries: the engine
// suspends the instance as poisoned.
func newPoisonedEnv(t *testing.T, id string) *testEnv {
	t.Helper()
	path := newStore(t)
	be, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	// The worker has code for steps (a worker with none claims none), but
	// not the instance's.
	reg := duro.NewRegistry()
	duro.RegisterOrchestration(reg, "Other", func(*duro.OrchestrationContext, any) (any, error) { return nil, nil })
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{
		PollInterval: 10 * time.Millisecond, MaxStepDeliveries: 2, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
	env := &testEnv{store: path, c: duro.NewClient(be, nil)}
	if _, err := env.c.Start(context.Background(), "Unknown", nil, duro.StartOptions{InstanceID: id}); err != nil {
		t.Fatal(err)
	}
	env.waitFor(t, id, func(i *duro.Instance) bool { return i.Suspension != nil && i.Suspension.Poisoned })
	return env
}
