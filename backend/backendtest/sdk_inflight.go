package backendtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// sdkInFlightTests check what operators see through the SDK: the work an
// instance has in flight (Client.InFlight), the workers' heartbeats
// (Client.Workers), the flag on an instance no live worker can run, and a
// termination that needs no worker.
func sdkInFlightTests() []test {
	return []test{
		{"TerminatePendingWithoutWorker", testTerminatePendingWithoutWorker},
		{"TerminateLeasedStepWaits", testTerminateLeasedStepWaits},
		{"HeartbeatsLiveThenGone", testHeartbeatsLiveThenGone},
		{"RunningActivity", testInFlightRunningActivity},
		{"DeadOwnerAndUnregistered", testInFlightDeadOwner},
		{"RetryWait", testInFlightRetryWait},
		{"NoWorkerRegistersOrchestration", testInFlightUnrunnable},
	}
}

// testTerminatePendingWithoutWorker: with no worker at all, a Pending
// instance is terminated by Terminate itself, and can then be purged.
func testTerminatePendingWithoutWorker(t *testing.T, e *env) {
	e.instanceClaimer()
	c := duro.NewClient(e.b, nil)
	ctx := bg(t)
	id, err := c.Start(ctx, "Nobody", "in", duro.StartOptions{InstanceID: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Terminate(ctx, id, "started by mistake"); err != nil {
		t.Fatal(err)
	}
	inst, err := c.Get(ctx, id)
	if err != nil || inst.Status != duro.StatusTerminated || inst.CompletedAt.IsZero() {
		t.Fatalf("after Terminate with no worker: %+v, %v; want Terminated at once", inst, err)
	}
	h, err := c.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h); n == 0 || h[n-1].Type != backend.EventExecutionTerminated || h[n-1].Reason != "started by mistake" {
		t.Fatalf("history %v: want the termination with its reason last", eventTypes(h))
	}
	if f := e.inFlight(id); f.Messages != 0 || f.Step.Owner != "" || f.Step.Deliveries != 0 {
		t.Fatalf("after the termination: %+v; want an empty inbox and no lease", f)
	}
	if err := c.Purge(ctx, id); err != nil {
		t.Fatalf("Purge after the termination: %v", err)
	}
	if _, err := c.Get(ctx, id); !errors.Is(err, duro.ErrInstanceNotFound) {
		t.Fatalf("Get after Purge: %v", err)
	}
}

// testTerminateLeasedStepWaits: when a delivery holds the step, Terminate
// leaves the request for that delivery (or the next one) to record.
func testTerminateLeasedStepWaits(t *testing.T, e *env) {
	e.instanceClaimer()
	c := duro.NewClient(e.b, nil)
	ctx := bg(t)
	id, err := c.Start(ctx, "Nobody", nil, duro.StartOptions{InstanceID: "held"})
	if err != nil {
		t.Fatal(err)
	}
	wi, err := e.b.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: "other worker", LeaseDuration: time.Hour})
	if err != nil || wi == nil {
		t.Fatalf("claim: %v, %v", wi, err)
	}
	if err := c.Terminate(ctx, id, "stop"); err != nil {
		t.Fatal(err)
	}
	if inst, _ := c.Get(ctx, id); inst.Status != duro.StatusPending {
		t.Fatalf("Terminate while a worker holds the step: %s; want Pending until its step", inst.Status)
	}
	if f := e.inFlight(id); f.Messages != 2 || f.Step.Owner != "other worker" || f.Step.Attempt != wi.Attempt {
		t.Fatalf("in flight: %+v; want the request queued beside the start and the lease untouched", f)
	}
}

// heartbeatWorker starts a worker with fast heartbeats named name.
func heartbeatWorker(t *testing.T, be backend.Backend, name string, register func(r *duro.Registry)) *sdkEnv {
	t.Helper()
	return newSDKEnvOpts(t, be, &duro.WorkerOptions{Name: name, HeartbeatInterval: 100 * time.Millisecond,
		OrchestrationConcurrency: 3, ActivityConcurrency: 4}, register)
}

// findWorker returns the heartbeat of the worker named name (nil if none)
// and the store's clock.
func findWorker(t *testing.T, c *duro.Client, name string) (*duro.WorkerInfo, time.Time) {
	t.Helper()
	l, err := c.Workers(context.Background())
	if err != nil {
		t.Fatalf("Workers: %v", err)
	}
	for _, w := range l.Workers {
		if w.Name == name {
			return w, l.Now
		}
	}
	return nil, l.Now
}

