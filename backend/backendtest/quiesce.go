package backendtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// claimGate is the store of a worker that a test stops while it runs an
// activity, to have the next worker redeliver it: quiesce shuts the gate on
// the worker's claims and waits for those already in the store, so that the
// worker cannot claim the activity again after its Stop hands it back.
//
// Without the gate that can happen, and legitimately: a claim in flight when
// Stop cancels the claim context may still run in the store after the
// hand-back (PostgreSQL waits for the cancelled statement's answer rather
// than leave a committed claim unseen, and the server runs a statement whose
// cancel request came before the statement did). The stopping worker then
// hands that delivery back too, and the next worker gets attempt 3, not 2.
//
// claimGate embeds backend.Backend only, so a worker on it claims one item at
// a time, without eager dispatch or wake-ups.
type claimGate struct {
	backend.Backend
	mu       sync.Mutex
	shut     bool
	inflight sync.WaitGroup
}

func (g *claimGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return false
	}
	g.inflight.Add(1)
	return true
}

func (g *claimGate) ClaimActivity(ctx context.Context, p *backend.ClaimParams) (*backend.ActivityWorkItem, error) {
	if !g.enter() {
		return nil, nil
	}
	defer g.inflight.Done()
	return g.Backend.ClaimActivity(ctx, p)
}

func (g *claimGate) ClaimOrchestrationStep(ctx context.Context, p *backend.ClaimParams) (*backend.OrchestrationWorkItem, error) {
	if !g.enter() {
		return nil, nil
	}
	defer g.inflight.Done()
	return g.Backend.ClaimOrchestrationStep(ctx, p)
}

// quiesce makes every later claim through g find nothing, without reaching
// the store, and returns once the claims already in the store have returned.
func (g *claimGate) quiesce() {
	g.mu.Lock()
	g.shut = true
	g.mu.Unlock()
	g.inflight.Wait()
}

// stopAbandoning stops env's worker at once (a cancelled context), which
// abandons its running deliveries, after shutting gate (env's store) so
// that the stopping worker claims nothing more.
func stopAbandoning(ctx context.Context, env *sdkEnv, gate *claimGate) {
	gate.quiesce()
	stopped, stop := context.WithCancel(ctx)
	stop()
	_ = env.worker.Stop(stopped)
}

// stopWorker stops env's worker gracefully and fails if it does not stop.
func stopWorker(t *testing.T, env *sdkEnv) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.worker.Stop(ctx); err != nil {
		t.Fatalf("worker stop: %v", err)
	}
}

// noDataWhileSuspended checks, with no worker running, that the store hands
// a worker no step that carries anything but control messages while every
// instance in it is suspended: it claims every claimable step at a synthetic
// time a day ahead, past every lease and timer — through
// backend.BatchClaimer too, when the store has it, as a worker would — fails
// on a message that is not a control message, and hands each step back at
// once for the next worker (a suspend request not processed yet is a
// control message that may still be waiting).
func noDataWhileSuspended(t *testing.T, be backend.Backend) {
	t.Helper()
	ctx := bg(t)
	p := &backend.ClaimParams{Owner: "backendtest-probe", LeaseDuration: lease, Now: time.Now().Add(24 * time.Hour)}
	check := func(wis []*backend.OrchestrationWorkItem) {
		t.Helper()
		for _, wi := range wis {
			for _, m := range wi.Messages {
				if m.Event == nil || !m.Event.Type.IsControl() {
					t.Fatalf("a claim of suspended %q delivered message %q (%s)", wi.Instance.ID, m.ID, eventType(m.Event))
				}
			}
		}
		for _, wi := range wis {
			if err := be.AbandonOrchestrationStep(ctx, &backend.AbandonParams{ID: wi.Instance.ID,
				ExecutionID: wi.Instance.ExecutionID, Attempt: wi.Attempt}); err != nil {
				t.Fatalf("AbandonOrchestrationStep(%q): %v", wi.Instance.ID, err)
			}
		}
	}
	if bc, ok := be.(backend.BatchClaimer); ok {
		wis, err := bc.ClaimOrchestrationSteps(ctx, p, 100)
		if err != nil {
			t.Fatalf("ClaimOrchestrationSteps: %v", err)
		}
		check(wis)
	}
	var wis []*backend.OrchestrationWorkItem
	for range 100 { // every claimed step stays leased, so this ends
		wi, err := be.ClaimOrchestrationStep(ctx, p)
		if err != nil {
			t.Fatalf("ClaimOrchestrationStep: %v", err)
		}
		if wi == nil {
			break
		}
		wis = append(wis, wi)
	}
	check(wis)
}

func eventType(ev *backend.Event) string {
	if ev == nil {
		return "no event"
	}
	return string(ev.Type)
}

// entityAfterMarker signals add(marker) to entity id, after every signal the
// test sent before, waits until the counter shows it, and returns the value
// less marker. Operations on one entity run in the order their requests
// arrived, so by then every earlier request has been processed or dropped:
// a duplicate counted late would show in the value.
func entityAfterMarker(t *testing.T, c *duro.Client, id duro.EntityID, marker int) int {
	t.Helper()
	if err := c.SignalEntity(bg(t), id, "add", marker); err != nil {
		t.Fatal(err)
	}
	got := 0
	if !poll(30*time.Second, func() bool {
		var ok bool
		got, ok = counterValue(c, id)
		return ok && got >= marker
	}) {
		t.Fatalf("entity %s = %d: the marker add(%d) was never processed", id, got, marker)
	}
	return got - marker
}

// poll calls cond every 5 ms until it reports true (poll then reports true)
// or d has passed (poll then reports cond's last answer).
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return cond()
		}
	}
}
