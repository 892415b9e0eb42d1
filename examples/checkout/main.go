// Command checkout is a complete duro program: a worker for a Checkout
// orchestration whose Charge activity must not run twice, and a client
// that starts one checkout and waits for its receipt. It stores everything
// in checkout.db (SQLite) and stops gracefully on Ctrl-C or SIGTERM.
//
//	go run ./examples/checkout
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/sqlite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	be, err := sqlite.Open(ctx, "checkout.db", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer be.Close()

	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "Charge", charge,
		duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend})
	duro.RegisterOrchestration(reg, "Checkout", checkout)

	w, err := duro.NewWorker(be, reg, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() {
		// Graceful scale-in: claim nothing more, hand back what has not
		// started, let running activities finish for up to 30 s.
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.Stop(stopCtx); err != nil {
			log.Printf("stop: %v", err)
		}
	}()

	client := duro.NewClient(be, nil)
	id, err := client.Start(ctx, "Checkout", 4200)
	if err != nil {
		log.Fatal(err)
	}
	inst, err := client.Wait(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	if err := inst.Err(); err != nil {
		log.Fatal(err)
	}
	var receipt string
	if err := inst.Output(&receipt); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s\n", id, receipt)
}

// checkout is the orchestration: plain Go, replayed from its history.
func checkout(ctx *duro.OrchestrationContext, cents int) (string, error) {
	var receipt string
	err := ctx.CallActivity("Charge", cents).Await(&receipt)
	return receipt, err
}

// charge is the activity: it stands for a payment provider's client.
func charge(ctx duro.ActivityContext, cents int) (string, error) {
	return fmt.Sprintf("charged %d cents (attempt %d)", cents, ctx.Attempt()), nil
}