func testHeartbeatsLiveThenGone(t *testing.T, e *env) {
	e.workerRegistry()
	release := make(chan struct{})
	env := heartbeatWorker(t, e.b, "hb-worker", func(r *duro.Registry) {
		duro.RegisterOrchestration(r, "Wait", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			var s string
			err := ctx.CallActivity("Block", nil).Await(&s)
			return s, err
		})
		duro.RegisterActivity(r, "Block", func(ctx duro.ActivityContext, _ any) (string, error) {
			select {
			case <-release:
				return "done", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		})
		registerCounter(r)
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	ctx := bg(t)
	if _, err := env.client.Start(ctx, "Wait", nil, duro.StartOptions{InstanceID: "w"}); err != nil {
		t.Fatal(err)
	}
	var w *duro.WorkerInfo
	var now time.Time
	// Live too: on a loaded machine a heartbeat may be read after its TTL,
	// before the next one is written.
	pollUntil(t, "a live heartbeat of the worker shows its busy activity slot", func() bool {
		w, now = findWorker(t, env.client, "hb-worker")
		return w != nil && w.ActivityBusy == 1 && w.Live(now)
	})
	host, _ := os.Hostname()
	if w.Host != host || w.PID == 0 || w.ID == "" || w.Version == "" ||
		!slices.Equal(w.Orchestrations, []string{"Wait"}) || !slices.Equal(w.Activities, []string{"Block"}) ||
		!slices.Equal(w.Entities, []string{"counter"}) || w.OrchestrationSlots != 3 || w.ActivitySlots != 4 || w.Stopping {
		t.Fatalf("heartbeat %+v at %v", w, now)
	}
	close(release)
	waitStatus(t, env.client, "w", duro.StatusCompleted)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.worker.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	w, now = findWorker(t, env.client, "hb-worker")
	if w == nil || w.Live(now) || w.GoneAt.IsZero() || w.ActivityBusy != 0 || !w.Stopping {
		t.Fatalf("after Stop: %+v; want the worker recorded gone at once", w)
	}
}

// registerHold registers orchestration "Hold", which calls activity act and
// waits for it.
func registerHold(act string) func(r *duro.Registry) {
	return func(r *duro.Registry) {
		duro.RegisterOrchestration(r, "Hold", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			var s string
			err := ctx.CallActivity(act, "x").Await(&s)
			return s, err
		})
	}
}

func activityOf(f *duro.InFlight, name string) *duro.ActivityInFlight {
	for _, a := range f.Activities {
		if a.Name == name {
			return a
		}
	}
	return nil
}

func inFlightOf(t *testing.T, c *duro.Client, id string) *duro.InFlight {
	t.Helper()
	f, err := c.InFlight(context.Background(), id)
	if err != nil {
		t.Fatalf("InFlight(%q): %v", id, err)
	}
	return f
}

func testInFlightRunningActivity(t *testing.T, e *env) {
	e.inFlightReader()
	e.workerRegistry()
	running, release := make(chan struct{}), make(chan struct{})
	env := heartbeatWorker(t, e.b, "runner", func(r *duro.Registry) {
		registerHold("Charge")(r)
		duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ string) (string, error) {
			close(running)
			<-release
			return "ok", nil
		})
	})
	defer close(release)
	ctx := bg(t)
	if _, err := env.client.Start(ctx, "Hold", nil, duro.StartOptions{InstanceID: "r"}); err != nil {
		t.Fatal(err)
	}
	<-running
	var f *duro.InFlight
	pollUntil(t, "the step is idle and the worker heartbeats", func() bool {
		f = inFlightOf(t, env.client, "r")
		return f.Step.State == duro.StepIdle && len(f.Activities) == 1 && f.Activities[0].OwnerLive
	})
	a := f.Activities[0]
	if f.Status != duro.StatusRunning || !f.Detailed || !f.WorkersKnown || len(f.Blocked) != 0 ||
		a.Name != "Charge" || a.TaskID != 0 || a.State != duro.ActivityRunning || a.Attempt != 1 || a.Owner != "runner" ||
		!a.LeaseExpiresAt.After(f.Now) || a.ClaimedAt.IsZero() || a.ScheduledAt.IsZero() || a.LastFailure != nil {
		t.Fatalf("in flight %+v; activity %+v", f, a)
	}
	if f.Step.Attempt < 1 || f.Step.Deliveries != 0 || f.Step.Owner != "" {
		t.Fatalf("step %+v", f.Step)
	}
}

