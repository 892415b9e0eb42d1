package server

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
)

// poll calls cond every few milliseconds for up to 10 s.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWorkersAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{noWorker: true})
	var l WorkerList
	b.do("GET", "/api/v1/workers", nil).decode(t, &l)
	if len(l.Workers) != 0 || l.Now.IsZero() {
		t.Fatalf("no worker yet: %+v", l)
	}
	w := b.startWorker()
	var raw map[string]any
	poll(t, "the worker's heartbeat is listed", func() bool {
		r := b.do("GET", "/api/v1/workers", nil)
		if r.status != 200 {
			t.Fatalf("GET /api/v1/workers: %d %s", r.status, r.body)
		}
		r.decode(t, &l)
		raw = map[string]any{}
		r.decode(t, &raw)
		return len(l.Workers) == 1
	})
	got := l.Workers[0]
	if !got.Live || got.Name == "" || got.ID == "" || got.PID == 0 || got.Host == "" || got.GoneAt != (time.Time{}) ||
		!slices.Equal(got.Orchestrations, []string{"Boom", "Echo", "Pay", "Stage", "WaitForGo"}) ||
		!slices.Equal(got.Activities, []string{"Charge"}) || !slices.Equal(got.Entities, []string{"counter"}) ||
		got.ActivitySlots != duro.DefaultConcurrency || got.OrchestrationSlots != duro.DefaultConcurrency {
		t.Fatalf("worker %+v", got)
	}
	// The JSON names operators and scripts read.
	first := raw["workers"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "name", "host", "pid", "version", "orchestrations", "activities", "entities",
		"orchestrationSlots", "orchestrationBusy", "activitySlots", "activityBusy", "live", "startedAt", "heartbeatAt", "expiresAt"} {
		if _, ok := first[k]; !ok {
			t.Errorf("worker JSON lacks %q: %v", k, first)
		}
	}
	stopWorker(w, 5*time.Second)
	b.do("GET", "/api/v1/workers", nil).decode(t, &l)
	if len(l.Workers) != 1 || l.Workers[0].Live || l.Workers[0].GoneAt.IsZero() {
		t.Fatalf("after Stop: %+v; want the worker listed as gone", l.Workers)
	}
}

func TestInstanceInFlightAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{noWorker: true})
	ctx := context.Background()

	// No worker: a Pending instance is flagged, and terminated at once.
	if _, err := b.c.Start(ctx, "Nobody", nil, duro.StartOptions{InstanceID: "stuck"}); err != nil {
		t.Fatal(err)
	}
	var inst Instance
	b.do("GET", "/api/v1/instances/stuck", nil).decode(t, &inst)
	f := inst.InFlight
	if f == nil || !f.Detailed || !f.WorkersKnown || f.Step.State != duro.StepReady || f.Step.Messages != 1 ||
		len(f.Blocked) != 1 || !strings.Contains(f.Blocked[0], "no worker is running") {
		t.Fatalf("in flight of a Pending instance with no worker: %+v", f)
	}
	r := b.do("POST", "/api/v1/instances/stuck/terminate", map[string]string{"reason": "no such workflow"})
	if r.status != 202 || !strings.Contains(string(r.body), "recorded at once") {
		t.Fatalf("terminate: %d %s", r.status, r.body)
	}
	inst = Instance{}
	b.do("GET", "/api/v1/instances/stuck", nil).decode(t, &inst)
	if inst.Status != duro.StatusTerminated || inst.InFlight == nil || len(inst.InFlight.Blocked) != 0 {
		t.Fatalf("after terminate: %s, %+v", inst.Status, inst.InFlight)
	}
	if r := b.do("DELETE", "/api/v1/instances/stuck", nil); r.status != 204 && r.status != 200 {
		t.Fatalf("purge after terminate: %d %s", r.status, r.body)
	}

	// A charge running on a worker: its delivery, owner and lease.
	b.hang.Store(true)
	w := b.startWorker()
	defer stopWorker(w, 0) // the charge never returns: abandon it
	if _, err := b.c.Start(ctx, "Pay", "o-1", duro.StartOptions{InstanceID: "pay"}); err != nil {
		t.Fatal(err)
	}
	<-b.running
	var raw map[string]any
	poll(t, "the charge shows as running on a live worker", func() bool {
		r := b.do("GET", "/api/v1/instances/pay", nil)
		inst = Instance{}
		r.decode(t, &inst)
		raw = map[string]any{}
		r.decode(t, &raw)
		f = inst.InFlight
		return f != nil && len(f.Activities) == 1 && f.Activities[0].OwnerLive
	})
	a := f.Activities[0]
	if a.Activity != "Charge" || a.State != duro.ActivityRunning || a.Attempt != 1 || a.Owner == "" || !a.Options.AtMostOnce ||
		!a.LeaseExpiresAt.After(f.Now) || a.ClaimedAt.IsZero() || f.Step.State != duro.StepIdle || len(f.Blocked) != 0 {
		t.Fatalf("in flight of a running charge: %+v, activity %+v", f, a)
	}
	act := raw["inFlight"].(map[string]any)["activities"].([]any)[0].(map[string]any)
	for _, k := range []string{"taskId", "activity", "state", "attempt", "owner", "ownerLive", "leaseExpiresAt", "claimedAt", "options"} {
		if _, ok := act[k]; !ok {
			t.Errorf("activity JSON lacks %q: %v", k, act)
		}
	}
	// The list does not carry the in-flight view.
	var page map[string][]map[string]json.RawMessage
	b.do("GET", "/api/v1/instances", nil).decode(t, &page)
	for _, i := range page["instances"] {
		if _, ok := i["inFlight"]; ok {
			t.Fatalf("listed instance carries inFlight: %s", i["id"])
		}
	}
}
