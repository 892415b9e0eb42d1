package dtgrpc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/remoteentity"
	"github.com/durohq/duro/internal/replay"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

// Entity work items: an SDK that registers entities gets their batches
// as EntityBatchRequests. duro's entity engine (internal/remoteentity)
// applies locks, releases, queues and the window of processed request
// IDs before the batch is sent, so the SDK sees only the operations to
// run; its EntityBatchResult becomes the batch's one fenced commit: the
// new state, the callers' responses and the operations' signals and
// starts.

// setEntityLimits reads the stream's entity limit and filter: with work
// item filters that name anything, only the entities they name (none if
// they name none); without, every entity.
func (ws *workStream) setEntityLimits(r *dtpb.GetWorkItemsRequest) {
	ws.maxEnts = int(r.GetMaxConcurrentEntityWorkItems())
	if ws.maxEnts <= 0 {
		ws.maxEnts = 10
	}
	f := r.GetWorkItemFilters()
	if f == nil || len(f.GetOrchestrations())+len(f.GetActivities())+len(f.GetEntities()) == 0 {
		return
	}
	ws.entNames = map[string]bool{}
	for _, e := range f.GetEntities() {
		ws.entNames[e.GetName()] = true
	}
}

// heldEntities counts the stream's entity batches.
func (ws *workStream) heldEntities() int {
	n := 0
	for _, it := range ws.mine() {
		if it.kind == kindEntity {
			n++
		}
	}
	return n
}

// handBack releases a claimed step the stream does not run.
func (ws *workStream) handBack(ctx context.Context, wi *backend.OrchestrationWorkItem, after time.Duration) {
	err := ws.s.be.AbandonOrchestrationStep(context.WithoutCancel(ctx), &backend.AbandonParams{ID: wi.Instance.ID,
		Attempt: wi.Attempt, ExecutionID: wi.Instance.ExecutionID, RetryAfter: after})
	if err != nil && ctx.Err() == nil {
		ws.s.log.Warn("duro: hand back step", "instance", wi.Instance.ID, "err", err)
	}
}

// handleEntity prepares a claimed entity batch and sends its operations
// to the SDK; a batch with none (only locks, releases, duplicates) is
// committed at once.
func (ws *workStream) handleEntity(ctx context.Context, ss grpc.ServerStreamingServer[dtpb.WorkItem], wi *backend.OrchestrationWorkItem) error {
	s := ws.s
	inst := wi.Instance
	name := replay.EntityName(inst.ID)
	if ws.entNames != nil && !ws.entNames[name] {
		ws.handBack(ctx, wi, 4*s.opts.PollInterval)
		return nil
	}
	if wi.Deliveries > 1 {
		// Handed back by workers without the entity, or failed by the SDK
		// as a whole (a framework error): not poisoned here, since other
		// streams' hand-backs count too.
		s.log.Debug("duro: entity batch delivered again", "entity", inst.ID, "deliveries", wi.Deliveries)
	}
	batch, err := remoteentity.Prepare(ctx, s.be, wi, remoteentity.Options{Logger: s.log})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("duro: prepare entity batch; handing it back", "entity", inst.ID, "err", err)
		}
		ws.handBack(ctx, wi, 4*s.opts.PollInterval)
		return nil
	}
	ops := batch.Operations()
	if len(ops) == 0 {
		p, err := batch.Finish(&remoteentity.Result{})
		if err == nil {
			err = s.be.CompleteOrchestrationStep(ctx, p)
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("duro: commit entity batch", "entity", inst.ID, "err", err)
		}
		return nil
	}
	req := &dtpb.EntityBatchRequest{InstanceId: inst.ID}
	if state, ok := batch.State(); ok {
		req.EntityState = str(state)
	}
	for _, op := range ops {
		req.Operations = append(req.Operations, &dtpb.OperationRequest{Operation: op.Name, RequestId: op.RequestID, Input: str(op.Input)})
	}
	it := &item{token: newToken(kindEntity, inst.ID, wi.Attempt), kind: kindEntity, ws: ws, wi: wi, batch: batch, sent: true}
	s.put(it)
	return ss.Send(&dtpb.WorkItem{Request: &dtpb.WorkItem_EntityRequest{EntityRequest: req}, CompletionToken: it.token})
}