// testInFlightDeadOwner: an activity leased to a worker that is gone shows
// its lapsed lease and owner, and an activity no live worker registers is
// flagged: the scenario of a worker killed mid-charge.
func testInFlightDeadOwner(t *testing.T, e *env) {
	e.inFlightReader()
	e.workerRegistry()
	env := heartbeatWorker(t, e.b, "orchestrator", registerHold("Charge"))
	ctx := bg(t)
	if _, err := env.client.Start(ctx, "Hold", nil, duro.StartOptions{InstanceID: "d"}); err != nil {
		t.Fatal(err)
	}
	var f *duro.InFlight
	pollUntil(t, "the charge is scheduled", func() bool {
		f = inFlightOf(t, env.client, "d")
		return activityOf(f, "Charge") != nil
	})
	if a := activityOf(f, "Charge"); a.State != duro.ActivityWaiting || a.Attempt != 0 {
		t.Fatalf("scheduled charge: %+v", a)
	}
	// A worker that has the code claims it and dies (it never renews).
	wi, err := e.b.ClaimActivity(ctx, &backend.ClaimParams{Owner: "killed-worker", LeaseDuration: 50 * time.Millisecond})
	if err != nil || wi == nil {
		t.Fatalf("claim: %v, %v", wi, err)
	}
	pollUntil(t, "the lease lapses", func() bool {
		f = inFlightOf(t, env.client, "d")
		a := activityOf(f, "Charge")
		return a != nil && a.State == duro.ActivityLeaseExpired
	})
	a := activityOf(f, "Charge")
	if a.Owner != "killed-worker" || a.OwnerLive || a.Attempt != 1 || a.LeaseExpiresAt.After(f.Now) {
		t.Fatalf("charge after its worker died: %+v", a)
	}
	if !slices.Contains(f.Blocked, `no live worker registers activity "Charge"`) {
		t.Fatalf("blocked %q; want the charge flagged", f.Blocked)
	}
	if slices.ContainsFunc(f.Blocked, func(s string) bool { return strings.Contains(s, "orchestration") }) {
		t.Fatalf("blocked %q: the orchestration has a live worker", f.Blocked)
	}
}

func testInFlightRetryWait(t *testing.T, e *env) {
	e.inFlightReader()
	env := newSDKEnv(t, e.b, func(r *duro.Registry) {
		duro.RegisterOrchestration(r, "Retry", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			var s string
			err := ctx.CallActivity("Flaky", nil, duro.CallOptions{
				RetryPolicy: &duro.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Hour},
			}).Await(&s)
			return s, err
		})
		duro.RegisterActivity(r, "Flaky", func(ctx duro.ActivityContext, _ any) (string, error) {
			return "", errors.New("mail server down")
		})
	})
	ctx := bg(t)
	start := time.Now()
	if _, err := env.client.Start(ctx, "Retry", nil, duro.StartOptions{InstanceID: "rt"}); err != nil {
		t.Fatal(err)
	}
	var f *duro.InFlight
	pollUntil(t, "the first try failed and the retry timer waits", func() bool {
		f = inFlightOf(t, env.client, "rt")
		a := activityOf(f, "Flaky")
		return a != nil && a.State == duro.ActivityRetryWait
	})
	a := activityOf(f, "Flaky")
	if a.LastFailure == nil || !strings.Contains(a.LastFailure.Message, "mail server down") || a.Attempt != 1 || a.TaskID != 0 ||
		a.NextAttemptAt.Before(start.Add(time.Hour-time.Minute)) || a.NextAttemptAt.After(time.Now().Add(time.Hour+time.Minute)) {
		t.Fatalf("retry wait %+v (failure %v)", a, a.LastFailure)
	}
	if len(f.Timers) != 1 || f.Timers[0].RetryOf != "Flaky" || !f.Timers[0].FireAt.Equal(a.NextAttemptAt) {
		t.Fatalf("timers %+v; want the retry timer of Flaky", f.Timers)
	}
	if len(f.Activities) != 1 {
		t.Fatalf("activities %+v; want only the retry wait", f.Activities)
	}
}

// testInFlightUnrunnable: an instance whose orchestration no live worker
// registers is flagged, while it waits, before anything poisons it.
func testInFlightUnrunnable(t *testing.T, e *env) {
	e.workerRegistry()
	// The live worker runs activities only, so it claims no step (a worker
	// with steps of its own would hand this one back until it is poisoned).
	env := heartbeatWorker(t, e.b, "other", func(r *duro.Registry) {
		duro.RegisterActivity(r, "Charge", func(duro.ActivityContext, any) (string, error) { return "ok", nil })
	})
	ctx := bg(t)
	if _, err := env.client.Start(ctx, "Nobody", nil, duro.StartOptions{InstanceID: "u"}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("no live worker registers orchestration %q", "Nobody")
	var f *duro.InFlight
	pollUntil(t, "the worker's heartbeat is recorded", func() bool {
		f = inFlightOf(t, env.client, "u")
		return slices.Contains(f.Blocked, want)
	})
	if f.Status.IsTerminal() || len(f.Blocked) != 1 {
		t.Fatalf("blocked %q; want only %q", f.Blocked, want)
	}
	// A worker that registers it clears the flag.
	heartbeatWorker(t, e.b, "runs-nobody", func(r *duro.Registry) {
		duro.RegisterOrchestration(r, "Nobody", func(ctx *duro.OrchestrationContext, _ any) (string, error) { return "ran", nil })
	})
	waitStatus(t, env.client, "u", duro.StatusCompleted)
	if f := inFlightOf(t, env.client, "u"); len(f.Blocked) != 0 {
		t.Fatalf("a finished instance is flagged: %q", f.Blocked)
	}
}
