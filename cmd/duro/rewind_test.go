package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
)

func TestRewind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(t *testing.T) (*testEnv, string)
		output  string
		history []string
	}{
		{
			name: "failed activity",
			setup: func(t *testing.T) (*testEnv, string) {
				env := newTestEnv(t)
				cli(t, "start", "FailOnce", "--store", env.store, "--id", "r").ok(t)
				return env, "r"
			},
			output: `"a@1,b@2,c@1"`,
			history: []string{"TaskFailed                  #1  Step       attempt 1", "failed: Down: step b is down",
				"ExecutionRewound                           reason: the cause is fixed  re-runs #1 Step",
				"TaskCompleted               #1  Step       attempt 2"},
		},
		{
			name: "operator-failed decision",
			setup: func(t *testing.T) (*testEnv, string) {
				env := newDecisionEnv(t, "pay", 1)
				cli(t, "resume", "pay", "--fail", "refunded", "--store", env.store).ok(t)
				return env.testEnv, "pay"
			},
			history: []string{`decisions: #0 fail: "refunded"`, "re-runs #0 Charge"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, id := tt.setup(t)
			if inst := env.wait(t, id); inst.Status != duro.StatusFailed {
				t.Fatalf("%s is %s before the rewind", id, inst.Status)
			}
			r := cli(t, "rewind", id, "--reason", "the cause is fixed", "--store", env.store).ok(t)
			if want := id + " rewound: it is Running again, and a worker re-runs its failed tasks at its next step\n"; r.stdout != want {
				t.Errorf("stdout %q, want %q", r.stdout, want)
			}
			inst := env.wait(t, id)
			if inst.Status != duro.StatusCompleted || tt.output != "" && string(inst.RawOutput) != tt.output {
				t.Fatalf("after the rewind: %s %s %v", inst.Status, inst.RawOutput, inst.Failure)
			}
			h := cli(t, "history", id, "--store", env.store).ok(t)
			for _, w := range append(tt.history, "ExecutionRewound", "reason: the cause is fixed") {
				if !strings.Contains(h.stdout, w) {
					t.Errorf("history lacks %q:\n%s", w, h.stdout)
				}
			}
			cli(t, "rewind", id, "--store", env.store).fails(t, exitFailure,
				`instance "`+id+`" is Completed, not Failed: only Failed instances can be rewound`)
			cli(t, "purge", id, "--store", env.store).ok(t)
			cli(t, "rewind", id, "--store", env.store).fails(t, exitFailure, `no instance with ID "`+id+`"`)
		})
	}
}

func TestRewindErrors(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "WaitForGo", "--store", env.store, "--id", "running").ok(t)
	env.waitRunning(t, "running")
	cli(t, "start", "WaitForGo", "--store", env.store, "--id", "stopped").ok(t)
	env.waitRunning(t, "stopped")
	cli(t, "terminate", "stopped", "--store", env.store).ok(t)
	env.wait(t, "stopped")
	store := newStore(t)
	cli(t, "start", "Nobody", "--store", store, "--id", "pending").ok(t)
	tests := []struct {
		name  string
		store string
		args  []string
		code  int
		err   string
	}{
		{"unknown ID", env.store, []string{"rewind", "ghost"}, exitFailure, `no instance with ID "ghost"`},
		{"running", env.store, []string{"rewind", "running"}, exitFailure,
			`instance "running" is Running, not Failed: only Failed instances can be rewound`},
		{"terminated", env.store, []string{"rewind", "stopped"}, exitFailure, `instance "stopped" is Terminated, not Failed`},
		{"pending", store, []string{"rewind", "pending"}, exitFailure, `instance "pending" is Pending, not Failed`},
		{"no ID", store, []string{"rewind"}, exitUsage, "(ID)"},
		{"two IDs", store, []string{"rewind", "a", "b"}, exitUsage, "want 1 argument(s) (ID), got 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cli(t, append([]string{"--store", tt.store}, tt.args...)...).fails(t, tt.code, tt.err)
		})
	}
}

// TestRewindTimes: a rewind is recorded at its own time, even when no
// worker runs until later, and a timer whose time passed while the
// instance was Failed fires at the rewind, not in the past; the history's
// times after the rewind never go back before it.
func TestRewindTimes(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	be, err := sqlite.Open(context.Background(), store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = be.Close() }()
	register := func(fail bool) *duro.Registry {
		reg := duro.NewRegistry()
		duro.RegisterActivity(reg, "Mail", func(duro.ActivityContext, string) (string, error) {
			if fail {
				return "", errors.New("mail server down")
			}
			return "sent", nil
		})
		// Mail fails while a 50ms timer is pending: the timer is cut off.
		duro.RegisterOrchestration(reg, "Notify", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			timer := ctx.CreateTimer(50 * time.Millisecond)
			var out string
			if err := ctx.CallActivity("Mail", "x").Await(&out); err != nil {
				return "", err
			}
			return out, timer.Await(nil)
		})
		return reg
	}
	c := duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first := startWorker(t, be, register(true))
	if _, err := c.Start(ctx, "Notify", nil, duro.StartOptions{InstanceID: "n"}); err != nil {
		t.Fatal(err)
	}
	if inst, err := c.Wait(ctx, "n"); err != nil || inst.Status != duro.StatusFailed {
		t.Fatalf("n: %v %+v", err, inst)
	}
	if err := first.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := c.History(ctx, "n")
	if err != nil {
		t.Fatal(err)
	}
	var fireAt time.Time
	for _, e := range h {
		if e.Type == backend.EventTimerCreated {
			fireAt = e.FireAt
		}
	}
	// The timer's time passes while the instance is Failed and no worker
	// runs; then the rewind, and only later a worker.
	time.Sleep(time.Until(fireAt) + 20*time.Millisecond)
	before := time.Now()
	if err := c.Rewind(ctx, "n", "the mail server is back"); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	time.Sleep(100 * time.Millisecond) // the worker comes later
	startWorker(t, be, register(false))
	if inst, err := c.Wait(ctx, "n"); err != nil || inst.Status != duro.StatusCompleted {
		t.Fatalf("n after the rewind: %v %+v", err, inst)
	}
	if h, err = c.History(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	rewound := false
	for _, e := range h {
		switch {
		case e.Type == backend.EventExecutionRewound:
			rewound = true
			if e.Timestamp.Before(before.Add(-time.Millisecond)) || e.Timestamp.After(after.Add(time.Millisecond)) {
				t.Errorf("ExecutionRewound at %s, want the rewind's time, between %s and %s", e.Timestamp, before, after)
			}
		case rewound && e.Timestamp.Before(before.Add(-time.Millisecond)):
			t.Errorf("%s #%d after the rewind at %s, before the rewind (%s)", e.Type, e.TaskID, e.Timestamp, before)
		}
	}
	if !rewound {
		t.Fatal("no ExecutionRewound in the history")
	}
}
