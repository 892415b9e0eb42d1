package duro_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/memory"
)

// This example waits for an external event raised by a client, with a
// durable timeout: the first order is approved in time, nobody approves the
// second one.
func ExampleOrchestrationContext_WaitForEvent() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	reg := duro.NewRegistry()
	duro.RegisterOrchestration(reg, "Order", func(ctx *duro.OrchestrationContext, timeout time.Duration) (string, error) {
		var approver string
		err := ctx.WaitForEvent("Approval", timeout).Await(&approver)
		if errors.Is(err, duro.ErrTimeout) {
			return "cancelled: not approved in time", nil
		}
		if err != nil {
			return "", err
		}
		return "approved by " + approver, nil
	})

	be, err := memory.Open(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer be.Close()
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer w.Stop(ctx)

	client := duro.NewClient(be, nil)
	if _, err := client.Start(ctx, "Order", time.Hour, duro.StartOptions{InstanceID: "order-1"}); err != nil {
		log.Fatal(err)
	}
	// An event raised before the orchestration waits for it is kept.
	if err := client.RaiseEvent(ctx, "order-1", "Approval", "alice"); err != nil {
		log.Fatal(err)
	}
	if _, err := client.Start(ctx, "Order", 10*time.Millisecond, duro.StartOptions{InstanceID: "order-2"}); err != nil {
		log.Fatal(err)
	}

	for _, id := range []string{"order-1", "order-2"} {
		inst, err := client.Wait(ctx, id)
		if err != nil {
			log.Fatal(err)
		}
		var out string
		if err := inst.Output(&out); err != nil {
			log.Fatal(err)
		}
		fmt.Println(id, out)
	}
	// Output:
	// order-1 approved by alice
	// order-2 cancelled: not approved in time
}
