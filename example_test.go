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

// This example runs the classic first orchestration: three activity calls in
// sequence, each a durable step. It uses the in-memory backend; a real
// program would open duro/backend/sqlite instead.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "SayHello", func(ctx duro.ActivityContext, city string) (string, error) {
		return "Hello, " + city + "!", nil
	})
	duro.RegisterOrchestration(reg, "HelloCities", func(ctx *duro.OrchestrationContext, cities []string) ([]string, error) {
		var greetings []string
		for _, city := range cities {
			var g string
			if err := ctx.CallActivity("SayHello", city).Await(&g); err != nil {
				return nil, err
			}
			greetings = append(greetings, g)
		}
		return greetings, nil
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
	id, err := client.Start(ctx, "HelloCities", []string{"Tokyo", "Seattle", "London"},
		duro.StartOptions{InstanceID: "hello-cities"})
	if err != nil {
		log.Fatal(err)
	}
	inst, err := client.Wait(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	var greetings []string
	if err := inst.Output(&greetings); err != nil {
		log.Fatal(err)
	}
	fmt.Println(inst.ID, inst.Status)
	for _, g := range greetings {
		fmt.Println(g)
	}
	// Output:
	// hello-cities Completed
	// Hello, Tokyo!
	// Hello, Seattle!
	// Hello, London!
}