// CompleteEntityTask commits an entity batch's outcome, fenced by the
// delivery: a stale completion gets FAILED_PRECONDITION. A result that
// fails the batch as a whole hands the batch back, as the SDKs expect.
func (s *Server) CompleteEntityTask(ctx context.Context, r *dtpb.EntityBatchResult) (*dtpb.CompleteTaskResponse, error) {
	it, err := s.takeEntity("complete entity batch", r.GetCompletionToken())
	if err != nil {
		return nil, err
	}
	defer it.ws.signalFreed()
	inst := it.wi.Instance
	if fd := r.GetFailureDetails(); fd != nil {
		s.log.Warn("duro: the SDK failed an entity batch; handing it back", "entity", inst.ID, "err", fd.GetErrorMessage())
		if err := s.abandonEntity(ctx, it); err != nil {
			return nil, grpcError("abandon entity batch", err)
		}
		return &dtpb.CompleteTaskResponse{}, nil
	}
	res, err := entityResult(r, it.batch.Operations())
	var p *backend.CompleteOrchestrationStepParams
	if err == nil {
		p, err = it.batch.Finish(res)
	}
	if err != nil {
		// Nothing is committed; the batch runs again.
		if aerr := s.abandonEntity(ctx, it); aerr != nil {
			s.log.Warn("duro: hand back entity batch", "entity", inst.ID, "err", aerr)
		}
		return nil, grpcError("complete entity batch", invalid("%v", err))
	}
	if err := s.be.CompleteOrchestrationStep(ctx, p); err != nil {
		if errors.Is(err, backend.ErrLeaseLost) {
			return nil, status.Errorf(codes.FailedPrecondition, "complete entity batch: stale delivery: %v", err)
		}
		return nil, grpcError("complete entity batch", err)
	}
	return &dtpb.CompleteTaskResponse{}, nil
}

// entityResult converts an EntityBatchResult.
func entityResult(r *dtpb.EntityBatchResult, ops []remoteentity.Operation) (*remoteentity.Result, error) {
	if len(r.GetResults()) != len(ops) {
		return nil, fmt.Errorf("%d results for a batch of %d operations", len(r.GetResults()), len(ops))
	}
	res := &remoteentity.Result{}
	if st := r.GetEntityState(); st != nil {
		res.State, res.Exists = payload(st), true
		if err := checkPayload("entity state", res.State); err != nil {
			return nil, err
		}
	}
	for i, or := range r.GetResults() {
		var o remoteentity.Outcome
		switch t := or.GetResultType().(type) {
		case *dtpb.OperationResult_Failure:
			o.Failure = failureFromPB(t.Failure.GetFailureDetails(), ops[i].Name)
			if o.Failure == nil {
				o.Failure = &backend.Failure{Message: "entity operation failed", TaskName: ops[i].Name}
			}
		case *dtpb.OperationResult_Success:
			o.Output = payload(t.Success.GetResult())
		}
		if err := checkPayload("operation result", o.Output); err != nil {
			return nil, err
		}
		res.Outcomes = append(res.Outcomes, o)
	}
	for _, a := range r.GetActions() {
		switch t := a.GetOperationActionType().(type) {
		case *dtpb.OperationAction_SendSignal:
			sig := t.SendSignal
			res.Signals = append(res.Signals, remoteentity.Signal{Seq: int(a.GetId()), EntityID: sig.GetInstanceId(),
				Operation: sig.GetName(), Input: payload(sig.GetInput()), At: fromTS(sig.GetScheduledTime())})
		case *dtpb.OperationAction_StartNewOrchestration:
			st := t.StartNewOrchestration
			res.Starts = append(res.Starts, remoteentity.Start{Seq: int(a.GetId()), InstanceID: st.GetInstanceId(),
				Name: st.GetName(), Input: payload(st.GetInput()), At: fromTS(st.GetScheduledTime())})
		default:
			return nil, fmt.Errorf("entity action %d of an unknown kind", a.GetId())
		}
	}
	return res, nil
}

// AbandonTaskEntityWorkItem hands an entity batch back; none of its
// operations is committed, and it is delivered again.
func (s *Server) AbandonTaskEntityWorkItem(ctx context.Context, r *dtpb.AbandonEntityTaskRequest) (*dtpb.AbandonEntityTaskResponse, error) {
	it, err := s.takeEntity("abandon entity batch", r.GetCompletionToken())
	if err != nil {
		return nil, err
	}
	defer it.ws.signalFreed()
	if err := s.abandonEntity(ctx, it); err != nil {
		if errors.Is(err, backend.ErrLeaseLost) {
			return nil, status.Errorf(codes.FailedPrecondition, "abandon entity batch: stale delivery: %v", err)
		}
		return nil, grpcError("abandon entity batch", err)
	}
	return &dtpb.AbandonEntityTaskResponse{}, nil
}

// takeEntity takes the entity batch of a completion token.
func (s *Server) takeEntity(op, token string) (*item, error) {
	it := s.take(token, func(*item) bool { return false })
	if it == nil {
		return nil, errStale
	}
	if it.kind != kindEntity {
		s.put(it)
		return nil, grpcError(op, invalid("the completion token is not an entity batch's"))
	}
	return it, nil
}

// abandonEntity hands a batch back, to be delivered again shortly.
func (s *Server) abandonEntity(ctx context.Context, it *item) error {
	return s.be.AbandonOrchestrationStep(ctx, &backend.AbandonParams{ID: it.id(), Attempt: it.attempt(),
		ExecutionID: it.wi.Instance.ExecutionID, RetryAfter: s.opts.PollInterval})
}
