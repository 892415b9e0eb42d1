package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
)

// result is what one in-process run of the command line produced.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the command line in-process with an empty environment.
func cli(t *testing.T, args ...string) result {
	t.Helper()
	return cliEnv(t, nil, args...)
}

func cliEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := runEnv(ctx, args, func(k string) string { return env[k] }, &out, &errOut)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// ok fails the test unless the run exited 0.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// fails checks the exit code and that stderr contains want.
func (r result) fails(t *testing.T, code int, want string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stderr, want) {
		t.Fatalf("exit %d, stderr %q; want exit %d and stderr containing %q", r.code, r.stderr, code, want)
	}
}

// newStore returns the path of a fresh store file, created and migrated.
func newStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "duro.db")
	be, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// testEnv is a store with a worker running the test orchestrations:
//
//	Echo      returns its input
//	WaitForGo waits for the event "go" and returns its data
//	Boom      fails with a duro.Error of type "Boom"
//	FailOnce  calls the activity Step for "a", "b" (which fails on its first
//	          run) and "c", and returns their results joined; a rewind
//	          completes it
//	Stage     sets its input as its custom status and waits for the event
//	          "go"
//	Ship      waits up to an hour for the event "shipped" and returns its
//	          data (its timeout timer is not needed once the event comes)
type testEnv struct {
	store string
	c     *duro.Client
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	path := newStore(t)
	be, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := duro.NewRegistry()
	registerEchoAndWait(reg)
	duro.RegisterOrchestration(reg, "Boom", func(*duro.OrchestrationContext, any) (any, error) {
		return nil, duro.NewError("Boom", "it broke")
	})
	registerFailOnce(reg)
	duro.RegisterOrchestration(reg, "Stage", func(ctx *duro.OrchestrationContext, stage json.RawMessage) (any, error) {
		if err := ctx.SetCustomStatus(stage); err != nil {
			return nil, err
		}
		return nil, ctx.WaitForEvent("go", -1).Await(nil)
	})
	duro.RegisterOrchestration(reg, "Ship", func(ctx *duro.OrchestrationContext, _ any) (json.RawMessage, error) {
		var data json.RawMessage
		err := ctx.WaitForEvent("shipped", time.Hour).Await(&data)
		return data, err
	})
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{
		PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
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
		_ = be.Close()
	})
	return &testEnv{store: path, c: duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 10 * time.Millisecond})}
}

// registerEchoAndWait registers Echo, which returns its input, and
// WaitForGo, which returns the data of event "go".
func registerEchoAndWait(reg *duro.Registry) {
	duro.RegisterOrchestration(reg, "Echo", func(_ *duro.OrchestrationContext, in json.RawMessage) (json.RawMessage, error) {
		return in, nil
	})
	duro.RegisterOrchestration(reg, "WaitForGo", func(ctx *duro.OrchestrationContext, _ any) (json.RawMessage, error) {
		var data json.RawMessage
		err := ctx.WaitForEvent("go", -1).Await(&data)
		return data, err
	})
}

// wait waits for the instance to finish.
func (e *testEnv) wait(t *testing.T, id string) *duro.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inst, err := e.c.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// waitRunning waits until the instance has run its first step.
func (e *testEnv) waitRunning(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		inst, err := e.c.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if inst.Status == duro.StatusRunning {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("instance %s never ran", id)
}

func TestRoot(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		out  string // in stdout
		err  string // in stderr
	}{
		{name: "no args shows help", args: nil, out: "Available Commands"},
		{name: "help", args: []string{"--help"}, out: "duro demo"},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitUsage, err: "unknown command"},
		{name: "unknown flag", args: []string{"list", "--bogus"}, code: exitUsage, err: "unknown flag: --bogus"},
		{name: "too many args", args: []string{"status", "a", "b"}, code: exitUsage, err: "want 1 argument(s) (ID), got 2"},
		{name: "negative timeout", args: []string{"list", "--store", store, "--timeout", "-1s"}, code: exitUsage, err: "--timeout"},
		{name: "postgres unreachable", args: []string{"list", "--store", "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2"}, code: exitFailure, err: "duro: PostgreSQL store: cannot connect to 127.0.0.1:1 (user u, database db): connection refused\n"},
		{name: "bad duro_schema", args: []string{"list", "--store", "postgres://u@127.0.0.1:1/db?duro_schema=Bad"}, code: exitFailure,
			err: `duro: PostgreSQL store: the URL's duro_schema: schema name "Bad": want lower-case letters`},
		{name: "missing store", args: []string{"list", "--store", filepath.Join(t.TempDir(), "nope.db")}, code: exitFailure, err: "does not exist"},
		{name: "store from env", env: map[string]string{"DURO_STORE": store}, args: []string{"list"}, out: "no instances"},
		{name: "flag beats env", env: map[string]string{"DURO_STORE": "/nonexistent/x.db"}, args: []string{"list", "--store", store}, out: "no instances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := cliEnv(t, tt.env, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stdout, tt.out) || !strings.Contains(r.stderr, tt.err) {
				t.Fatalf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\nwant stdout ~ %q, stderr ~ %q", r.code, tt.code, r.stdout, r.stderr, tt.out, tt.err)
			}
			if strings.Contains(r.stderr, "secret") {
				t.Errorf("stderr leaks the URL's password: %s", r.stderr)
			}
		})
	}
}

