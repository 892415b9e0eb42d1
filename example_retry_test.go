package duro_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/memory"
)

// This example retries a flaky activity. Each retry is a new task in the
// orchestration's history, and the waits between them are durable timers, so
// a retry survives a restart of every worker.
func ExampleRetryPolicy() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var calls atomic.Int32
	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "FetchRate", func(ctx duro.ActivityContext, currency string) (float64, error) {
		n := calls.Add(1)
		if n < 3 {
			fmt.Printf("call %d: service unavailable\n", n)
			return 0, duro.NewError("Unavailable", "service unavailable")
		}
		fmt.Printf("call %d: ok\n", n)
		return 1.08, nil
	}, duro.ActivityOptions{RetryPolicy: &duro.RetryPolicy{
		MaxAttempts:     5,
		InitialInterval: 10 * time.Millisecond,
		// Only the errors worth retrying.
		RetryIf: func(err *duro.TaskError) bool { return err.Type == "Unavailable" },
	}})
	duro.RegisterOrchestration(reg, "Convert", func(ctx *duro.OrchestrationContext, amount float64) (float64, error) {
		var rate float64
		if err := ctx.CallActivity("FetchRate", "EUR").Await(&rate); err != nil {
			return 0, err
		}
		return amount * rate, nil
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
	id, err := client.Start(ctx, "Convert", 100.0, duro.StartOptions{InstanceID: "convert-100"})
	if err != nil {
		log.Fatal(err)
	}
	inst, err := client.Wait(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	var out float64
	if err := inst.Output(&out); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %.2f\n", inst.Status, out)
	// Output:
	// call 1: service unavailable
	// call 2: service unavailable
	// call 3: ok
	// Completed: 108.00
}
