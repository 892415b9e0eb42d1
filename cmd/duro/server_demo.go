package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server"
)

// demoHost is the worker host of 'duro server --demo': a worker running the
// demo's workflows that is stopped in the middle of the first charge it
// runs, as a crash would, and replaced by the next one, which gets the
// charge again as attempt 2. Each worker has fresh demo activities, so
// every order started is interrupted once: ProcessOrder's ChargePayment
// runs again, and PayOrder's at-most-once ChargeCard suspends its instance
// for a decision.
type demoHost struct {
	be      backend.Backend
	log     *slog.Logger
	tracer  trace.TracerProvider
	metrics *server.Metrics
	out     *demoPrinter
	n       int
	// stopTimeout bounds the graceful stop when the server stops.
	stopTimeout time.Duration
}

// run runs workers until ctx is done.
func (h *demoHost) run(ctx context.Context) error {
	for {
		acts := newDemoActivities(h.out)
		reg := duro.NewRegistry()
		acts.register(reg)
		h.n++
		name := fmt.Sprintf("demo-worker-%d", h.n)
		log := slog.New(&demoLogHandler{next: h.log.Handler(), out: h.out, worker: name})
		w, err := duro.NewWorker(h.be, reg, &duro.WorkerOptions{Name: name, PollInterval: 20 * time.Millisecond,
			Logger: log, Tracer: h.tracer})
		if err != nil {
			return err
		}
		h.metrics.AddWorker(w)
		h.out.line("worker", "%s started", name)
		if err := w.Start(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		what := ""
		select {
		case <-ctx.Done():
			// A graceful scale-in: claimed deliveries that have not
			// started are released at once, unstarted; running code has
			// stopTimeout to finish, its leases renewed meanwhile.
			h.out.line("worker", "%s stopping: releasing unstarted work, letting running activities finish", name)
			timeout := h.stopTimeout
			if timeout <= 0 {
				timeout = 30 * time.Second
			}
			sctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := w.Stop(sctx); err != nil {
				h.out.line("worker", "%s: running activities did not finish in %s; handed back", name, timeout)
			}
			return nil
		case <-acts.charging:
			what = "charge"
		case <-acts.cardCharging:
			what = "card charge"
		}
		h.out.line("demo", "stopping %s in the middle of the %s, as a crash or a deploy would", name, what)
		dead, kill := context.WithCancel(ctx)
		kill()
		if err := w.Stop(dead); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		h.out.line("worker", "%s stopped; the %s's outcome is unknown", name, what)
	}
}

// The demo's orders, as the samples the dashboard offers.
var (
	demoOrder1001 = demoOrder{ID: demoInstanceID, Customer: "Ada", Email: "ada@example.com", Phone: "+44 20 7946 0000",
		Item: "duro mug", Quantity: 2, AmountCents: 2990 * 2}
	demoOrder1002 = demoOrder{ID: demoPayInstanceID, Customer: "Grace", Email: "grace@example.com", Phone: "+1 202 555 0100",
		Item: "duro tote", Quantity: 1, AmountCents: 1490}
)

// demoSamples are the instances the dashboard offers to start with --demo.
func demoSamples() []server.Sample {
	in1, _ := json.Marshal(demoOrder1001)
	in2, _ := json.Marshal(demoOrder1002)
	return []server.Sample{
		{Title: "ProcessOrder (order-1001)", Name: demoOrchestration, ID: demoInstanceID, Input: in1},
		{Title: "PayOrder: an at-most-once charge (order-1002)", Name: demoPayOrch, ID: demoPayInstanceID, Input: in2},
	}
}

// checkServerDemoStore refuses a store with unfinished instances of other
// orchestrations: the demo worker does not have them and would poison them.
func checkServerDemoStore(ctx context.Context, c *duro.Client, path string) error {
	opts := duro.ListOptions{Statuses: []duro.Status{duro.StatusPending, duro.StatusRunning, duro.StatusSuspended}}
	for {
		page, err := c.List(ctx, opts)
		if err != nil {
			return err
		}
		for _, i := range page.Instances {
			switch i.Name {
			case demoOrchestration, demoSubOrch, demoPayOrch:
			default:
				return fmt.Errorf("%s holds unfinished instances of other orchestrations (%s %s, %s); the demo worker would poison them: use --demo with a store of its own",
					path, i.Name, i.ID, i.Status)
			}
		}
		if page.NextPageToken == "" {
			return nil
		}
		opts.PageToken = page.NextPageToken
	}
}
