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

// This example runs a payment that must not be made twice. The activity is
// AtMostOnce with the OnDuplicateFail policy: its code runs only on the first
// delivery. When that delivery dies mid-call (here its worker is stopped
// while the provider does not answer), the next delivery does not run the
// code; the task fails with an error wrapping ErrPossibleDuplicate, and the
// orchestration decides what to do instead of charging again.
func ExampleGuarantee_atMostOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	inFlight := make(chan struct{}, 1)
	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "Charge", func(ctx duro.ActivityContext, cents int) (string, error) {
		fmt.Printf("charging %d cents, attempt %d\n", cents, ctx.Attempt())
		inFlight <- struct{}{}
		<-ctx.Done() // the provider never answers
		return "", ctx.Err()
	}, duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateFail})
	duro.RegisterOrchestration(reg, "Checkout", func(ctx *duro.OrchestrationContext, cents int) (string, error) {
		var chargeID string
		err := ctx.CallActivity("Charge", cents).Await(&chargeID)
		if errors.Is(err, duro.ErrPossibleDuplicate) {
			// The card may or may not have been charged: do not charge
			// again, ask a human.
			var dup *duro.PossibleDuplicateError
			errors.As(err, &dup)
			return fmt.Sprintf("payment state unknown after attempt %d: sent to manual review", dup.Attempt), nil
		}
		if err != nil {
			return "", err
		}
		return "paid: " + chargeID, nil
	})

	be, err := memory.Open(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer be.Close()
	opts := &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler)}
	client := duro.NewClient(be, nil)

	// The first worker dies while the charge is in flight: stopping it with
	// a done context abandons the delivery, as a crash would.
	first, err := duro.NewWorker(be, reg, opts)
	if err != nil {
		log.Fatal(err)
	}
	if err := first.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := client.Start(ctx, "Checkout", 4200, duro.StartOptions{InstanceID: "checkout-1"}); err != nil {
		log.Fatal(err)
	}
	<-inFlight
	dead, kill := context.WithCancel(ctx)
	kill()
	_ = first.Stop(dead) // returns dead's error: the delivery was abandoned

	// The second worker gets the task again, as attempt 2.
	second, err := duro.NewWorker(be, reg, opts)
	if err != nil {
		log.Fatal(err)
	}
	if err := second.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer second.Stop(ctx)
	inst, err := client.Wait(ctx, "checkout-1")
	if err != nil {
		log.Fatal(err)
	}
	var out string
	if err := inst.Output(&out); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
	// Output:
	// charging 4200 cents, attempt 1
	// payment state unknown after attempt 2: sent to manual review
}
