package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/durohq/duro/internal/browsertest"
)

// TestDashboardDemo is the dashboard as a new user meets it: start 'duro
// server --demo' on a fresh store, run the demo against it, open the
// dashboard, start an instance and watch its timeline, find the suspended
// payment, press Retry, and see it complete. Screenshots of each step go
// to $DURO_ARTIFACTS/TestDashboardDemo (or a temporary directory).
func TestDashboardDemo(t *testing.T) {
	t.Parallel()
	ctx := browsertest.New(t, 1280, 900, 2*time.Minute)
	dir := browsertest.ArtifactsDir(t)
	s := startServer(t, nil, "--store", filepath.Join(t.TempDir(), "demo.db"), "--demo")
	cli(t, "demo", "--server", s.url).ok(t)
	shot := func(name string) { browsertest.Screenshot(t, ctx, dir, name) }
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			t.Fatalf("%s: %v\nserver stderr:\n%s", what, err, s.errOut)
		}
	}
	q := chromedp.ByQuery

	// The list shows the demo's instances, with the payment waiting.
	run("open the dashboard",
		chromedp.Navigate(s.url+"/"),
		chromedp.WaitVisible(`tr[data-id="order-1001"] .badge[data-status="Completed"]`, q),
		chromedp.WaitVisible(`tr[data-id="order-1002"] .badge[data-status="Suspended"]`, q),
		chromedp.WaitVisible(`#decision-count`, q))
	shot("1-instances")

	// Start an instance from the dashboard: the ProcessOrder sample.
	run("start ProcessOrder",
		chromedp.Click(`#start-button`, q),
		chromedp.WaitVisible(`#start-name`, q),
		chromedp.Click(`button[data-sample="0"]`, q))
	shot("2-start-dialog")
	run("submit the start", chromedp.Click(`#dialog-ok`, q),
		chromedp.WaitVisible(`section.instance[data-id="order-1001"] #timeline li.task[data-task="0"]`, q))
	// The timeline: the charge interrupted by the worker's "crash" ran
	// again as attempt 2, and completed.
	var charge string
	run("timeline",
		chromedp.WaitVisible(`li.task.outcome-completed[data-task="1"]`, q),
		chromedp.Text(`li.task[data-task="1"]`, &charge, q))
	for _, want := range []string{"ChargePayment", "at-least-once", "attempt 2: completed", "took"} {
		if !strings.Contains(charge, want) {
			t.Errorf("ChargePayment in the timeline lacks %q: %q", want, charge)
		}
	}
	shot("3-timeline")

	// Find the suspended payment from the list.
	run("open the payment",
		chromedp.Navigate(s.url+"/#/instances?status=Suspended"),
		chromedp.WaitVisible(`tr[data-id="order-1002"] a.instance-link`, q),
		chromedp.Click(`tr[data-id="order-1002"] a.instance-link`, q),
		chromedp.WaitVisible(`section.instance[data-status="Suspended"] .decision-card`, q))
	var task string
	run("the payment's timeline", chromedp.Text(`li.task[data-task="0"]`, &task, q))
	for _, want := range []string{"ChargeCard", "at-most-once · Suspend", "attempt 2: possible duplicate"} {
		if !strings.Contains(task, want) {
			t.Errorf("ChargeCard in the timeline lacks %q: %q", want, task)
		}
	}
	shot("4-suspended-payment")

	// Decide on the Decisions page: Retry, confirmed.
	retry := `.decision-card[data-instance="order-1002"] button[data-action="retry"]`
	run("decisions page",
		chromedp.Click(`a[data-nav="decisions"]`, q),
		chromedp.WaitVisible(retry, q))
	shot("5-decisions")
	run("press Retry", chromedp.Click(retry, q), chromedp.WaitVisible(`#decision-reason`, q),
		chromedp.SendKeys(`#decision-reason`, "the provider has no charge", q))
	shot("6-confirm-retry")
	run("confirm", chromedp.Click(`#dialog-ok`, q), chromedp.WaitVisible(`#no-decisions`, q))

	// The payment completes: ChargeCard ran once more, as attempt 3.
	var output, retried, resumed string
	run("completed",
		chromedp.Navigate(s.url+"/#/instances/order-1002"),
		chromedp.WaitVisible(`section.instance[data-status="Completed"]`, q),
		chromedp.Text(`#output`, &output, q),
		chromedp.Text(`li.task[data-task="0"]`, &retried, q),
		chromedp.Text(`#last-resume`, &resumed, q))
	if !strings.Contains(output, "PAY-order-1002") {
		t.Errorf("output %q", output)
	}
	if !strings.HasPrefix(resumed, "applied") || !strings.Contains(resumed, "task #0 retry: applied (its code runs again as attempt 3)") {
		t.Errorf("last resume %q", resumed)
	}
	for _, want := range []string{"operator decided: retry", "attempt 3: completed"} {
		if !strings.Contains(retried, want) {
			t.Errorf("ChargeCard after the retry lacks %q: %q", want, retried)
		}
	}
	shot("7-completed")

	// A phone.
	run("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Reload(),
		chromedp.WaitVisible(`section.instance[data-status="Completed"]`, q))
	shot("8-phone-instance")
	run("phone list", chromedp.Navigate(s.url+"/#/instances"), chromedp.WaitVisible(`tr[data-id="order-1002"]`, q))
	shot("9-phone-list")

	// order-1001 has finished too: none of its tasks runs on.
	var tasks string
	run("the finished order", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(s.url+"/#/instances/order-1001"),
		chromedp.WaitVisible(`section.instance[data-id="order-1001"][data-status="Completed"] li.task[data-task="7"]`, q),
		chromedp.Text(`#timeline ol.tasks`, &tasks, q))
	if strings.Contains(tasks, "so far") || strings.Contains(tasks, "running") {
		t.Errorf("a task of the finished order-1001 runs on:\n%s", tasks)
	}
	shot("10-finished-order-timeline")
	run("compact history", chromedp.Click(`.tabs a[data-view="compact"]`, q), chromedp.WaitVisible(`#history-compact`, q))
	shot("11-history-compact")
	run("JSON history", chromedp.Click(`.tabs a[data-view="json"]`, q), chromedp.WaitVisible(`#history-json`, q))
	shot("12-history-json")
	run("entities", chromedp.Click(`a[data-nav="entities"]`, q), chromedp.WaitVisible(`main h1`, q))
	shot("13-entities")
	if n := strings.Count(s.out.String(), "possible duplicate; suspending"); n != 1 {
		t.Errorf("the payment was suspended %d times, want 1:\n%s", n, s.out)
	}
}
