package duro_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/memory"
)

// This example fans out: it schedules one activity per item without waiting,
// so they can run in parallel, then fans in with AwaitAll and reads each
// result in argument order.
func Example_fanOut() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	prices := map[string]int{"apple": 120, "bread": 350, "cheese": 780}
	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "Price", func(ctx duro.ActivityContext, item string) (int, error) {
		p, ok := prices[item]
		if !ok {
			return 0, duro.NewNonRetryableError("UnknownItem", item)
		}
		return p, nil
	})
	duro.RegisterOrchestration(reg, "Basket", func(ctx *duro.OrchestrationContext, items []string) (int, error) {
		tasks := make([]*duro.Task, len(items))
		for i, item := range items {
			tasks[i] = ctx.CallActivity("Price", item)
		}
		if err := ctx.AwaitAll(tasks...); err != nil {
			return 0, err
		}
		total := 0
		for _, t := range tasks {
			var p int
			if err := t.Await(&p); err != nil {
				return 0, err
			}
			total += p
		}
		return total, nil
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
	for _, basket := range [][]string{{"apple", "bread", "cheese"}, {"apple", "caviar"}} {
		id, err := client.Start(ctx, "Basket", basket, duro.StartOptions{InstanceID: fmt.Sprint("basket-", len(basket))})
		if err != nil {
			log.Fatal(err)
		}
		inst, err := client.Wait(ctx, id)
		if err != nil {
			log.Fatal(err)
		}
		if err := inst.Err(); err != nil {
			fmt.Println(id, "failed:", inst.Failure.Message)
			continue
		}
		var total int
		if err := inst.Output(&total); err != nil {
			log.Fatal(err)
		}
		fmt.Println(id, "total:", total)
	}
	// Output:
	// basket-3 total: 1250
	// basket-2 failed: activity "Price" (task 1) failed: caviar
}
