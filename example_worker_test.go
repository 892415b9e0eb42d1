package duro_test

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/sqlite"
)

// This example is the main function of a worker process, as it runs under
// a process manager (systemd, Kubernetes) that scales it in with SIGTERM.
// On the signal, Stop is a graceful scale-in: the worker claims nothing
// more, releases the deliveries it claimed but has not started (so the
// next worker does not count them as possible duplicates), and lets the
// code that runs finish, renewing its leases, for as long as the stop's
// context allows; only then does it hand the rest back. Give the process
// manager's grace period (Kubernetes: terminationGracePeriodSeconds) a
// little more than that.
func Example_workerMain() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	be, err := sqlite.Open(ctx, "app.db", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer be.Close()

	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "Charge", func(ctx duro.ActivityContext, cents int) (string, error) {
		return chargeCard(ctx, cents) // runs at most once
	}, duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend})
	duro.RegisterOrchestration(reg, "Checkout", func(ctx *duro.OrchestrationContext, cents int) (string, error) {
		var receipt string
		err := ctx.CallActivity("Charge", cents).Await(&receipt)
		return receipt, err
	})

	w, err := duro.NewWorker(be, reg, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}
	<-ctx.Done() // SIGTERM or Ctrl-C

	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Stop(stopCtx); err != nil {
		log.Printf("worker stop: running activities handed back after 30s: %v", err)
	}
}

// chargeCard stands for a payment provider's client.
func chargeCard(ctx context.Context, cents int) (string, error) { return "receipt", ctx.Err() }
