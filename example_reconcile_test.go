package duro_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"sync"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/memory"
)

// This example resolves a possible duplicate by asking the outside world. The
// activity is AtMostOnce with the OnDuplicateReconcile policy: when a
// delivery dies after the provider recorded the charge but before its answer
// came back, the next delivery calls the ReconcileFunc instead of the code.
// It looks the payment up and completes the task with the charge found, or
// runs the code again if there is none.
func ExampleReconcileFunc() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var provider sync.Map // order ID → charge ID, as the payment provider records them
	inFlight := make(chan struct{}, 1)
	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "Charge", func(ctx duro.ActivityContext, order string) (string, error) {
		fmt.Printf("charging %s, attempt %d\n", order, ctx.Attempt())
		provider.Store(order, "ch_"+order)
		inFlight <- struct{}{}
		<-ctx.Done() // the provider's answer is lost
		return "", ctx.Err()
	}, duro.ActivityOptions{
		Guarantee:   duro.AtMostOnce,
		OnDuplicate: duro.OnDuplicateReconcile,
		Reconcile: func(ctx duro.ActivityContext, input *duro.Payload) (duro.ReconcileDecision, error) {
			var order string
			if err := input.Decode(&order); err != nil {
				return duro.ReconcileDecision{}, err
			}
			if id, ok := provider.Load(order); ok {
				fmt.Printf("reconciling %s, attempt %d: the provider has %s\n", order, ctx.Attempt(), id)
				return duro.ReconcileResult(id), nil
			}
			return duro.ReconcileRetry(), nil
		},
	})
	duro.RegisterOrchestration(reg, "Checkout", func(ctx *duro.OrchestrationContext, order string) (string, error) {
		var chargeID string
		if err := ctx.CallActivity("Charge", order).Await(&chargeID); err != nil {
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

	// The first worker dies while the charge is in flight.
	first, err := duro.NewWorker(be, reg, opts)
	if err != nil {
		log.Fatal(err)
	}
	if err := first.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := client.Start(ctx, "Checkout", "order-7", duro.StartOptions{InstanceID: "checkout-7"}); err != nil {
		log.Fatal(err)
	}
	<-inFlight
	dead, kill := context.WithCancel(ctx)
	kill()
	_ = first.Stop(dead)

	// The second worker gets attempt 2 and reconciles.
	second, err := duro.NewWorker(be, reg, opts)
	if err != nil {
		log.Fatal(err)
	}
	if err := second.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer second.Stop(ctx)
	inst, err := client.Wait(ctx, "checkout-7")
	if err != nil {
		log.Fatal(err)
	}
	var out string
	if err := inst.Output(&out); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
	// Output:
	// charging order-7, attempt 1
	// reconciling order-7, attempt 2: the provider has ch_order-7
	// paid: ch_order-7
}
