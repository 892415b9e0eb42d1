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

	"duro"
	"duro/backend"
)

// demoInstanceID is the ID of the demo's order instance.
const demoInstanceID = "order-1001"

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
history, and the commands to look at the store yourself.

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
	if !temp {
		if err := checkDemoStore(ctx, c, path); err != nil {
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
	if err := workers.start(ctx, "worker-1"); err != nil {
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
	return a.demoSummary(ctx, c, inst, out, path, temp, keep)
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
			if err := workers.crash(ctx); err != nil {
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
	current *duro.Worker
}

func (d *demoWorkers) start(ctx context.Context, name string) error {
	w, err := duro.NewWorker(d.be, d.reg, &duro.WorkerOptions{Name: name, PollInterval: 20 * time.Millisecond, Logger: d.log})
	if err != nil {
		return err
	}
	// Say so first: the worker may claim and report work at once.
	d.out.line("worker", "%s started", name)
	if err := w.Start(ctx); err != nil {
		return err
	}
	d.current = w
	return nil
}

// crash stops worker-1 without waiting for its activities, which abandons
// the running charge, and starts worker-2, which gets it again.
func (d *demoWorkers) crash(ctx context.Context) error {
	d.out.line("demo", "stopping worker-1 in the middle of the charge, as a crash or a deploy would")
	now, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.current.Stop(now); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	d.current = nil
	d.out.line("worker", "worker-1 stopped; the charge's outcome is unknown")
	return d.start(ctx, "worker-2")
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

// checkDemoStore refuses a store with unfinished instances of other
// orchestrations: the demo's worker would fail them as not registered.
func checkDemoStore(ctx context.Context, c *duro.Client, path string) error {
	opts := duro.ListOptions{Statuses: []duro.Status{duro.StatusPending, duro.StatusRunning, duro.StatusSuspended}}
	for {
		page, err := c.List(ctx, opts)
		if err != nil {
			return err
		}
		for _, i := range page.Instances {
			switch i.Name {
			case demoOrchestration, demoSubOrch:
				if i.ID == demoInstanceID {
					return fmt.Errorf("an earlier demo left its instance %s unfinished (%s) in %s: use another --store", i.ID, i.Status, path)
				}
			default:
				return fmt.Errorf("%s holds unfinished instances of other orchestrations (%s %s, %s); the demo's worker would fail them: use another --store",
					path, i.Name, i.ID, i.Status)
			}
		}
		if page.NextPageToken == "" {
			return nil
		}
		opts.PageToken = page.NextPageToken
	}
}

// demoSummary prints the outcome, the history and how to look further.
func (a *app) demoSummary(ctx context.Context, c *duro.Client, inst *duro.Instance, out *demoPrinter, path string, temp, keep bool) error {
	events, err := c.History(ctx, inst.ID)
	if err != nil {
		return err
	}
	var child string
	for _, e := range events {
		if e.InstanceID != "" && e.Name == demoSubOrch {
			child = e.InstanceID
		}
	}
	took := inst.CompletedAt.Sub(inst.CreatedAt)
	out.printf("\n%s %s in %s.\n", inst.ID, inst.Status, shortDuration(took))
	if inst.Status != duro.StatusCompleted {
		return fmt.Errorf("demo instance %s %s: %s", inst.ID, inst.Status, failureText(inst.Failure))
	}
	out.printf("\nOutput:\n")
	if err := writeJSON(a.stdout, rawJSON(inst.RawOutput)); err != nil {
		return err
	}
	out.printf("\nHistory of %s (duro history %s):\n", inst.ID, inst.ID)
	var b strings.Builder
	if err := renderTimeline(&b, events, false); err != nil {
		return err
	}
	out.printf("%s", b.String())

	store := "--store " + quoteArg(path)
	if temp && !keep {
		out.printf("\nThe store was temporary and is removed now. To look around afterwards, keep one:\n")
		store = "--store demo.db"
		out.printf("  duro demo %s\n", store)
	} else {
		out.printf("\nLook around the store:\n")
	}
	out.printf("  duro list %s\n", store)
	out.printf("  duro status %s %s\n", inst.ID, store)
	out.printf("  duro history %s %s\n", inst.ID, store)
	if child != "" {
		out.printf("  duro history %s %s   # the %s sub-orchestration\n", quoteArg(child), store, demoSubOrch)
	}
	return nil
}
