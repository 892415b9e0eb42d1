package dtgrpc_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server/dtgrpc"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

func TestRestartInstance(t *testing.T) {
	t.Parallel()
	b := setup(t, dtgrpc.Options{})
	c, ctx := b.client, b.ctx
	if _, err := c.RestartInstance(ctx, &dtpb.RestartInstanceRequest{InstanceId: "nobody"}); code(err) != codes.NotFound {
		t.Fatalf("restart an unknown instance: %v", err)
	}
	if _, err := c.RestartInstance(ctx, &dtpb.RestartInstanceRequest{InstanceId: "@counter@a"}); code(err) != codes.InvalidArgument {
		t.Fatalf("restart an entity: %v", err)
	}
	if _, err := c.StartInstance(ctx, &dtpb.CreateInstanceRequest{InstanceId: "r", Name: "Seq", Input: wrapperspb.String(`{"n":7}`)}); err != nil {
		t.Fatal(err)
	}
	// A live instance does not restart under its own ID.
	if _, err := c.RestartInstance(ctx, &dtpb.RestartInstanceRequest{InstanceId: "r"}); code(err) != codes.FailedPrecondition {
		t.Fatalf("restart a live instance under its ID: %v", err)
	}
	// Under a new ID it does, and the old one is left alone.
	got, err := c.RestartInstance(ctx, &dtpb.RestartInstanceRequest{InstanceId: "r", RestartWithNewInstanceId: true})
	if err != nil || got.InstanceId == "" || got.InstanceId == "r" {
		t.Fatalf("restart with a new ID: %v %v", got, err)
	}
	twin, err := b.be.GetInstance(ctx, got.InstanceId)
	if err != nil || twin.Name != "Seq" || string(twin.Input) != `{"n":7}` || twin.Status != backend.StatusPending || twin.Parent != nil {
		t.Fatalf("the new instance: %+v %v", twin, err)
	}
	old, err := b.be.GetInstance(ctx, "r")
	if err != nil || old.Status != backend.StatusPending {
		t.Fatalf("the old instance: %+v %v", old, err)
	}
	// Finished, it restarts under its own ID: a new execution, its input,
	// a fresh history.
	if _, err := c.TerminateInstance(ctx, &dtpb.TerminateRequest{InstanceId: "r", Output: wrapperspb.String("stop")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitForInstanceCompletion(ctx, &dtpb.GetInstanceRequest{InstanceId: "r"}); err != nil {
		t.Fatal(err)
	}
	got, err = c.RestartInstance(ctx, &dtpb.RestartInstanceRequest{InstanceId: "r"})
	if err != nil || got.InstanceId != "r" {
		t.Fatalf("restart a finished instance: %v %v", got, err)
	}
	again, err := b.be.GetInstance(ctx, "r")
	if err != nil || again.Status != backend.StatusPending || again.ExecutionID == old.ExecutionID ||
		string(again.Input) != `{"n":7}` || again.Name != "Seq" {
		t.Fatalf("after the restart: %+v %v", again, err)
	}
	h, err := b.be.GetHistory(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range h {
		if ev.Type == backend.EventExecutionTerminated {
			t.Fatalf("the restarted instance kept the old history: %v", h)
		}
	}
}