func TestTimeoutBoundsWaiting(t *testing.T) {
	t.Parallel()
	store := newStore(t) // no worker: the instance never finishes
	r := cli(t, "start", "Echo", "--store", store, "--wait", "--timeout", "200ms")
	r.fails(t, exitFailure, "--timeout 200ms")
}

// decodeJSON decodes command output, failing the test if it is not JSON.
func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("output is not JSON (%v):\n%s", err, s)
	}
}

// compact returns JSON without insignificant space ("" for none).
func compact(t *testing.T, b []byte) string {
	t.Helper()
	if len(b) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("not JSON (%v): %s", err, b)
	}
	return buf.String()
}

// registerFailOnce registers the FailOnce orchestration and its Step
// activity, which fails the first time it runs for "b" in each instance.
func registerFailOnce(reg *duro.Registry) {
	var failed sync.Map // instance ID → struct{}
	duro.RegisterActivity(reg, "Step", func(ctx duro.ActivityContext, name string) (string, error) {
		if name == "b" {
			if _, done := failed.LoadOrStore(ctx.InstanceID(), struct{}{}); !done {
				return "", duro.NewError("Down", "step b is down")
			}
		}
		return fmt.Sprintf("%s@%d", name, ctx.Attempt()), nil
	})
	duro.RegisterOrchestration(reg, "FailOnce", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
		var out []string
		for _, name := range []string{"a", "b", "c"} {
			var s string
			if err := ctx.CallActivity("Step", name).Await(&s); err != nil {
				return "", err
			}
			out = append(out, s)
		}
		return strings.Join(out, ","), nil
	})
}

// decisionEnv is a store with an instance of Pay that waits for operator
// decisions, and a worker that runs it once resumed. Pay calls the activity
// Charge (AtMostOnce, OnDuplicateSuspend) once per charge, in parallel, and
// returns the results; a failed charge fails it.
type decisionEnv struct {
	*testEnv
	id string
	// runs counts the runs of Charge's code on the second worker.
	runs *atomic.Int32
}

// newDecisionEnv starts instance id of Pay with the given number of charges
// on a first worker, stops that worker while every charge runs (its
// deliveries are abandoned, as in a crash), and starts a second one: it gets
// each charge again as attempt 2 and, instead of running it, suspends the
// instance for a decision. It returns once every charge waits for one.
func newDecisionEnv(t *testing.T, id string, charges int) *decisionEnv {
	t.Helper()
	path := newStore(t)
	be, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	pay := func(reg *duro.Registry, charge func(duro.ActivityContext, int) (string, error)) {
		duro.RegisterActivity(reg, "Charge", charge, duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend})
		duro.RegisterOrchestration(reg, "Pay", func(ctx *duro.OrchestrationContext, n int) ([]string, error) {
			tasks := make([]*duro.Task, n)
			for i := range tasks {
				tasks[i] = ctx.CallActivity("Charge", i)
			}
			if err := ctx.AwaitAll(tasks...); err != nil {
				return nil, err
			}
			out := make([]string, n)
			for i, task := range tasks {
				if err := task.Await(&out[i]); err != nil {
					return nil, err
				}
			}
			return out, nil
		})
	}
	running := make(chan struct{}, charges)
	first := duro.NewRegistry()
	pay(first, func(ctx duro.ActivityContext, _ int) (string, error) {
		running <- struct{}{}
		<-ctx.Done() // the provider never answers
		return "", ctx.Err()
	})
	w1 := startWorker(t, be, first)
	c := duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Start(ctx, "Pay", charges, duro.StartOptions{InstanceID: id}); err != nil {
		t.Fatal(err)
	}
	for range charges {
		select {
		case <-running:
		case <-ctx.Done():
			t.Fatal("the charges never ran on the first worker")
		}
	}
	dead, kill := context.WithCancel(ctx)
	kill()
	_ = w1.Stop(dead) // abandons the charges, as a crash would

	runs := new(atomic.Int32)
	second := duro.NewRegistry()
	pay(second, func(ctx duro.ActivityContext, n int) (string, error) {
		runs.Add(1)
		return fmt.Sprintf("charge %d on attempt %d", n, ctx.Attempt()), nil
	})
	registerFailOnce(second)
	startWorker(t, be, second)
	env := &decisionEnv{testEnv: &testEnv{store: path, c: c}, id: id, runs: runs}
	env.waitFor(t, id, func(i *duro.Instance) bool {
		return i.Status == duro.StatusSuspended && i.Suspension != nil && len(i.Suspension.Pending) == charges
	})
	return env
}

// startWorker starts a worker for reg on be, stopped when the test ends.
func startWorker(t *testing.T, be backend.Backend, reg *duro.Registry) *duro.Worker {
	t.Helper()
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{
		PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
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
	return w
}

// waitFor waits until the instance satisfies ok.
func (e *testEnv) waitFor(t *testing.T, id string, ok func(*duro.Instance) bool) *duro.Instance {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		inst, err := e.c.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(inst) {
			return inst
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s: gave up waiting; it is %s, suspension %+v", id, inst.Status, inst.Suspension)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStatus waits until the instance has the status.
func (e *testEnv) waitStatus(t *testing.T, id string, status duro.Status) *duro.Instance {
	t.Helper()
	return e.waitFor(t, id, func(i *duro.Instance) bool { return i.Status == status })
}
