package durotest_test

import (
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/durotest"
)

func TestThirtyDayTimer(t *testing.T) {
	env := durotest.New(t)
	duro.RegisterOrchestration(env.Registry(), "Wait30", func(ctx *duro.OrchestrationContext, _ struct{}) (time.Time, error) {
		if err := ctx.Sleep(30 * 24 * time.Hour); err != nil {
			return time.Time{}, err
		}
		return ctx.Now(), nil
	})
	start := env.Now()
	began := time.Now()
	inst := env.Run("Wait30", struct{}{})
	t.Logf("a 30-day timer took %v of real time", time.Since(began))
	if inst.Status != duro.StatusCompleted {
		t.Fatalf("status %s: %v", inst.Status, inst.Err())
	}
	var at time.Time
	if err := inst.Output(&at); err != nil {
		t.Fatal(err)
	}
	if got := at.Sub(start); got != 30*24*time.Hour {
		t.Fatalf("the orchestration woke %v after its start; want 720h", got)
	}
	t.Log(env.HistoryText(inst.ID))
}
