package dtgrpc_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
	"github.com/durohq/duro/server/dtgrpc"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type bundle struct {
	be     backend.Backend
	client dtpb.TaskHubSidecarServiceClient
	ctx    context.Context
}

// setup serves a SQLite store over gRPC on a loopback port and returns a
// Go client of the same proto.
func setup(t *testing.T, opts dtgrpc.Options) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	be, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dt.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.Client = duro.NewClient(be, nil)
	if opts.LeaseDuration == 0 {
		opts.LeaseDuration = 3 * time.Second
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 20 * time.Millisecond
	}
	s, err := dtgrpc.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := s.GRPCServer(grpc.WaitForHandlers(true))
	go func() { _ = gs.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		gs.Stop()
		_ = be.Close()
	})
	return &bundle{be: be, client: dtpb.NewTaskHubSidecarServiceClient(conn), ctx: ctx}
}

func code(err error) codes.Code { return status.Code(err) }

func TestAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, serverToken, header string
		want                      codes.Code
	}{
		{"no token, loopback caller", "", "", codes.OK},
		{"token, none sent", "s3cret", "", codes.Unauthenticated},
		{"token, wrong one", "s3cret", "Bearer nope", codes.Unauthenticated},
		{"token, not a bearer", "s3cret", "s3cret", codes.Unauthenticated},
		{"token, right one", "s3cret", "Bearer s3cret", codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, dtgrpc.Options{Token: tt.serverToken})
			ctx := b.ctx
			if tt.header != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tt.header)
			}
			_, err := b.client.Hello(ctx, &emptypb.Empty{})
			if code(err) != tt.want {
				t.Fatalf("Hello: %v, want %v", err, tt.want)
			}
			// The stream is guarded too.
			st, err := b.client.GetWorkItems(ctx, &dtpb.GetWorkItemsRequest{})
			if err == nil {
				if tt.want != codes.OK {
					_, err = st.Recv()
				} else {
					err = nil
				}
			}
			if code(err) != tt.want {
				t.Fatalf("GetWorkItems: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestClientRPCs(t *testing.T) {
	t.Parallel()
	b := setup(t, dtgrpc.Options{})
	c, ctx := b.client, b.ctx

	if _, err := c.StartInstance(ctx, &dtpb.CreateInstanceRequest{InstanceId: "x"}); code(err) != codes.InvalidArgument {
		t.Fatalf("start without a name: %v", err)
	}
	later := time.Now().Add(time.Hour)
	_, err := c.StartInstance(ctx, &dtpb.CreateInstanceRequest{InstanceId: "later", Name: "Seq",
		Input: wrapperspb.String(`{"n":1}`), ScheduledStartTimestamp: timestamppb.New(later)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartInstance(ctx, &dtpb.CreateInstanceRequest{InstanceId: "later", Name: "Seq"}); code(err) != codes.AlreadyExists {
		t.Fatalf("start twice: %v", err)
	}
	got, err := c.GetInstance(ctx, &dtpb.GetInstanceRequest{InstanceId: "later", GetInputsAndOutputs: true})
	if err != nil || !got.Exists || got.OrchestrationState.GetOrchestrationStatus() != dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_PENDING ||
		got.OrchestrationState.GetInput().GetValue() != `{"n":1}` {
		t.Fatalf("get: %v %v", got, err)
	}
	if got, err := c.GetInstance(ctx, &dtpb.GetInstanceRequest{InstanceId: "nobody"}); err != nil || got.Exists {
		t.Fatalf("get unknown: %v %v", got, err)
	}
	// A scheduled start does not start before its time.
	wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = c.WaitForInstanceStart(wctx, &dtpb.GetInstanceRequest{InstanceId: "later"})
	wcancel()
	if code(err) != codes.DeadlineExceeded {
		t.Fatalf("wait for a scheduled start: %v", err)
	}
	if _, err := c.RaiseEvent(ctx, &dtpb.RaiseEventRequest{InstanceId: "nobody", Name: "e"}); code(err) != codes.NotFound {
		t.Fatalf("raise on unknown: %v", err)
	}
	if _, err := c.RewindInstance(ctx, &dtpb.RewindInstanceRequest{InstanceId: "later"}); code(err) != codes.FailedPrecondition {
		t.Fatalf("rewind a pending instance: %v", err)
	}
	if _, err := c.PurgeInstances(ctx, &dtpb.PurgeInstancesRequest{Request: &dtpb.PurgeInstancesRequest_InstanceId{InstanceId: "later"}}); code(err) != codes.FailedPrecondition {
		t.Fatalf("purge a live instance: %v", err)
	}
	// Terminate needs no worker: the client runs the termination step.
	if _, err := c.TerminateInstance(ctx, &dtpb.TerminateRequest{InstanceId: "later", Output: wrapperspb.String("no longer needed")}); err != nil {
		t.Fatal(err)
	}
	done, err := c.WaitForInstanceCompletion(ctx, &dtpb.GetInstanceRequest{InstanceId: "later"})
	if err != nil || done.OrchestrationState.GetOrchestrationStatus() != dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_TERMINATED {
		t.Fatalf("after terminate: %v %v", done, err)
	}
	for _, id := range []string{"a-1", "a-2", "b-1"} {
		if _, err := c.StartInstance(ctx, &dtpb.CreateInstanceRequest{InstanceId: id, Name: "Other"}); err != nil {
			t.Fatal(err)
		}
	}
	q, err := c.QueryInstances(ctx, &dtpb.QueryInstancesRequest{Query: &dtpb.InstanceQuery{
		InstanceIdPrefix: wrapperspb.String("a-"),
		RuntimeStatus:    []dtpb.OrchestrationStatus{dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_PENDING}}})
	if err != nil || len(q.OrchestrationState) != 2 {
		t.Fatalf("query: %v %v", q, err)
	}
	ids, err := c.ListInstanceIds(ctx, &dtpb.ListInstanceIdsRequest{
		RuntimeStatus: []dtpb.OrchestrationStatus{dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_TERMINATED}})
	if err != nil || len(ids.InstanceIds) != 1 || ids.InstanceIds[0] != "later" {
		t.Fatalf("list IDs: %v %v", ids, err)
	}
	pr, err := c.PurgeInstances(ctx, &dtpb.PurgeInstancesRequest{Request: &dtpb.PurgeInstancesRequest_PurgeInstanceFilter{
		PurgeInstanceFilter: &dtpb.PurgeInstanceFilter{}}})
	if err != nil || pr.DeletedInstanceCount != 1 {
		t.Fatalf("purge by filter: %v %v", pr, err)
	}
	if _, err := c.PurgeInstances(ctx, &dtpb.PurgeInstancesRequest{Request: &dtpb.PurgeInstancesRequest_PurgeInstanceFilter{
		PurgeInstanceFilter: &dtpb.PurgeInstanceFilter{RuntimeStatus: []dtpb.OrchestrationStatus{
			dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_RUNNING}}}}); code(err) != codes.InvalidArgument {
		t.Fatalf("purge running instances: %v", err)
	}
}

// fakeSDK is a worker that speaks the protocol through the generated Go
// client: it receives work items, and the test answers them.
type fakeSDK struct {
	t      *testing.T
	cancel context.CancelFunc
	items  chan *dtpb.WorkItem
	done   chan struct{}
}

// connect opens a work item stream, with the request given, if any.
func connect(t *testing.T, b *bundle, r ...*dtpb.GetWorkItemsRequest) *fakeSDK {
	t.Helper()
	ctx, cancel := context.WithCancel(b.ctx)
	req := &dtpb.GetWorkItemsRequest{}
	if len(r) > 0 {
		req = r[0]
	}
	st, err := b.client.GetWorkItems(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSDK{t: t, cancel: cancel, items: make(chan *dtpb.WorkItem, 16), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			wi, err := st.Recv()
			if err != nil {
				return
			}
			f.items <- wi
		}
	}()
	t.Cleanup(f.close)
	return f
}

func (f *fakeSDK) close() {
	f.cancel()
	<-f.done
}

func (f *fakeSDK) next() *dtpb.WorkItem {
	f.t.Helper()
	select {
	case wi := <-f.items:
		return wi
	case <-time.After(20 * time.Second):
		f.t.Fatal("no work item")
		return nil
	}
}

// TestWorkerStreamReleaseAndFencing drives one orchestration through a
// Go client of the protocol: an activity handed out on a stream that ends
// is released and delivered again with duro.attempt 2, the first
// delivery's completion is then refused with FAILED_PRECONDITION, and the
// second commits.
func TestWorkerStreamReleaseAndFencing(t *testing.T) {
	t.Parallel()
	// A long lease: only the release can deliver the activity again
	// before next() gives up.
	b := setup(t, dtgrpc.Options{LeaseDuration: time.Minute})
	c, ctx := b.client, b.ctx
	if _, err := c.StartInstance(ctx, &dtpb.CreateInstanceRequest{InstanceId: "i", Name: "One", Input: wrapperspb.String(`"in"`)}); err != nil {
		t.Fatal(err)
	}
	sdk := connect(t, b)
	wi := sdk.next()
	req := wi.GetOrchestratorRequest()
	if req == nil || req.InstanceId != "i" || len(req.PastEvents) != 0 || len(req.NewEvents) != 2 ||
		req.NewEvents[1].GetExecutionStarted().GetName() != "One" {
		t.Fatalf("first step: %v", wi)
	}
	if _, err := c.CompleteOrchestratorTask(ctx, &dtpb.OrchestratorResponse{InstanceId: "i", CompletionToken: "bogus"}); code(err) != codes.FailedPrecondition {
		t.Fatalf("completion with a bogus token: %v", err)
	}
	_, err := c.CompleteOrchestratorTask(ctx, &dtpb.OrchestratorResponse{InstanceId: "i", CompletionToken: wi.CompletionToken,
		Actions: []*dtpb.OrchestratorAction{{Id: 1, OrchestratorActionType: &dtpb.OrchestratorAction_ScheduleTask{
			ScheduleTask: &dtpb.ScheduleTaskAction{Name: "Act", Input: wrapperspb.String(`"x"`)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	first := sdk.next()
	if a := first.GetActivityRequest(); a == nil || a.Name != "Act" || a.TaskId != 1 || a.Tags["duro.attempt"] != "1" {
		t.Fatalf("first delivery: %v", first)
	}
	// The worker goes away without completing: the delivery is released.
	sdk.close()
	sdk2 := connect(t, b)
	second := sdk2.next()
	if a := second.GetActivityRequest(); a == nil || a.Tags["duro.attempt"] != "2" {
		t.Fatalf("second delivery: %v", second)
	}
	_, err = c.CompleteActivityTask(ctx, &dtpb.ActivityResponse{InstanceId: "i", TaskId: 1, CompletionToken: first.CompletionToken,
		Result: wrapperspb.String(`"stale"`)})
	if code(err) != codes.FailedPrecondition {
		t.Fatalf("stale completion: %v", err)
	}
	_, err = c.CompleteActivityTask(ctx, &dtpb.ActivityResponse{InstanceId: "i", TaskId: 1, CompletionToken: second.CompletionToken,
		Result: wrapperspb.String(`"fresh"`)})
	if err != nil {
		t.Fatal(err)
	}
	wi2 := sdk2.next()
	step := wi2.GetOrchestratorRequest()
	if step == nil || len(step.PastEvents) != 3 || step.PastEvents[2].GetTaskScheduled().GetName() != "Act" ||
		step.PastEvents[2].EventId != 1 {
		t.Fatalf("second step's past: %v", step)
	}
	var result string
	for _, ev := range step.NewEvents {
		if tc := ev.GetTaskCompleted(); tc != nil && tc.TaskScheduledId == 1 {
			result = tc.GetResult().GetValue()
		}
	}
	if result != `"fresh"` {
		t.Fatalf("second step's new events: %v", step.NewEvents)
	}
	_, err = c.CompleteOrchestratorTask(ctx, &dtpb.OrchestratorResponse{InstanceId: "i", CompletionToken: wi2.CompletionToken,
		Actions: []*dtpb.OrchestratorAction{{Id: 2, OrchestratorActionType: &dtpb.OrchestratorAction_CompleteOrchestration{
			CompleteOrchestration: &dtpb.CompleteOrchestrationAction{
				OrchestrationStatus: dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_COMPLETED, Result: wrapperspb.String(result)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	// The same token again: the step has committed, the token is spent.
	_, err = c.CompleteOrchestratorTask(ctx, &dtpb.OrchestratorResponse{InstanceId: "i", CompletionToken: wi2.CompletionToken})
	if code(err) != codes.FailedPrecondition {
		t.Fatalf("a spent token: %v", err)
	}
	end, err := c.WaitForInstanceCompletion(ctx, &dtpb.GetInstanceRequest{InstanceId: "i", GetInputsAndOutputs: true})
	if err != nil || end.OrchestrationState.GetOrchestrationStatus() != dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_COMPLETED ||
		end.OrchestrationState.GetOutput().GetValue() != `"fresh"` {
		t.Fatalf("end: %v %v", end, err)
	}
	h, err := b.be.GetHistory(ctx, "i")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range h {
		if ev.Type == backend.EventTaskCompleted && ev.Attempt != 2 {
			t.Fatalf("the result recorded is attempt %d's", ev.Attempt)
		}
	}
}

func TestEntityClientRPCs(t *testing.T) {
	t.Parallel()
	b := setup(t, dtgrpc.Options{})
	c, ctx := b.client, b.ctx
	if _, err := c.SignalEntity(ctx, &dtpb.SignalEntityRequest{InstanceId: "counter", Name: "add"}); code(err) != codes.InvalidArgument {
		t.Fatalf("signal a bad ID: %v", err)
	}
	if _, err := c.SignalEntity(ctx, &dtpb.SignalEntityRequest{InstanceId: "@counter@a", Name: "add",
		Input: wrapperspb.String("{")}); code(err) != codes.InvalidArgument {
		t.Fatalf("signal with bad JSON: %v", err)
	}
	if got, err := c.GetEntity(ctx, &dtpb.GetEntityRequest{InstanceId: "@counter@a"}); err != nil || got.Exists {
		t.Fatalf("get an entity never signalled: %v %v", got, err)
	}
	if _, err := c.SignalEntity(ctx, &dtpb.SignalEntityRequest{InstanceId: "@counter@a", Name: "add",
		Input: wrapperspb.String("5"), RequestId: "r1"}); err != nil {
		t.Fatal(err)
	}
	// No worker runs entities here: the requests wait in the entity's
	// inbox; a repeated request ID is accepted.
	if _, err := c.SignalEntity(ctx, &dtpb.SignalEntityRequest{InstanceId: "@counter@a", Name: "add",
		Input: wrapperspb.String("5"), RequestId: "r1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.be.GetInstance(ctx, "@counter@a"); err != nil {
		t.Fatalf("the signal did not create the entity: %v", err)
	}
	q, err := c.QueryEntities(ctx, &dtpb.QueryEntitiesRequest{Query: &dtpb.EntityQuery{
		InstanceIdStartsWith: wrapperspb.String("@counter@"), IncludeTransient: true}})
	if err != nil || len(q.Entities) != 1 || q.Entities[0].InstanceId != "@counter@a" {
		t.Fatalf("query: %v %v", q, err)
	}
	if _, err := c.CleanEntityStorage(ctx, &dtpb.CleanEntityStorageRequest{RemoveEmptyEntities: true}); err != nil {
		t.Fatal(err)
	}
}
