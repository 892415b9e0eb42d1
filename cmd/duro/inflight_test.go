package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
	"github.com/durohq/duro/server"
)

// startHeartbeatWorker runs a worker named name on store with heartbeats
// every 500ms (live for 1.5s after each), registering what register does; it returns the worker (stopped
// at cleanup) and its backend.
func startHeartbeatWorker(t *testing.T, store, name string, register func(*duro.Registry)) (*duro.Worker, backend.Backend) {
	t.Helper()
	be, err := sqlite.Open(context.Background(), store, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	reg := duro.NewRegistry()
	register(reg)
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{Name: name, PollInterval: 10 * time.Millisecond,
		HeartbeatInterval: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
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
	return w, be
}

// pollCLI runs the CLI until its output contains every want.
func pollCLI(t *testing.T, want []string, args ...string) result {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := cli(t, args...)
		ok := r.code == 0
		for _, w := range want {
			ok = ok && strings.Contains(r.stdout, w)
		}
		if ok {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v: output lacks %q:\nstdout:\n%s\nstderr:\n%s", args, want, r.stdout, r.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStatusInFlight: a charge leased to a worker that died shows under
// "In flight" with its attempt, owner, lapsed lease and what happens next,
// and the charge no live worker can run is flagged.
func TestStatusInFlight(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	_, be := startHeartbeatWorker(t, store, "orchestrator", func(r *duro.Registry) {
		duro.RegisterOrchestration(r, "Pay", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			var s string
			err := ctx.CallActivity("Charge", "order-1").Await(&s)
			return s, err
		})
	})
	cli(t, "start", "Pay", "--store", store, "--id", "pay").ok(t)
	pollCLI(t, []string{"Activity #0:", "Charge [at-least-once] waiting for its first delivery"}, "status", "pay", "--store", store)
	// A worker that has the code claims the charge and is killed.
	wi, err := be.ClaimActivity(context.Background(), &backend.ClaimParams{Owner: "killed-worker", LeaseDuration: 20 * time.Millisecond})
	if err != nil || wi == nil {
		t.Fatalf("claim: %v, %v", wi, err)
	}
	r := pollCLI(t, []string{"attempt 1 was leased to killed-worker (no live worker of that name) until"},
		"status", "pay", "--store", store)
	for _, want := range []string{
		"In flight:\n",
		"Step:          idle: no message waits",
		"the next claim delivers it again as attempt 2",
		`Blocked:       no live worker registers activity "Charge"`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	var got statusJSON
	decodeJSON(t, cli(t, "status", "pay", "--store", store, "-o", "json").ok(t).stdout, &got)
	f := got.InFlight
	if got.ID != "pay" || f == nil || len(f.Activities) != 1 || f.Activities[0].State != duro.ActivityLeaseExpired ||
		f.Activities[0].Owner != "killed-worker" || f.Activities[0].Attempt != 1 || len(f.Blocked) != 1 {
		t.Fatalf("status -o json: %+v", f)
	}
}

// TestStatusFlagsUnrunnable: a Pending instance whose orchestration no live
// worker registers says so, and terminate and purge work without a worker.
func TestStatusFlagsUnrunnable(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	cli(t, "start", "Nobody", "--store", store, "--id", "p").ok(t)
	r := cli(t, "status", "p", "--store", store).ok(t)
	for _, want := range []string{"Step:          1 message waiting for a worker", "Blocked:       no worker is running"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	w, _ := startHeartbeatWorker(t, store, "activities-only", func(r *duro.Registry) {
		duro.RegisterActivity(r, "Charge", func(duro.ActivityContext, any) (string, error) { return "", nil })
	})
	pollCLI(t, []string{`Blocked:       no live worker registers orchestration "Nobody"`}, "status", "p", "--store", store)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r = cli(t, "terminate", "p", "--reason", "no such workflow", "--store", store).ok(t)
	if !strings.Contains(r.stdout, "terminated p (no worker held it, so the termination was recorded at once)") {
		t.Fatalf("terminate: %s", r.stdout)
	}
	if r := cli(t, "status", "p", "--store", store).ok(t); !strings.Contains(r.stdout, "Status:        Terminated\n") || strings.Contains(r.stdout, "In flight") {
		t.Fatalf("status after terminate:\n%s", r.stdout)
	}
	if r := cli(t, "purge", "p", "--store", store).ok(t); !strings.Contains(r.stdout, "purged 1 instance (p)") {
		t.Fatalf("purge: %s", r.stdout)
	}
}

func TestWorkersCommand(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	if r := cli(t, "workers", "--store", store).ok(t); !strings.Contains(r.stdout, "No worker has recorded a heartbeat") {
		t.Fatalf("workers on a fresh store: %s", r.stdout)
	}
	w, _ := startHeartbeatWorker(t, store, "cli-worker", func(r *duro.Registry) {
		duro.RegisterOrchestration(r, "Pay", func(*duro.OrchestrationContext, any) (string, error) { return "", nil })
		duro.RegisterActivity(r, "Charge", func(duro.ActivityContext, any) (string, error) { return "", nil })
	})
	r := pollCLI(t, []string{"cli-worker", " live "}, "workers", "--store", store)
	for _, want := range []string{"NAME", "STATE", "LAST SEEN", "0/256", "orchestrations: Pay; activities: Charge", "1 live, 0 gone or silent"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("workers lacks %q:\n%s", want, r.stdout)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r = cli(t, "workers", "--store", store).ok(t)
	if !strings.Contains(r.stdout, " gone ") || !strings.Contains(r.stdout, "0 live, 1 gone or silent") {
		t.Fatalf("workers after Stop:\n%s", r.stdout)
	}
	var l server.WorkerList
	decodeJSON(t, cli(t, "workers", "--store", store, "-o", "json").ok(t).stdout, &l)
	if len(l.Workers) != 1 || l.Workers[0].Name != "cli-worker" || l.Workers[0].Live || l.Workers[0].GoneAt.IsZero() {
		t.Fatalf("workers -o json: %+v", l.Workers)
	}
}

// TestRemoteInFlight: status and workers through a server show the same.
func TestRemoteInFlight(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	s := startServer(t, nil, "--store", store)
	startHeartbeatWorker(t, store, "remote-worker", func(r *duro.Registry) {
		duro.RegisterActivity(r, "Charge", func(duro.ActivityContext, any) (string, error) { return "", nil })
	})
	cli(t, "start", "Nobody", "--server", s.url, "--id", "r").ok(t)
	pollCLI(t, []string{"remote-worker", " live "}, "workers", "--server", s.url)
	pollCLI(t, []string{"In flight:", `no live worker registers orchestration "Nobody"`}, "status", "r", "--server", s.url)
}
