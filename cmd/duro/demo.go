package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// demoInstanceID is the ID of the demo's order instance; demoPayInstanceID
// that of the second part's payment.
const (
	demoInstanceID    = "order-1001"
	demoPayInstanceID = "order-1002"
)

// Client-side timings of the demo.
const (
	demoPoll       = 10 * time.Millisecond  // how often the client looks at the instance
	demoRaiseDelay = 300 * time.Millisecond // the parcel "leaves" this long after the wait starts
)

func (a *app) demoCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run an example order workflow end to end and narrate it",
		Long: `Demo runs an order workflow end to end on an embedded SQLite store, with a
worker in this process, and prints each step as it happens: the client's view
(instance status and custom status) and the activities' own lines.

ProcessOrder reserves stock, charges a payment (the demo stops worker-1 in
the middle of the charge, as a crash or a deploy would, and worker-2 gets
the task again as attempt 2), sends three notifications in parallel, waits
for a "shipped" event that the client raises, sleeps on a durable timer and
issues the invoice in a sub-orchestration. Then it prints the output and the
history.

A second, short part pays order-1002 with ChargeCard, an AtMostOnce activity
with the OnDuplicateSuspend policy. The demo stops worker-2 in the middle of
that charge too; worker-3 gets the task again but does not run the code, as
the card may have been charged: it suspends the instance. The demo prints
the decision the instance waits for (as 'duro decisions' does), checks "with
the provider" and resumes it with the charge's result (as 'duro resume
--result' does), and the instance completes without a second charge.
Finally it prints the commands to look at the store yourself.

The store is a fresh file in a temporary directory, removed afterwards unless
--keep is given, or the file named by --store / DURO_STORE, which is kept.`,
		Example: `  duro demo
  duro demo --store demo.db && duro list --store demo.db`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDemo(cmd, keep)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the temporary store and print its path")
	return cmd
}

// demoPrinter writes the demo's narration, one timestamped line at a time,
// from any goroutine.
type demoPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (p *demoPrinter) line(who, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%6.3fs  %-10s %s\n", time.Since(p.start).Seconds(), "["+who+"]", fmt.Sprintf(format, args...))
}

func (p *demoPrinter) activity(ctx duro.ActivityContext, format string, args ...any) {
	p.line("activity", "%s (attempt %d): %s", ctx.Name(), ctx.Attempt(), fmt.Sprintf(format, args...))
}

func (p *demoPrinter) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// demoStore returns the store path for the demo, whether it is temporary,
// and a function that removes a temporary store unless keep is set.
func (a *app) demoStore(cmd *cobra.Command, keep bool) (path string, temp bool, cleanup func(), err error) {
	if a.storeGiven(cmd) {
		return a.store, false, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "duro-demo-")
	if err != nil {
		return "", false, nil, fmt.Errorf("demo store: %w", err)
	}
	cleanup = func() {
		if !keep {
			_ = os.RemoveAll(dir)
		}
	}
	return filepath.Join(dir, "demo.db"), true, cleanup, nil
}

