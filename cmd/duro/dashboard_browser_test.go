package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/durohq/duro"
	"github.com/durohq/duro/dashboard"
	"github.com/durohq/duro/internal/browsertest"
	"github.com/durohq/duro/server"
)

// serveDashboard serves the API and the dashboard of c's store.
func serveDashboard(t *testing.T, c *duro.Client, token string) string {
	t.Helper()
	srv, err := server.New(server.Options{Client: c, Token: token, Dashboard: dashboard.Handler(),
		Info: server.Info{Version: "test"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs.URL
}

// browser is a headless Chromium tab with the helpers of these tests.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	return &browser{t: t, ctx: browsertest.New(t, 1280, 900, 2*time.Minute), dir: browsertest.ArtifactsDir(t)}
}

func (b *browser) run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	if err := chromedp.Run(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func (b *browser) shot(name string) { browsertest.Screenshot(b.t, b.ctx, b.dir, name) }

// text returns the text of the first element sel matches.
func (b *browser) text(sel string) string {
	b.t.Helper()
	var s string
	b.run("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
	return s
}

// TestDashboardTimelines: what the timeline says of an instance that was
// rewound and then completed, and of a Completed instance whose event
// timeout timer was not needed.
func TestDashboardTimelines(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	url := serveDashboard(t, env.c, "")
	b := newBrowser(t)
	q := chromedp.ByQuery

	// FailOnce fails in task #1 (Step b: "step b is down"); a rewind runs
	// it again, and it completes.
	cli(t, "start", "FailOnce", "--store", env.store, "--id", "mail").ok(t)
	if inst := env.wait(t, "mail"); inst.Status != duro.StatusFailed {
		t.Fatalf("mail: %s", inst.Status)
	}
	cli(t, "rewind", "mail", "--store", env.store, "--reason", "b is back").ok(t)
	if inst := env.wait(t, "mail"); inst.Status != duro.StatusCompleted {
		t.Fatalf("mail after the rewind: %s", inst.Status)
	}
	b.run("open mail", chromedp.Navigate(url+"/#/instances/mail"),
		chromedp.WaitVisible(`section.instance[data-id="mail"][data-status="Completed"] li.task[data-task="1"]`, q))
	task := b.text(`li.task[data-task="1"]`)
	for _, want := range []string{`completed → "b@2"`, "attempt 1: failed: step b is down", "rewound: runs again", "attempt 2: completed"} {
		if !strings.Contains(task, want) {
			t.Errorf("the rewound task lacks %q:\n%s", want, task)
		}
	}
	if strings.Contains(task, "completed: step b is down") {
		t.Errorf("the rewound task reads as completed with its old failure:\n%s", task)
	}
	b.shot("1-rewound-and-completed")

	// Ship waits for "shipped" with a timeout; the event comes, so the
	// timer is not needed.
	cli(t, "start", "Ship", "--store", env.store, "--id", "ship").ok(t)
	env.waitRunning(t, "ship")
	cli(t, "raise", "ship", "shipped", "--data", `"DHL-1"`, "--store", env.store).ok(t)
	env.wait(t, "ship")
	b.run("open ship", chromedp.Navigate(url+"/#/instances/ship"),
		chromedp.WaitVisible(`section.instance[data-id="ship"][data-status="Completed"] li.task[data-task="0"]`, q))
	timer := b.text(`li.task[data-task="0"]`)
	if strings.Contains(timer, "so far") || strings.Contains(timer, "running") {
		t.Errorf("the Completed instance's unneeded timer reads as running:\n%s", timer)
	}
	if !strings.Contains(timer, "not needed") {
		t.Errorf("the unneeded timer does not say so:\n%s", timer)
	}
	b.shot("2-unneeded-timer")
}

// TestDashboardOperator: search the instances, raise an event from an
// instance's page, and read its history as a table and as JSON.
func TestDashboardOperator(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	url := serveDashboard(t, env.c, "")
	b := newBrowser(t)
	q := chromedp.ByQuery
	big := `"` + strings.Repeat("x", 300_000) + `"`
	cli(t, "start", "Echo", "--store", env.store, "--id", "order-big", "--input", big, "--wait").ok(t)
	for _, s := range []struct{ id, stage string }{{"order-1", `"packing"`}, {"order-2", `"shipped"`}, {"pay-2", `{"stage":"shipped"}`}} {
		cli(t, "start", "Stage", "--store", env.store, "--id", s.id, "--input", s.stage).ok(t)
		env.waitFor(t, s.id, func(i *duro.Instance) bool { return len(i.RawCustomStatus) > 0 })
	}
	cli(t, "start", "Ship", "--store", env.store, "--id", "ship").ok(t)
	env.waitRunning(t, "ship")

	// The list: custom statuses and payload sizes, not payloads.
	b.run("open the list", chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(`tr[data-id="order-big"] td.size`, q), chromedp.WaitVisible(`tr[data-id="pay-2"] td.custom-status code`, q))
	if got := b.text(`tr[data-id="order-big"]`); !strings.Contains(got, "293.0 KiB") || strings.Contains(got, "xxx") {
		t.Errorf("the big instance's row: %q", got)
	}
	if got := b.text(`tr[data-id="order-1"] td.custom-status`); got != `"packing"` {
		t.Errorf("order-1's custom status: %q", got)
	}
	b.shot("1-instances")

	// Search by ID prefix and custom status.
	b.run("search", chromedp.SendKeys(`#filter-id`, "order-", q), chromedp.SendKeys(`#filter-custom-status`, "shipped", q),
		chromedp.Click(`#search-button`, q), chromedp.WaitNotPresent(`tr[data-id="order-1"]`, q),
		chromedp.WaitVisible(`tr[data-id="order-2"]`, q))
	var n int
	b.run("count rows", chromedp.Evaluate(`document.querySelectorAll("#instances tbody tr").length`, &n))
	if n != 1 {
		t.Errorf("the search for order-… with custom status shipped shows %d rows, want 1 (order-2)", n)
	}
	var hash string
	b.run("read the hash", chromedp.Evaluate(`location.hash`, &hash))
	if !strings.Contains(hash, "id=order-") || !strings.Contains(hash, "cs=shipped") {
		t.Errorf("the search is not in the page's address: %q", hash)
	}
	b.shot("2-instances-search")
	b.run("search by status", chromedp.Navigate(url+"/#/instances?status=Completed"), chromedp.WaitNotPresent(`tr[data-id="order-2"]`, q),
		chromedp.WaitVisible(`tr[data-id="order-big"]`, q))

	// Raise "shipped" from Ship's page, with plain text for data.
	b.run("open ship", chromedp.Navigate(url+"/#/instances/ship"),
		chromedp.WaitVisible(`section.instance[data-id="ship"] button[data-action="raise"]`, q),
		chromedp.Click(`button[data-action="raise"]`, q), chromedp.WaitVisible(`#raise-name`, q),
		chromedp.SendKeys(`#raise-name`, "shipped", q), chromedp.SendKeys(`#raise-data`, "DHL-7", q))
	if got := b.text(`#raise-data-hint`); !strings.Contains(got, `Plain text: sent as the JSON string "DHL-7"`) {
		t.Errorf("the data's hint: %q", got)
	}
	b.shot("3-raise-event")
	b.run("raise", chromedp.Click(`#dialog-ok`, q),
		chromedp.WaitVisible(`section.instance[data-id="ship"][data-status="Completed"]`, q))
	if got := b.text(`#output`); !strings.Contains(got, `"DHL-7"`) {
		t.Errorf("ship's output after the event: %q", got)
	}
	b.shot("4-after-event")

	// The history as a table, then as JSON.
	b.run("compact", chromedp.Click(`.tabs a[data-view="compact"]`, q), chromedp.WaitVisible(`#history-compact tr[data-type="EventRaised"]`, q))
	if got := b.text(`#history-compact tr[data-type="EventRaised"]`); !strings.Contains(got, `shipped`) || !strings.Contains(got, `"DHL-7"`) {
		t.Errorf("the compact view's EventRaised row: %q", got)
	}
	b.shot("5-history-compact")
	var doc string
	b.run("json", chromedp.Click(`.tabs a[data-view="json"]`, q), chromedp.WaitVisible(`#history-json pre`, q),
		chromedp.Text(`#history-json pre`, &doc, q))
	var h struct {
		Events []struct {
			Type string `json:"type"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(doc), &h); err != nil || len(h.Events) < 4 || h.Events[len(h.Events)-1].Type != "ExecutionCompleted" {
		t.Errorf("the JSON view is not the history (%v):\n%.300s", err, doc)
	}
	b.shot("6-history-json")
}

// TestDashboardSupplyResult: "Supply result" takes plain text as a string
// and says, in words, when text that starts like JSON is not JSON.
func TestDashboardSupplyResult(t *testing.T) {
	t.Parallel()
	env := newDecisionEnv(t, "pay", 1)
	url := serveDashboard(t, env.c, "")
	b := newBrowser(t)
	q := chromedp.ByQuery
	result := `.decision-card[data-instance="pay"] button[data-action="result"]`
	b.run("open decisions", chromedp.Navigate(url+"/#/decisions"), chromedp.WaitVisible(result, q),
		chromedp.Click(result, q), chromedp.WaitVisible(`#decision-result`, q),
		chromedp.SendKeys(`#decision-result`, `{"charge": "ch_1"`, q), chromedp.Click(`#dialog-ok`, q),
		chromedp.WaitVisible(`#dialog-error`, q))
	msg := b.text(`#dialog-error`)
	if !strings.Contains(msg, "The result starts like JSON but is not valid JSON") {
		t.Errorf("the error for broken JSON: %q", msg)
	}
	for _, raw := range []string{"JSON.parse", "Unexpected", "position"} {
		if strings.Contains(msg, raw) {
			t.Errorf("the error shows the browser's parse error (%q): %q", raw, msg)
		}
	}
	b.shot("1-broken-json")
	b.run("plain text", chromedp.Evaluate(`document.getElementById("decision-result").value = ""`, nil), chromedp.SendKeys(`#decision-result`, "PAY-42", q),
		chromedp.SendKeys(`#decision-reason`, "the provider shows the charge", q))
	if got := b.text(`#decision-result-hint`); !strings.Contains(got, `sent as the JSON string "PAY-42"`) {
		t.Errorf("the result's hint: %q", got)
	}
	b.shot("2-plain-text")
	b.run("confirm", chromedp.Click(`#dialog-ok`, q), chromedp.WaitVisible(`#no-decisions`, q))
	if inst := env.wait(t, "pay"); inst.Status != duro.StatusCompleted || string(inst.RawOutput) != `["PAY-42"]` {
		t.Errorf("pay: %s %s", inst.Status, inst.RawOutput)
	}
}

// TestDashboardSignIn: before the token is given, nothing says the page is
// live; a refused token says so; the right one shows the instances.
func TestDashboardSignIn(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	url := serveDashboard(t, env.c, "s3cret")
	cli(t, "start", "Echo", "--store", env.store, "--id", "e1", "--wait").ok(t)
	b := newBrowser(t)
	q := chromedp.ByQuery
	live := func() (state, color string) {
		b.run("read the live dot", chromedp.Evaluate(`document.getElementById("live").dataset.state`, &state),
			chromedp.Evaluate(`getComputedStyle(document.getElementById("live")).color`, &color))
		return state, color
	}
	const green = "rgb(159, 224, 181)"
	b.run("open", chromedp.Navigate(url+"/"), chromedp.WaitVisible(`#token-input`, q))
	if st, color := live(); st != "signed-out" || color == green {
		t.Errorf("before sign-in the live dot is %q in %s, want signed-out and not green", st, color)
	}
	b.shot("1-sign-in")
	b.run("wrong token", chromedp.SendKeys(`#token-input`, "nope", q), chromedp.Click(`main form button[type="submit"]`, q),
		chromedp.WaitVisible(`#token-error`, q))
	if st, color := live(); st != "signed-out" || color == green {
		t.Errorf("after a refused token the live dot is %q in %s", st, color)
	}
	b.shot("2-token-refused")
	b.run("right token", chromedp.SendKeys(`#token-input`, "s3cret", q), chromedp.Click(`main form button[type="submit"]`, q),
		chromedp.WaitVisible(`tr[data-id="e1"]`, q))
	if st, color := live(); st != "live" || color != green {
		t.Errorf("signed in, the live dot is %q in %s, want live and green", st, color)
	}
	b.shot("3-signed-in")
}
