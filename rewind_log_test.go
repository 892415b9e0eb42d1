package duro_test

import (
	"context"
	"errors"
	"github.com/durohq/duro/internal/syncbuf"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/memory"
)

// TestRewoundActivityLog: the delivery of an activity a rewind schedules
// again is logged as run again (rewind or retry decision), not as a redelivery whose
// previous delivery was at the zero time.
func TestRewoundActivityLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	be, err := memory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	var fail atomic.Bool
	fail.Store(true)
	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "Mail", func(duro.ActivityContext, string) (string, error) {
		if fail.Load() {
			return "", errors.New("mail server down")
		}
		return "sent", nil
	})
	duro.RegisterOrchestration(reg, "Notify", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
		var out string
		err := ctx.CallActivity("Mail", "x").Await(&out)
		return out, err
	})
	var logs syncbuf.Buffer
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{PollInterval: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	c := duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 5 * time.Millisecond})
	if _, err := c.Start(ctx, "Notify", nil, duro.StartOptions{InstanceID: "n"}); err != nil {
		t.Fatal(err)
	}
	if inst, err := c.Wait(ctx, "n"); err != nil || inst.Status != duro.StatusFailed {
		t.Fatalf("n: %v %+v", err, inst)
	}
	fail.Store(false)
	if err := c.Rewind(ctx, "n", "mail server is back"); err != nil {
		t.Fatal(err)
	}
	if inst, err := c.Wait(ctx, "n"); err != nil || inst.Status != duro.StatusCompleted {
		t.Fatalf("n after the rewind: %v %+v", err, inst)
	}
	out := logs.String()
	if strings.Contains(out, "previous_delivery=0001-01-01") || !strings.Contains(out, "activity runs again (rewind or retry decision)") {
		t.Fatalf("log:\n%s", out)
	}
}
