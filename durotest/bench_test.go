package durotest_test

import (
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/durotest"
)

// BenchmarkThirtyDayTimer measures the real time one instance with a
// 30-day durable timer takes to run in an environment, start to finish.
// Each environment runs 1000 of them (82 years of virtual time: the store
// keeps times as Unix nanoseconds, which end in 2262).
func BenchmarkThirtyDayTimer(b *testing.B) {
	var env *durotest.Env
	for i := range b.N {
		if i%1000 == 0 {
			b.StopTimer()
			if env != nil {
				env.Close()
			}
			env = durotest.New(b, durotest.WithStartTime(start))
			duro.RegisterOrchestration(env.Registry(), "Wait30", func(ctx *duro.OrchestrationContext, _ struct{}) (struct{}, error) {
				return struct{}{}, ctx.Sleep(30 * 24 * time.Hour)
			})
			b.StartTimer()
		}
		if inst := env.Run("Wait30", struct{}{}); inst.Status != duro.StatusCompleted {
			b.Fatalf("status %s", inst.Status)
		}
	}
}

// BenchmarkNewEnv measures creating and closing an environment (the
// in-memory store's schema, the worker's loops).
func BenchmarkNewEnv(b *testing.B) {
	for b.Loop() {
		env := durotest.New(b)
		env.Start("None", nil)
		env.Close()
	}
}
