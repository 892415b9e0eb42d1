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

// This example changes an orchestration while instances of it run. The
// first version of "Order" waits for "Pay", charges, waits for "Approve"
// and ships; the change adds a fraud check after the charge. The
// histories in testdata/versioning were recorded with the first version
// (`duro history export --dir` writes such files from a store): one
// instance waits for payment, one was charged and waits for approval, one
// has completed.
//
// Behind ctx.Patched the change replays every recorded history — the
// instances that were charged keep the path without the check — and new
// instances take the new path. The same change without Patched does not
// replay the instances that were charged: ReplayHistoryDir, run in CI
// before the deployment, says so.
func ExampleOrchestrationContext_Patched() {
	order := func(patch bool) func(ctx *duro.OrchestrationContext, id string) ([]string, error) {
		return func(ctx *duro.OrchestrationContext, id string) ([]string, error) {
			var did []string
			call := func(activity string) error {
				var s string
				err := ctx.CallActivity(activity, id).Await(&s)
				did = append(did, s)
				return err
			}
			if err := ctx.WaitForEvent("Pay", -1).Await(nil); err != nil {
				return nil, err
			}
			if err := call("Charge"); err != nil {
				return nil, err
			}
			if !patch || ctx.Patched("fraud-check") {
				if err := call("FraudCheck"); err != nil {
					return nil, err
				}
			}
			if err := ctx.WaitForEvent("Approve", -1).Await(nil); err != nil {
				return nil, err
			}
			return did, call("Ship")
		}
	}
	registry := func(patch bool) *duro.Registry {
		reg := duro.NewRegistry()
		for _, name := range []string{"Charge", "FraudCheck", "Ship"} {
			duro.RegisterActivity(reg, name, func(ctx duro.ActivityContext, id string) (string, error) {
				return name + " " + id, nil
			})
		}
		duro.RegisterOrchestration(reg, "Order", order(patch))
		return reg
	}

	err := duro.ReplayHistoryDir(registry(true), "testdata/versioning")
	fmt.Println("with Patched, the recorded histories replay:", err == nil)
	err = duro.ReplayHistoryDir(registry(false), "testdata/versioning")
	fmt.Println("without, they do not:", errors.Is(err, duro.ErrNonDeterminism))

	// A new instance, on the patched code, takes the new path.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	be, err := memory.Open(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer be.Close()
	w, err := duro.NewWorker(be, registry(true), &duro.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer w.Stop(ctx)
	client := duro.NewClient(be, nil)
	if _, err := client.Start(ctx, "Order", "o-1", duro.StartOptions{InstanceID: "o-1"}); err != nil {
		log.Fatal(err)
	}
	for _, ev := range []string{"Pay", "Approve"} {
		if err := client.RaiseEvent(ctx, "o-1", ev, nil); err != nil {
			log.Fatal(err)
		}
	}
	inst, err := client.Wait(ctx, "o-1")
	if err != nil {
		log.Fatal(err)
	}
	var did []string
	if err := inst.Output(&did); err != nil {
		log.Fatal(err)
	}
	fmt.Println("a new order:", did)
	// Output:
	// with Patched, the recorded histories replay: true
	// without, they do not: true
	// a new order: [Charge o-1 FraudCheck o-1 Ship o-1]
}
