package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/browsertest"
)

// TestDashboardInFlight is the scenario in a browser: a worker was
// killed while it held a charge. The Workers page lists the live workers
// and the one that stopped; the instance page shows the charge's attempt,
// its owner with no live worker, the lapsed lease and what happens next,
// and flags that no live worker registers the activity. Screenshots go to
// $DURO_ARTIFACTS/TestDashboardInFlight.
func TestDashboardInFlight(t *testing.T) {
	t.Parallel()
	ctx := browsertest.New(t, 1280, 900, 2*time.Minute)
	dir := browsertest.ArtifactsDir(t)
	store := newStore(t)
	s := startServer(t, nil, "--store", store)
	_, be := startHeartbeatWorker(t, store, "orchestrator", func(r *duro.Registry) {
		duro.RegisterOrchestration(r, "Pay", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			var out string
			err := ctx.CallActivity("Charge", "order-7", duro.CallOptions{Guarantee: duro.AtMostOnce}).Await(&out)
			return out, err
		})
	})
	mailer, _ := startHeartbeatWorker(t, store, "mailer", func(r *duro.Registry) {
		duro.RegisterActivity(r, "Mail", func(duro.ActivityContext, any) (string, error) { return "", nil })
	})
	cli(t, "start", "Pay", "--store", store, "--id", "pay").ok(t)
	pollCLI(t, []string{"Charge [at-most-once] waiting for its first delivery"}, "status", "pay", "--store", store)
	// The worker that had Charge claimed it and was killed: its lease lapses.
	if wi, err := be.ClaimActivity(context.Background(), &backend.ClaimParams{Owner: "killed-worker", LeaseDuration: 50 * time.Millisecond}); err != nil || wi == nil {
		t.Fatalf("claim: %v, %v", wi, err)
	}
	shot := func(name string) { browsertest.Screenshot(t, ctx, dir, name) }
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			t.Fatalf("%s: %v\nserver stderr:\n%s", what, err, s.errOut)
		}
	}
	q := chromedp.ByQuery

	run("workers page",
		chromedp.Navigate(s.url+"/#/workers"),
		chromedp.WaitVisible(`#workers tr[data-worker="orchestrator"][data-state="live"]`, q),
		chromedp.WaitVisible(`#workers tr[data-worker="mailer"][data-state="live"]`, q))
	var row string
	run("orchestrator row", chromedp.Text(`#workers tr[data-worker="orchestrator"]`, &row, q))
	for _, want := range []string{"orchestrations: Pay", "steps 0/256", "activities 0/256"} {
		if !strings.Contains(row, want) {
			t.Errorf("orchestrator's row lacks %q: %q", want, row)
		}
	}
	shot("1-workers")

	run("instance page",
		chromedp.Navigate(s.url+"/#/instances/pay"),
		chromedp.WaitVisible(`#pending-activities tr[data-task="0"][data-state="LeaseExpired"]`, q))
	var charge, blocked, step string
	run("in flight",
		chromedp.Text(`#pending-activities tr[data-task="0"]`, &charge, q),
		chromedp.Text(`#blocked`, &blocked, q),
		chromedp.Text(`#step-state`, &step, q))
	for _, want := range []string{"Charge", "at-most-once", "LeaseExpired", "again as attempt 2", "not a duplicate (no delivery started its code)",
		"killed-worker", "no live worker"} {
		if !strings.Contains(charge, want) {
			t.Errorf("the charge's row lacks %q: %q", want, charge)
		}
	}
	if !strings.Contains(blocked, `no live worker registers activity "Charge"`) || strings.Contains(blocked, "orchestration") {
		t.Errorf("blocked: %q; want the charge flagged, not the orchestration (its worker is live)", blocked)
	}
	if !strings.Contains(step, "idle") {
		t.Errorf("step: %q", step)
	}
	shot("2-instance-in-flight")

	// A worker that stops is listed as gone.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := mailer.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	run("gone worker",
		chromedp.Navigate(s.url+"/#/workers"),
		chromedp.WaitVisible(`#workers tr[data-worker="mailer"][data-state="gone"]`, q))
	shot("3-worker-gone")
	run("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(s.url+"/#/instances/pay"),
		chromedp.WaitVisible(`#pending-activities tr[data-task="0"]`, q))
	shot("4-phone-in-flight")
}