func (a *app) runDemo(cmd *cobra.Command, keep bool) error {
	if a.server != "" {
		return a.runRemoteDemo(cmd)
	}
	ctx := cmd.Context()
	out := &demoPrinter{w: a.stdout, start: time.Now()}
	path, temp, cleanup, err := a.demoStore(cmd, keep)
	if err != nil {
		return err
	}
	defer cleanup()
	be, err := openStore(ctx, path)
	if err != nil {
		return err
	}
	defer func() { _ = be.Close() }()
	c := duro.NewClient(be, nil)
	var leftovers []*duro.Instance
	if !temp {
		if leftovers, err = checkDemoStore(ctx, c, path); err != nil {
			return err
		}
	}

	out.printf("duro demo: an order workflow, run end to end by a worker in this process.\n\n")
	switch {
	case temp && keep:
		out.printf("store: %s (temporary, kept)\n\n", path)
	case temp:
		out.printf("store: %s (temporary, removed at the end)\n\n", path)
	default:
		out.printf("store: %s\n\n", path)
	}

	acts := newDemoActivities(out)
	reg := duro.NewRegistry()
	acts.register(reg)
	logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	workers := &demoWorkers{be: be, reg: reg, log: logger, out: out}
	defer workers.stop()
	if err := finishLeftovers(ctx, be, c, leftovers, out, logger); err != nil {
		return err
	}
	if err := workers.start(ctx); err != nil {
		return err
	}

	order := demoOrder{ID: demoInstanceID, Customer: "Ada", Email: "ada@example.com", Phone: "+44 20 7946 0000",
		Item: "duro mug", Quantity: 2, AmountCents: 2990 * 2}
	id, err := c.Start(ctx, demoOrchestration, order, duro.StartOptions{InstanceID: demoInstanceID, ReplaceFinished: true})
	if err != nil {
		return explain(ctx, c, demoInstanceID, err)
	}
	out.line("client", "started %s instance %s", demoOrchestration, id)

	inst, err := watchDemo(ctx, c, id, out, acts.charging, workers)
	if err != nil {
		return err
	}
	child, err := a.demoOutcome(ctx, c, inst, out)
	if err != nil {
		return err
	}
	store := ""
	if !temp || keep {
		store = " --store " + quoteArg(path)
	}
	pay, err := demoAtMostOnce(ctx, c, acts, workers, out, store)
	if err != nil {
		return err
	}
	if err := demoPayOutcome(ctx, c, pay, out); err != nil {
		return err
	}
	demoLookAround(out, path, temp, keep, child)
	return nil
}

// watchDemo follows the instance from the client side until it finishes:
// it prints status and custom status changes, raises the "shipped" event
// once the order waits for it, and swaps workers when the first charge
// starts.
func watchDemo(ctx context.Context, c *duro.Client, id string, out *demoPrinter, charging <-chan struct{}, workers *demoWorkers) (*duro.Instance, error) {
	var status duro.Status
	var custom string
	var raiseAt time.Time
	raised := false
	tick := time.NewTicker(demoPoll)
	defer tick.Stop()
	for {
		inst, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if inst.Status != status {
			status = inst.Status
			out.line("client", "status %s", status)
		}
		var s string
		if err := inst.CustomStatus(&s); err == nil && s != custom {
			custom = s
			out.line("client", "custom status %q", s)
		}
		if custom == stepShipping && raiseAt.IsZero() {
			raiseAt = time.Now().Add(demoRaiseDelay)
			out.line("client", "the order waits for event %q; the warehouse will raise it in %v", demoShippedEvent, demoRaiseDelay)
		}
		if !raised && !raiseAt.IsZero() && !time.Now().Before(raiseAt) {
			data := demoShipment{Carrier: "DHL", Tracking: "JD014600006281"}
			if err := c.RaiseEvent(ctx, id, demoShippedEvent, data); err != nil {
				return nil, explain(ctx, c, id, err)
			}
			raised = true
			out.line("client", "raised event %q {carrier: %s, tracking: %s}", demoShippedEvent, data.Carrier, data.Tracking)
		}
		if status.IsTerminal() {
			return inst, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("demo: waiting for %s: %w", id, ctx.Err())
		case <-charging:
			charging = nil
			if err := workers.crash(ctx, "charge"); err != nil {
				return nil, err
			}
		case <-tick.C:
		}
	}
}

// demoWorkers runs the demo's worker, and replaces it mid-charge.
type demoWorkers struct {
	be      backend.Backend
	reg     *duro.Registry
	log     *slog.Logger
	out     *demoPrinter
	n       int // workers started
	name    string
	current *duro.Worker
}

