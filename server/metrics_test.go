package server

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
)

// scrape returns the samples of /metrics by name with labels, as
// Prometheus's text format writes them: `duro_poisoned_total{kind="activity"}`.
func scrape(t *testing.T, b *bundle) map[string]float64 {
	t.Helper()
	r := b.do("GET", "/metrics", nil)
	if r.status != 200 {
		t.Fatalf("/metrics: %d %s", r.status, r.body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(r.body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func wantSamples(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("no sample %s", k)
			continue
		}
		if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
}

// TestMetricsDuplicateSuspended follows one at-most-once charge through a
// crash, a suspension and a retry decision, and checks every counter the
// guarantees predict at each point.
func TestMetricsDuplicateSuspended(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{noWorker: true})
	before := scrape(t, b)
	wantSamples(t, before, map[string]float64{
		`duro_duplicates_total{policy="suspend"}`: 0,
		`duro_instances{status="Suspended"}`:      0,
		`duro_pending_decisions`:                  0,
	})

	b.suspendedPayments("p1")
	// Delivery 1 was abandoned by the crash; delivery 2 found the possible
	// duplicate, did not run the code, and suspended the instance.
	wantSamples(t, scrape(t, b), map[string]float64{
		`duro_duplicates_total{policy="suspend"}`:           1,
		`duro_duplicates_total{policy="fail"}`:              0,
		`duro_duplicates_total{policy="reconcile"}`:         0,
		`duro_work_items_claimed_total{kind="activity"}`:    2,
		`duro_activity_redeliveries_total`:                  1,
		`duro_work_items_completed_total{kind="activity"}`:  1,
		`duro_stale_completions_rejected_total`:             0,
		`duro_poisoned_total{kind="activity"}`:              0,
		`duro_poisoned_total{kind="orchestration"}`:         0,
		`duro_instances{status="Suspended"}`:                1,
		`duro_instances{status="Running"}`:                  0,
		`duro_pending_decisions`:                            1,
		`duro_claim_latency_seconds_count{kind="activity"}`: 1,
		`duro_step_redeliveries_total`:                      0,
		`duro_activity_deliveries_released_total`:           0,
		`duro_entity_requests_rejected_total`:               0,
	})

	r := b.do("POST", "/api/v1/instances/p1/resume", `{"decisions":[{"taskId":0,"action":"retry"}]}`)
	if r.status != 202 {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	b.waitStatus(t, "p1", duro.StatusCompleted)
	// The retry is delivery 3 (a redelivery, approved to run), and it
	// completes; a retried task is a new first delivery for the latency.
	wantSamples(t, scrape(t, b), map[string]float64{
		`duro_duplicates_total{policy="suspend"}`:           1,
		`duro_work_items_claimed_total{kind="activity"}`:    3,
		`duro_activity_redeliveries_total`:                  2,
		`duro_work_items_completed_total{kind="activity"}`:  2,
		`duro_instances{status="Suspended"}`:                0,
		`duro_pending_decisions`:                            0,
		`duro_claim_latency_seconds_count{kind="activity"}`: 2,
	})
}

// TestMetricsCounts checks the work item counters of plain instances and
// that the HTTP requests are counted by route.
func TestMetricsCounts(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, err := b.c.Start(ctx, "Echo", id, duro.StartOptions{InstanceID: id}); err != nil {
			t.Fatal(err)
		}
		b.waitStatus(t, id, duro.StatusCompleted)
	}
	if _, err := b.c.Start(ctx, "WaitForGo", nil, duro.StartOptions{InstanceID: "w"}); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, "w", duro.StatusRunning)
	b.do("GET", "/api/v1/instances/ghost", nil)
	// The worker counts a step once its commit has returned, which may be
	// just after the store shows the commit: scrape until it has counted
	// WaitForGo's first step.
	got := scrape(t, b)
	for deadline := time.Now().Add(10 * time.Second); got[`duro_work_items_completed_total{kind="orchestration"}`] < 4 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		got = scrape(t, b)
	}
	wantSamples(t, got, map[string]float64{
		// One step each for Echo; WaitForGo's first step.
		`duro_work_items_claimed_total{kind="orchestration"}`:                     4,
		`duro_work_items_completed_total{kind="orchestration"}`:                   4,
		`duro_work_items_claimed_total{kind="activity"}`:                          0,
		`duro_instances{status="Running"}`:                                        1,
		`duro_claim_latency_seconds_count{kind="orchestration"}`:                  4,
		`duro_http_requests_total{code="404",route="GET /api/v1/instances/{id}"}`: 1,
		// Every step was an instance's first: nothing cached to continue.
		`duro_sticky_steps_total{result="miss"}`: 4,
		`duro_sticky_steps_total{result="hit"}`:  0,
		`duro_sticky_stale_total`:                0,
		`duro_sticky_evictions_total`:            0,
	})
	if got[`go_goroutines`] == 0 {
		t.Error("no Go runtime metrics")
	}
}
