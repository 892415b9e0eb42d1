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

// This example resumes a long activity where an interrupted delivery
// stopped. The activity records its progress with Heartbeat after each item;
// the first worker is stopped without waiting (as a crash would end it) in
// the middle of the import, and the next delivery, on another worker, reads
// the progress with HeartbeatDetails and carries on from there.
func ExampleActivityContext_Heartbeat() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	type progress struct{ Next int }
	halfway := make(chan struct{})
	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "ImportRows", func(ctx duro.ActivityContext, rows int) (int, error) {
		var p progress
		if _, err := ctx.HeartbeatDetails(&p); err != nil {
			return 0, err
		}
		fmt.Printf("attempt %d starts at row %d\n", ctx.Attempt(), p.Next)
		for row := p.Next; row < rows; row++ {
			// ... import the row, idempotently ...
			if err := ctx.Heartbeat(progress{Next: row + 1}); err != nil {
				return 0, err // ErrLeaseLost: a newer delivery took over
			}
			if row == 5 && ctx.Attempt() == 1 {
				close(halfway)
				<-ctx.Done() // the first worker goes away here
				return 0, ctx.Err()
			}
		}
		return rows, nil
	})
	duro.RegisterOrchestration(reg, "Import", func(ctx *duro.OrchestrationContext, rows int) (int, error) {
		var n int
		err := ctx.CallActivity("ImportRows", rows).Await(&n)
		return n, err
	})

	be, err := memory.Open(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer be.Close()
	quiet := &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler)}
	first, err := duro.NewWorker(be, reg, quiet)
	if err != nil {
		log.Fatal(err)
	}
	if err := first.Start(ctx); err != nil {
		log.Fatal(err)
	}
	client := duro.NewClient(be, nil)
	id, err := client.Start(ctx, "Import", 10, duro.StartOptions{InstanceID: "import-10"})
	if err != nil {
		log.Fatal(err)
	}
	<-halfway
	// Stop with a context that has already ended: the running delivery is
	// cancelled and handed back, as if its worker had died.
	ended, endNow := context.WithCancel(ctx)
	endNow()
	_ = first.Stop(ended)

	second, err := duro.NewWorker(be, reg, quiet)
	if err != nil {
		log.Fatal(err)
	}
	if err := second.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer second.Stop(ctx)
	inst, err := client.Wait(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	var n int
	if err := inst.Output(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d rows\n", inst.Status, n)
	// Output:
	// attempt 1 starts at row 0
	// attempt 2 starts at row 6
	// Completed: 10 rows
}