// start starts the next worker: worker-1, worker-2, ...
func (d *demoWorkers) start(ctx context.Context) error {
	d.n++
	name := fmt.Sprintf("worker-%d", d.n)
	log := slog.New(&demoLogHandler{next: d.log.Handler(), out: d.out, worker: name})
	w, err := duro.NewWorker(d.be, d.reg, &duro.WorkerOptions{Name: name, PollInterval: 20 * time.Millisecond, Logger: log})
	if err != nil {
		return err
	}
	// Say so first: the worker may claim and report work at once.
	d.out.line("worker", "%s started", name)
	if err := w.Start(ctx); err != nil {
		return err
	}
	d.current, d.name = w, name
	return nil
}

// crash stops the worker without waiting for its activities, which abandons
// the running one (what), and starts the next worker, which gets it again.
func (d *demoWorkers) crash(ctx context.Context, what string) error {
	d.out.line("demo", "stopping %s in the middle of the %s, as a crash or a deploy would", d.name, what)
	now, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.current.Stop(now); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	d.current = nil
	d.out.line("worker", "%s stopped; the %s's outcome is unknown", d.name, what)
	return d.start(ctx)
}

func (d *demoWorkers) stop() {
	if d.current == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.current.Stop(ctx)
	d.current = nil
}

// demoLogHandler narrates the worker's expected warning about an
// at-most-once duplicate as a demo line; other records go to next (stderr).
type demoLogHandler struct {
	next   slog.Handler
	out    *demoPrinter
	worker string
}

func (h *demoLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *demoLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && strings.Contains(r.Message, "possible duplicate") {
		h.out.line("worker", "%s: %s", h.worker, strings.TrimPrefix(r.Message, "duro: "))
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *demoLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &demoLogHandler{next: h.next.WithAttrs(as), out: h.out, worker: h.worker}
}

func (h *demoLogHandler) WithGroup(name string) slog.Handler {
	return &demoLogHandler{next: h.next.WithGroup(name), out: h.out, worker: h.worker}
}

// demoAtMostOnce runs the demo's second part: a payment by an at-most-once
// activity whose worker is stopped mid-charge. The next worker suspends the
// instance instead of charging again; an operator checks with the provider
// and resumes it with the charge's result. store is the --store argument of
// the printed commands.
func demoAtMostOnce(ctx context.Context, c *duro.Client, acts *demoActivities, workers *demoWorkers, out *demoPrinter, store string) (*duro.Instance, error) {
	out.printf("\nPart 2: a payment that must not be made twice. %s is AtMostOnce, with the\n", demoChargeCard)
	out.printf("OnDuplicateSuspend policy: its code runs on the first delivery only.\n\n")
	order := demoOrder{ID: demoPayInstanceID, Customer: "Grace", Email: "grace@example.com", Phone: "+1 202 555 0100",
		Item: "duro tote", Quantity: 1, AmountCents: 1490}
	id, err := c.Start(ctx, demoPayOrch, order, duro.StartOptions{InstanceID: demoPayInstanceID, ReplaceFinished: true})
	if err != nil {
		return nil, explain(ctx, c, demoPayInstanceID, err)
	}
	out.line("client", "started %s instance %s", demoPayOrch, id)
	var status duro.Status
	if _, err := followDemo(ctx, c, id, out, &status, func(*duro.Instance) bool { return true }); err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("demo: waiting for %s to charge: %w", id, ctx.Err())
	case <-acts.cardCharging:
	}
	if err := workers.crash(ctx, "card charge"); err != nil {
		return nil, err
	}
	inst, err := followDemo(ctx, c, id, out, &status, func(i *duro.Instance) bool {
		return i.Status.IsTerminal() || i.Status == duro.StatusSuspended && i.Suspension != nil && len(i.Suspension.Pending) > 0
	})
	if err != nil {
		return nil, err
	}
	if inst.Status != duro.StatusSuspended {
		return nil, fmt.Errorf("demo instance %s %s, want Suspended for a decision", id, inst.Status)
	}

	all, err := c.PendingDecisions(ctx)
	if err != nil {
		return nil, err
	}
	var mine []*duro.PendingTask
	for _, t := range all {
		if t.InstanceID == id {
			mine = append(mine, t)
		}
	}
	out.printf("\nWhat waits for a decision (duro decisions%s):\n", store)
	var b strings.Builder
	if err := renderDecisions(&b, mine, store); err != nil {
		return nil, err
	}
	out.printf("%s\n", indentText(b.String(), "  "))

	pd := mine[0]
	payment := "PAY-" + order.ID
	reason := "the provider has the charge"
	out.line("operator", "asks the payment provider about %s: it has charge %s for %s, from attempt %d",
		id, payment, money(order.AmountCents), pd.Attempt-1)
	result := `"` + payment + `"`
	out.line("operator", "duro resume %s --task %d --result %s --reason %s%s",
		id, pd.TaskID, quoteArg(result), quoteArg(reason), store)
	if err := c.Resume(ctx, id, reason, duro.CompleteTask(pd.TaskID, payment)); err != nil {
		return nil, explain(ctx, c, id, err)
	}
	return followDemo(ctx, c, id, out, &status, func(i *duro.Instance) bool { return i.Status.IsTerminal() })
}

