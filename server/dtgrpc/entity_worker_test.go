package dtgrpc_test

import (
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server/dtgrpc"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

func success(result string) *dtpb.OperationResult {
	return &dtpb.OperationResult{ResultType: &dtpb.OperationResult_Success{Success: &dtpb.OperationResultSuccess{
		Result: wrapperspb.String(result)}}}
}

// entityBatch returns the entity batch of a work item, failing the test
// if it is not one for entity id.
func entityBatch(t *testing.T, wi *dtpb.WorkItem, id string) *dtpb.EntityBatchRequest {
	t.Helper()
	r := wi.GetEntityRequest()
	if r == nil || r.InstanceId != id {
		t.Fatalf("want an entity batch of %s, got %v", id, wi)
	}
	return r
}

// TestEntityWorkItemsFencing runs an SDK entity through the protocol: a
// batch handed out on a stream that ends is released and delivered again,
// the first delivery's completion is refused, the second commits the
// state and the operations' signal and orchestration start; a batch the
// SDK abandons, fails as a whole or answers with the wrong number of
// results is delivered again with nothing committed.
func TestEntityWorkItemsFencing(t *testing.T) {
	t.Parallel()
	b := setup(t, dtgrpc.Options{LeaseDuration: time.Minute})
	c, ctx := b.client, b.ctx
	for _, r := range []struct{ id, in string }{{"r1", "5"}, {"r1", "5"}, {"r2", "2"}} {
		if _, err := c.SignalEntity(ctx, &dtpb.SignalEntityRequest{InstanceId: "@counter@a", Name: "add",
			Input: wrapperspb.String(r.in), RequestId: r.id}); err != nil {
			t.Fatal(err)
		}
	}
	sdk := connect(t, b)
	first := sdk.next()
	batch := entityBatch(t, first, "@counter@a")
	if len(batch.Operations) != 2 || batch.Operations[0].GetInput().GetValue() != "5" ||
		batch.Operations[1].GetInput().GetValue() != "2" || batch.EntityState != nil {
		t.Fatalf("first batch (the repeated request ID once): %v", batch)
	}
	sdk.close()
	sdk2 := connect(t, b)
	second := sdk2.next()
	if again := entityBatch(t, second, "@counter@a"); len(again.Operations) != 2 ||
		again.Operations[0].RequestId != batch.Operations[0].RequestId {
		t.Fatalf("the released batch delivered again: %v", again)
	}
	result := &dtpb.EntityBatchResult{Results: []*dtpb.OperationResult{success("5"), success("7")},
		EntityState: wrapperspb.String("7"), CompletionToken: first.CompletionToken,
		Actions: []*dtpb.OperationAction{
			{Id: 0, OperationActionType: &dtpb.OperationAction_SendSignal{SendSignal: &dtpb.SendSignalAction{
				InstanceId: "@counter@b", Name: "add", Input: wrapperspb.String("7")}}},
			{Id: 1, OperationActionType: &dtpb.OperationAction_StartNewOrchestration{StartNewOrchestration: &dtpb.StartNewOrchestrationAction{
				InstanceId: "started-by-a", Name: "Report", Input: wrapperspb.String("7")}}},
		}}
	if _, err := c.CompleteEntityTask(ctx, result); code(err) != codes.FailedPrecondition {
		t.Fatalf("the released delivery's completion: %v", err)
	}
	result.CompletionToken = second.CompletionToken
	if _, err := c.CompleteEntityTask(ctx, result); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompleteEntityTask(ctx, result); code(err) != codes.FailedPrecondition {
		t.Fatalf("a spent token: %v", err)
	}
	got, err := c.GetEntity(ctx, &dtpb.GetEntityRequest{InstanceId: "@counter@a", IncludeState: true})
	if err != nil || !got.Exists || got.Entity.GetSerializedState().GetValue() != "7" {
		t.Fatalf("entity a: %v %v", got, err)
	}
	if inst, err := b.be.GetInstance(ctx, "started-by-a"); err != nil || inst.Name != "Report" || string(inst.Input) != "7" {
		t.Fatalf("the started orchestration: %v %v", inst, err)
	}

	// The signal reaches b. Abandoned, failed as a whole, answered with
	// the wrong number of results: each time it comes back.
	bBatch := func() *dtpb.WorkItem {
		t.Helper()
		for {
			wi := sdk2.next()
			if wi.GetEntityRequest() != nil {
				entityBatch(t, wi, "@counter@b")
				return wi
			}
			// The started orchestration's step: not this test's business.
			if wi.GetOrchestratorRequest() == nil {
				t.Fatalf("unexpected work item %v", wi)
			}
		}
	}
	wi := bBatch()
	if _, err := c.AbandonTaskEntityWorkItem(ctx, &dtpb.AbandonEntityTaskRequest{CompletionToken: wi.CompletionToken}); err != nil {
		t.Fatal(err)
	}
	wi = bBatch()
	if _, err := c.CompleteEntityTask(ctx, &dtpb.EntityBatchResult{CompletionToken: wi.CompletionToken,
		FailureDetails: &dtpb.TaskFailureDetails{ErrorType: "Error", ErrorMessage: "framework trouble"}}); err != nil {
		t.Fatal(err)
	}
	wi = bBatch()
	if _, err := c.CompleteEntityTask(ctx, &dtpb.EntityBatchResult{CompletionToken: wi.CompletionToken,
		EntityState: wrapperspb.String("99")}); code(err) != codes.InvalidArgument {
		t.Fatalf("no results for one operation: %v", err)
	}
	wi = bBatch()
	if op := wi.GetEntityRequest().Operations; len(op) != 1 || op[0].Operation != "add" || op[0].GetInput().GetValue() != "7" {
		t.Fatalf("b's batch: %v", wi)
	}
	if _, err := c.CompleteEntityTask(ctx, &dtpb.EntityBatchResult{CompletionToken: wi.CompletionToken,
		Results: []*dtpb.OperationResult{success("7")}, EntityState: wrapperspb.String("7")}); err != nil {
		t.Fatal(err)
	}
	q, err := c.QueryEntities(ctx, &dtpb.QueryEntitiesRequest{Query: &dtpb.EntityQuery{
		InstanceIdStartsWith: wrapperspb.String("@counter@"), IncludeState: true}})
	if err != nil || len(q.Entities) != 2 {
		t.Fatalf("query: %v %v", q, err)
	}
	for _, e := range q.Entities {
		if e.GetSerializedState().GetValue() != "7" {
			t.Fatalf("entity %s: state %v", e.InstanceId, e.GetSerializedState())
		}
	}
}

// TestEntityWorkItemLeaseRenewed: the SDK never renews a lease; while its
// stream lives the server renews the batch's, past its first expiry, and
// the completion then commits.
func TestEntityWorkItemLeaseRenewed(t *testing.T) {
	t.Parallel()
	lease := 600 * time.Millisecond
	b := setup(t, dtgrpc.Options{LeaseDuration: lease})
	c, ctx := b.client, b.ctx
	if _, err := c.SignalEntity(ctx, &dtpb.SignalEntityRequest{InstanceId: "@counter@r", Name: "add", Input: wrapperspb.String("1")}); err != nil {
		t.Fatal(err)
	}
	sdk := connect(t, b)
	wi := sdk.next()
	entityBatch(t, wi, "@counter@r")
	ir := b.be.(backend.InFlightReader)
	start, err := ir.InFlight(ctx, "@counter@r")
	if err != nil || start.Step.Owner == "" {
		t.Fatalf("in flight: %+v %v", start, err)
	}
	// Wait, by the store's clock, until the first lease would have lapsed
	// twice over; the lease must still be held, and later.
	deadline := time.Now().Add(20 * time.Second)
	for {
		f, err := ir.InFlight(ctx, "@counter@r")
		if err != nil {
			t.Fatal(err)
		}
		if f.Step.Owner == "" || !f.Step.ExpiresAt.After(f.Now) {
			t.Fatalf("the batch's lease lapsed while its stream lived: %+v", f.Step)
		}
		if f.Now.After(start.Step.ExpiresAt.Add(lease)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the store's clock did not pass the lease")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.CompleteEntityTask(ctx, &dtpb.EntityBatchResult{CompletionToken: wi.CompletionToken,
		Results: []*dtpb.OperationResult{success("1")}, EntityState: wrapperspb.String("1")}); err != nil {
		t.Fatal(err)
	}
}

// TestEntityInterop: an SDK orchestration calls a Go worker's entity, and
// a Go orchestration calls an SDK-run entity, on one store.
func TestEntityInterop(t *testing.T) {
	t.Parallel()
	b := setup(t, dtgrpc.Options{})
	c, ctx := b.client, b.ctx
	reg := duro.NewRegistry()
	duro.RegisterEntityOperation(reg, "gocounter", "add", func(_ duro.EntityContext, s *int, n int) (int, error) {
		*s += n
		return *s, nil
	})
	duro.RegisterOrchestration(reg, "GoCaller", func(ctx *duro.OrchestrationContext, _ any) (int, error) {
		var n int
		err := ctx.CallEntity(duro.EntityID{Name: "sdkcounter", Key: "x"}, "add", 4).Await(&n)
		return n, err
	})
	// The Go worker hands back what it lacks (the SDK's orchestration and
	// entity) until the SDK stream claims it; a high poison limit keeps
	// those hand-backs from suspending anything.
	w, err := duro.NewWorker(b.be, reg, &duro.WorkerOptions{PollInterval: 20 * time.Millisecond, MaxStepDeliveries: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(ctx) })
	sdk := connect(t, b, &dtpb.GetWorkItemsRequest{WorkItemFilters: &dtpb.WorkItemFilters{
		Orchestrations: []*dtpb.OrchestrationFilter{{Name: "SdkCaller"}}, Entities: []*dtpb.EntityFilter{{Name: "sdkcounter"}}}})

	if _, err := c.StartInstance(ctx, &dtpb.CreateInstanceRequest{InstanceId: "sdk-caller", Name: "SdkCaller"}); err != nil {
		t.Fatal(err)
	}
	goID, err := duro.NewClient(b.be, nil).Start(ctx, "GoCaller", nil, duro.StartOptions{InstanceID: "go-caller"})
	if err != nil {
		t.Fatal(err)
	}
	callGo := &dtpb.OrchestratorAction{Id: 1, OrchestratorActionType: &dtpb.OrchestratorAction_SendEntityMessage{
		SendEntityMessage: &dtpb.SendEntityMessageAction{EntityMessageType: &dtpb.SendEntityMessageAction_EntityOperationCalled{
			EntityOperationCalled: &dtpb.EntityOperationCalledEvent{RequestId: "req-1", Operation: "add",
				Input: wrapperspb.String("3"), TargetInstanceId: wrapperspb.String("@gocounter@y")}}}}}
	sdkDone, goDone := false, false
	for !sdkDone || !goDone {
		wi := sdk.next()
		switch {
		case wi.GetEntityRequest() != nil:
			r := entityBatch(t, wi, "@sdkcounter@x")
			if len(r.Operations) != 1 || r.Operations[0].Operation != "add" || r.Operations[0].GetInput().GetValue() != "4" {
				t.Fatalf("the Go orchestration's call: %v", r)
			}
			if _, err := c.CompleteEntityTask(ctx, &dtpb.EntityBatchResult{CompletionToken: wi.CompletionToken,
				Results: []*dtpb.OperationResult{success("4")}, EntityState: wrapperspb.String("4")}); err != nil {
				t.Fatal(err)
			}
			inst, err := duro.NewClient(b.be, nil).Wait(ctx, goID)
			if err != nil || inst.Status != duro.StatusCompleted || string(inst.RawOutput) != "4" {
				t.Fatalf("the Go orchestration: %+v %v", inst, err)
			}
			goDone = true
		case wi.GetOrchestratorRequest() != nil:
			r := wi.GetOrchestratorRequest()
			if r.InstanceId != "sdk-caller" {
				t.Fatalf("a step of %s on the SDK's stream", r.InstanceId)
			}
			var resp *dtpb.EntityOperationCompletedEvent
			for _, ev := range r.NewEvents {
				if e := ev.GetEntityOperationCompleted(); e != nil {
					resp = e
				}
			}
			actions := []*dtpb.OrchestratorAction{callGo}
			if resp != nil {
				if len(r.PastEvents) < 3 || r.PastEvents[2].GetEntityOperationCalled().GetRequestId() != "req-1" || r.PastEvents[2].EventId != 1 {
					t.Fatalf("the call in the SDK's history: %v", r.PastEvents)
				}
				if resp.RequestId != "req-1" || resp.GetOutput().GetValue() != "3" {
					t.Fatalf("the Go entity's response: %v", resp)
				}
				actions = append(actions, &dtpb.OrchestratorAction{Id: 2, OrchestratorActionType: &dtpb.OrchestratorAction_CompleteOrchestration{
					CompleteOrchestration: &dtpb.CompleteOrchestrationAction{
						OrchestrationStatus: dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_COMPLETED, Result: resp.GetOutput()}}})
				sdkDone = true
			}
			if _, err := c.CompleteOrchestratorTask(ctx, &dtpb.OrchestratorResponse{InstanceId: r.InstanceId,
				CompletionToken: wi.CompletionToken, Actions: actions}); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected work item %v", wi)
		}
	}
	st, err := duro.NewClient(b.be, nil).GetEntity(ctx, duro.EntityID{Name: "gocounter", Key: "y"})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := json.Unmarshal(st.RawState, &n); err != nil || n != 3 {
		t.Fatalf("the Go entity's state: %s (%v)", st.RawState, err)
	}
}