// indentText prefixes the non-empty lines of s with pad.
func indentText(s, pad string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

// followDemo prints the instance's status changes, from the last status
// printed (*status), until done says so.
func followDemo(ctx context.Context, c *duro.Client, id string, out *demoPrinter, status *duro.Status, done func(*duro.Instance) bool) (*duro.Instance, error) {
	tick := time.NewTicker(demoPoll)
	defer tick.Stop()
	for {
		inst, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if inst.Status != *status {
			*status = inst.Status
			out.line("client", "status %s", inst.Status)
		}
		if done(inst) {
			return inst, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("demo: waiting for %s: %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}

// demoPayOutcome prints the second part's outcome and history.
func demoPayOutcome(ctx context.Context, c *duro.Client, inst *duro.Instance, out *demoPrinter) error {
	took := inst.CompletedAt.Sub(inst.CreatedAt)
	if inst.Status != duro.StatusCompleted {
		return fmt.Errorf("demo instance %s %s: %s", inst.ID, inst.Status, failureText(inst.Failure))
	}
	out.printf("\n%s %s in %s, charged once: output %s.\n", inst.ID, inst.Status, shortDuration(took), payloadText(inst.RawOutput))
	return printDemoHistory(ctx, c, inst.ID, out)
}

func printDemoHistory(ctx context.Context, c *duro.Client, id string, out *demoPrinter) error {
	events, err := c.History(ctx, id)
	if err != nil {
		return err
	}
	out.printf("\nHistory of %s (duro history %s, without its OrchestratorStarted step markers):\n", id, id)
	var b strings.Builder
	if err := renderEvents(&b, events, false, false); err != nil {
		return err
	}
	out.printf("%s", b.String())
	return nil
}

// checkDemoStore refuses a store with unfinished instances of other
// orchestrations: the demo's worker would fail them as not registered. It
// returns the demo's own unfinished instances, which an interrupted run
// left behind.
func checkDemoStore(ctx context.Context, c *duro.Client, path string) ([]*duro.Instance, error) {
	opts := duro.ListOptions{Statuses: []duro.Status{duro.StatusPending, duro.StatusRunning, duro.StatusSuspended}, OmitPayloads: true}
	var mine []*duro.Instance
	for {
		page, err := c.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, i := range page.Instances {
			switch i.Name {
			case demoOrchestration, demoSubOrch, demoPayOrch:
				mine = append(mine, i)
			default:
				return nil, fmt.Errorf("%s holds unfinished instances of other orchestrations (%s %s, %s); the demo's worker would fail them: use another --store",
					path, i.Name, i.ID, i.Status)
			}
		}
		if page.NextPageToken == "" {
			return mine, nil
		}
		opts.PageToken = page.NextPageToken
	}
}

// finishLeftovers terminates the instances an interrupted demo run left
// unfinished, with a worker of the demo's orchestrations only (their
// activities must not run again, nor their narration mix with this run's),
// and waits until they have finished, so that this run can start the demo's
// instances again.
func finishLeftovers(ctx context.Context, be backend.Backend, c *duro.Client, leftovers []*duro.Instance, out *demoPrinter, log *slog.Logger) error {
	if len(leftovers) == 0 {
		return nil
	}
	for _, i := range leftovers {
		out.line("demo", "an earlier, interrupted demo left %s %s: terminating it, so that this run starts over", i.ID, i.Status)
		err := c.Terminate(ctx, i.ID, "left unfinished by an interrupted duro demo")
		if err != nil && !errors.Is(err, duro.ErrInstanceFinished) && !errors.Is(err, duro.ErrInstanceNotFound) {
			return err
		}
	}
	reg := duro.NewRegistry()
	duro.RegisterOrchestration(reg, demoOrchestration, processOrder)
	duro.RegisterOrchestration(reg, demoSubOrch, issueInvoice)
	duro.RegisterOrchestration(reg, demoPayOrch, payOrder)
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{Name: "demo-cleanup", PollInterval: 20 * time.Millisecond, Logger: log})
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = w.Stop(sctx)
	}()
	for _, i := range leftovers {
		// A step leased by a killed process waits for its lease to lapse.
		if _, err := c.Wait(ctx, i.ID); err != nil && !errors.Is(err, duro.ErrInstanceNotFound) {
			return fmt.Errorf("demo: waiting for the earlier run's %s to finish: %w", i.ID, err)
		}
	}
	out.printf("\n")
	return nil
}

// demoOutcome prints the first part's outcome, output and history, and
// returns the ID of its sub-orchestration.
func (a *app) demoOutcome(ctx context.Context, c *duro.Client, inst *duro.Instance, out *demoPrinter) (child string, err error) {
	events, err := c.History(ctx, inst.ID)
	if err != nil {
		return "", err
	}
	for _, e := range events {
		if e.InstanceID != "" && e.Name == demoSubOrch {
			child = e.InstanceID
		}
	}
	took := inst.CompletedAt.Sub(inst.CreatedAt)
	out.printf("\n%s %s in %s.\n", inst.ID, inst.Status, shortDuration(took))
	if inst.Status != duro.StatusCompleted {
		return "", fmt.Errorf("demo instance %s %s: %s", inst.ID, inst.Status, failureText(inst.Failure))
	}
	out.printf("\nOutput:\n")
	out.mu.Lock()
	err = writeJSON(a.stdout, rawJSON(inst.RawOutput))
	out.mu.Unlock()
	if err != nil {
		return "", err
	}
	return child, printDemoHistory(ctx, c, inst.ID, out)
}

// demoLookAround prints the commands to look at the store afterwards.
func demoLookAround(out *demoPrinter, path string, temp, keep bool, child string) {
	store := "--store " + quoteArg(path)
	if temp && !keep {
		out.printf("\nThe store was temporary and is removed now. To look around afterwards, keep one:\n")
		store = "--store demo.db"
		out.printf("  duro demo %s\n", store)
	} else {
		out.printf("\nLook around the store:\n")
	}
	out.printf("  duro list %s\n", store)
	out.printf("  duro status %s %s\n", demoInstanceID, store)
	out.printf("  duro history %s %s\n", demoInstanceID, store)
	if child != "" {
		out.printf("  duro history %s %s   # the %s sub-orchestration\n", quoteArg(child), store, demoSubOrch)
	}
	out.printf("  duro history %s %s   # the at-most-once payment and its decision\n", demoPayInstanceID, store)
}
