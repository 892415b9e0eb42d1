package dtgrpc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

// The client side of the protocol: starting, querying, waiting for and
// controlling instances, mapped onto duro's Client and backend.

// Hello answers the SDKs' connection check.
func (s *Server) Hello(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func checkPayload(what string, b []byte) error {
	if len(b) > duro.DefaultMaxPayloadBytes {
		return invalid("%s is %d bytes; the limit is %d", what, len(b), duro.DefaultMaxPayloadBytes)
	}
	return nil
}

func checkInstanceID(id string) error {
	switch {
	case id == "":
		return invalid("empty instance ID")
	case len(id) > 256:
		return invalid("instance ID is %d bytes; the limit is 256", len(id))
	case strings.ContainsAny(id, "\x00\n\r"):
		return invalid("instance ID contains a control character")
	}
	return nil
}

// StartInstance creates an instance, at once or at scheduledStartTimestamp.
// An ID reuse policy that names a finished status lets the ID of a
// finished instance be reused (duro replaces only finished instances).
func (s *Server) StartInstance(ctx context.Context, r *dtpb.CreateInstanceRequest) (*dtpb.CreateInstanceResponse, error) {
	id := r.GetInstanceId()
	if id == "" {
		id = uuid.NewString()
	}
	if err := checkInstanceID(id); err != nil {
		return nil, grpcError("start instance", err)
	}
	if r.GetName() == "" {
		return nil, grpcError("start instance", invalid("empty orchestration name"))
	}
	if strings.HasPrefix(id, "@") {
		return nil, grpcError("start instance", invalid("instance ID %q: IDs starting with @ are entities'", id))
	}
	in := payload(r.GetInput())
	if err := checkPayload("input", in); err != nil {
		return nil, grpcError("start instance", err)
	}
	p := &backend.CreateInstanceParams{ID: id, Name: r.GetName(), ExecutionID: r.GetExecutionId().GetValue(),
		Input: in, StartAt: fromTS(r.GetScheduledStartTimestamp())}
	if p.ExecutionID == "" {
		p.ExecutionID = uuid.NewString()
	}
	for _, st := range r.GetOrchestrationIdReusePolicy().GetReplaceableStatus() {
		if bs, ok := statusFromPB(st); ok && bs.IsTerminal() {
			p.IfExists = backend.IfExistsReplaceFinished
		}
	}
	if err := s.be.CreateInstance(ctx, p); err != nil {
		return nil, grpcError("start instance "+id, err)
	}
	return &dtpb.CreateInstanceResponse{InstanceId: id}, nil
}

// GetInstance describes an instance; exists is false for an unknown one.
func (s *Server) GetInstance(ctx context.Context, r *dtpb.GetInstanceRequest) (*dtpb.GetInstanceResponse, error) {
	inst, err := s.be.GetInstance(ctx, r.GetInstanceId())
	if errors.Is(err, backend.ErrInstanceNotFound) {
		return &dtpb.GetInstanceResponse{}, nil
	}
	if err != nil {
		return nil, grpcError("get instance", err)
	}
	return &dtpb.GetInstanceResponse{Exists: true, OrchestrationState: instanceState(inst, r.GetGetInputsAndOutputs())}, nil
}

// WaitForInstanceStart waits until the instance is no longer Pending.
func (s *Server) WaitForInstanceStart(ctx context.Context, r *dtpb.GetInstanceRequest) (*dtpb.GetInstanceResponse, error) {
	return s.wait(ctx, r, func(st backend.Status) bool { return st != backend.StatusPending })
}

// WaitForInstanceCompletion waits until the instance has finished. On a
// store that reports finishes (backend.FinishNotifier) it returns as soon
// as the finishing step commits, looking at the instance every
// PollInterval as a fallback.
func (s *Server) WaitForInstanceCompletion(ctx context.Context, r *dtpb.GetInstanceRequest) (*dtpb.GetInstanceResponse, error) {
	if fn, ok := s.be.(backend.FinishNotifier); ok {
		if resp, watched, err := s.waitFinish(ctx, fn, r); watched {
			return resp, err
		}
	}
	return s.wait(ctx, r, backend.Status.IsTerminal)
}

// waitFinish is WaitForInstanceCompletion on a FinishNotifier: it watches
// the instance before each look, so that no finish goes unseen, and looks
// again when the watch fires or every PollInterval. watched is false if
// the store cannot watch after all (a wrapper over one that cannot).
func (s *Server) waitFinish(ctx context.Context, fn backend.FinishNotifier, r *dtpb.GetInstanceRequest) (_ *dtpb.GetInstanceResponse, watched bool, _ error) {
	id := r.GetInstanceId()
	for {
		fired, stop := fn.WatchFinish(id)
		if fired == nil {
			stop()
			return nil, false, nil
		}
		resp, done, err := s.lookFinished(ctx, r)
		if done {
			stop()
			return resp, true, err
		}
		t := time.NewTimer(s.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			stop()
			return nil, true, grpcError("wait for instance "+id, ctx.Err())
		case <-fired:
			t.Stop()
		case <-t.C:
		}
		stop()
	}
}

// lookFinished reads the instance: done is set when the wait is over (it
// finished, does not exist, or the read failed).
func (s *Server) lookFinished(ctx context.Context, r *dtpb.GetInstanceRequest) (_ *dtpb.GetInstanceResponse, done bool, _ error) {
	inst, err := s.be.GetInstance(ctx, r.GetInstanceId())
	switch {
	case errors.Is(err, backend.ErrInstanceNotFound):
		return &dtpb.GetInstanceResponse{}, true, nil
	case err != nil:
		return nil, true, grpcError("wait for instance", err)
	case inst.Status.IsTerminal():
		return &dtpb.GetInstanceResponse{Exists: true, OrchestrationState: instanceState(inst, r.GetGetInputsAndOutputs())}, true, nil
	}
	return nil, false, nil
}

// wait looks at the instance whenever the store says work moved (its
// wake-ups, when it has them) and at least every PollInterval, until done
// holds or the caller's deadline passes.
func (s *Server) wait(ctx context.Context, r *dtpb.GetInstanceRequest, done func(backend.Status) bool) (*dtpb.GetInstanceResponse, error) {
	wn, _ := s.be.(backend.WorkNotifier)
	d := 2 * time.Millisecond
	for {
		var wake <-chan struct{}
		if wn != nil {
			wake = wn.WorkAvailable()
		}
		inst, err := s.be.GetInstance(ctx, r.GetInstanceId())
		if errors.Is(err, backend.ErrInstanceNotFound) {
			return &dtpb.GetInstanceResponse{}, nil
		}
		if err != nil {
			return nil, grpcError("wait for instance", err)
		}
		if done(inst.Status) {
			return &dtpb.GetInstanceResponse{Exists: true, OrchestrationState: instanceState(inst, r.GetGetInputsAndOutputs())}, nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, grpcError("wait for instance "+r.GetInstanceId(), ctx.Err())
		case <-wake:
			// A step may have committed; look again after a moment, so a
			// burst of wake-ups costs one read.
			t.Stop()
			time.Sleep(time.Millisecond)
		case <-t.C:
		}
		if d *= 2; d > s.opts.PollInterval {
			d = s.opts.PollInterval
		}
	}
}

// RaiseEvent delivers an external event.
func (s *Server) RaiseEvent(ctx context.Context, r *dtpb.RaiseEventRequest) (*dtpb.RaiseEventResponse, error) {
	if r.GetName() == "" {
		return nil, grpcError("raise event", invalid("empty event name"))
	}
	in := payload(r.GetInput())
	if err := checkPayload("event data", in); err != nil {
		return nil, grpcError("raise event", err)
	}
	err := s.be.EnqueueMessage(ctx, &backend.Message{
		ID: "event/" + uuid.NewString(), InstanceID: r.GetInstanceId(),
		Event: &backend.Event{Type: backend.EventEventRaised, Name: r.GetName(), Input: in, Timestamp: time.Now().UTC()},
	})
	if err != nil {
		return nil, grpcError(fmt.Sprintf("raise event %q on %q", r.GetName(), r.GetInstanceId()), err)
	}
	return &dtpb.RaiseEventResponse{}, nil
}

// TerminateInstance terminates an instance and, as duro always does, its
// running sub-orchestrations; the output is recorded as the reason.
func (s *Server) TerminateInstance(ctx context.Context, r *dtpb.TerminateRequest) (*dtpb.TerminateResponse, error) {
	reason := r.GetOutput().GetValue()
	if err := s.c.Terminate(ctx, r.GetInstanceId(), reason); err != nil {
		return nil, grpcError("terminate", err)
	}
	return &dtpb.TerminateResponse{}, nil
}

// SuspendInstance suspends an instance.
func (s *Server) SuspendInstance(ctx context.Context, r *dtpb.SuspendRequest) (*dtpb.SuspendResponse, error) {
	if err := s.c.Suspend(ctx, r.GetInstanceId(), r.GetReason().GetValue()); err != nil {
		return nil, grpcError("suspend", err)
	}
	return &dtpb.SuspendResponse{}, nil
}

// ResumeInstance resumes a suspended instance. One that waits for
// decisions on possible duplicates is not resumed: FAILED_PRECONDITION
// names the tasks, to decide with duro's CLI, API or dashboard.
func (s *Server) ResumeInstance(ctx context.Context, r *dtpb.ResumeRequest) (*dtpb.ResumeResponse, error) {
	id := r.GetInstanceId()
	err := s.c.Resume(ctx, id, r.GetReason().GetValue())
	if errors.Is(err, duro.ErrDecisionRequired) {
		var names []string
		if inst, gerr := s.be.GetInstance(ctx, id); gerr == nil && inst.Suspension != nil {
			for _, pd := range inst.Suspension.Pending {
				names = append(names, fmt.Sprintf("activity %q (task %d, attempt %d)", pd.Name, pd.TaskID, pd.Attempt))
			}
		}
		return nil, status.Errorf(codes.FailedPrecondition,
			"resume %q: the instance waits for a decision on possible duplicates: %s; decide with duro decisions, the API or the dashboard",
			id, strings.Join(names, ", "))
	}
	if err != nil {
		return nil, grpcError("resume", err)
	}
	return &dtpb.ResumeResponse{}, nil
}

// RewindInstance rewinds a Failed instance.
func (s *Server) RewindInstance(ctx context.Context, r *dtpb.RewindInstanceRequest) (*dtpb.RewindInstanceResponse, error) {
	if err := s.c.Rewind(ctx, r.GetInstanceId(), r.GetReason().GetValue()); err != nil {
		return nil, grpcError("rewind", err)
	}
	return &dtpb.RewindInstanceResponse{}, nil
}

// PurgeInstances deletes finished instances: one by ID (with its
// sub-orchestrations when recursive), a batch of IDs, or those a filter
// selects.
func (s *Server) PurgeInstances(ctx context.Context, r *dtpb.PurgeInstancesRequest) (*dtpb.PurgeInstancesResponse, error) {
	switch q := r.GetRequest().(type) {
	case *dtpb.PurgeInstancesRequest_InstanceId:
		n, err := s.purge(ctx, q.InstanceId, r.GetRecursive(), 0)
		if err != nil {
			return nil, grpcError("purge "+q.InstanceId, err)
		}
		return &dtpb.PurgeInstancesResponse{DeletedInstanceCount: int32(n), IsComplete: wrapperspb.Bool(true)}, nil
	case *dtpb.PurgeInstancesRequest_InstanceBatch:
		total := 0
		for _, id := range q.InstanceBatch.GetInstanceIds() {
			n, err := s.purge(ctx, id, r.GetRecursive(), 0)
			if err != nil {
				return nil, grpcError("purge "+id, err)
			}
			total += n
		}
		return &dtpb.PurgeInstancesResponse{DeletedInstanceCount: int32(total), IsComplete: wrapperspb.Bool(true)}, nil
	case *dtpb.PurgeInstancesRequest_PurgeInstanceFilter:
		f := q.PurgeInstanceFilter
		pf := duro.PurgeFilter{CreatedFrom: fromTS(f.GetCreatedTimeFrom()), CreatedTo: fromTS(f.GetCreatedTimeTo())}
		for _, st := range f.GetRuntimeStatus() {
			bs, ok := statusFromPB(st)
			if !ok || !bs.IsTerminal() {
				return nil, grpcError("purge", invalid("only finished instances are purged, not %s", st))
			}
			pf.Statuses = append(pf.Statuses, bs)
		}
		if len(pf.Statuses) == 0 {
			pf.Statuses = []backend.Status{backend.StatusCompleted, backend.StatusFailed, backend.StatusTerminated}
		}
		n, err := s.c.PurgeWhere(ctx, pf)
		if err != nil {
			return nil, grpcError("purge", err)
		}
		return &dtpb.PurgeInstancesResponse{DeletedInstanceCount: int32(n), IsComplete: wrapperspb.Bool(true)}, nil
	}
	return nil, grpcError("purge", invalid("give an instance ID, a batch of IDs or a filter"))
}

// purge deletes a finished instance and, if recursive, the
// sub-orchestrations its history started. An unknown instance counts 0.
func (s *Server) purge(ctx context.Context, id string, recursive bool, depth int) (int, error) {
	if depth > 64 {
		return 0, invalid("sub-orchestrations nested more than 64 deep")
	}
	var children []string
	if recursive {
		h, err := s.be.GetHistory(ctx, id)
		if errors.Is(err, backend.ErrInstanceNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		for _, ev := range h {
			if ev.Type == backend.EventSubOrchestrationCreated && !slices.Contains(children, ev.InstanceID) {
				children = append(children, ev.InstanceID)
			}
		}
	}
	err := s.be.PurgeInstance(ctx, id)
	if errors.Is(err, backend.ErrInstanceNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 1
	for _, c := range children {
		m, err := s.purge(ctx, c, true, depth+1)
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// QueryInstances lists orchestration instances (not entities), newest
// first. The instance ID prefix filters each page, so a page may hold
// fewer than maxInstanceCount instances while a continuation token
// remains.
func (s *Server) QueryInstances(ctx context.Context, r *dtpb.QueryInstancesRequest) (*dtpb.QueryInstancesResponse, error) {
	q := r.GetQuery()
	p := &backend.ListInstancesParams{
		CreatedFrom: fromTS(q.GetCreatedTimeFrom()), CreatedTo: fromTS(q.GetCreatedTimeTo()),
		PageSize: int(q.GetMaxInstanceCount()), PageToken: q.GetContinuationToken().GetValue(),
	}
	if p.PageSize < 0 || p.PageSize > 1000 {
		return nil, grpcError("query instances", invalid("maxInstanceCount %d: want 0 to 1000", p.PageSize))
	}
	for _, st := range q.GetRuntimeStatus() {
		bs, ok := statusFromPB(st)
		if !ok {
			return nil, grpcError("query instances", invalid("status %s has no counterpart in duro", st))
		}
		p.Statuses = append(p.Statuses, bs)
	}
	page, err := s.be.ListInstances(ctx, p)
	if err != nil {
		return nil, grpcError("query instances", err)
	}
	out := &dtpb.QueryInstancesResponse{ContinuationToken: strOf(page.NextPageToken)}
	prefix := q.GetInstanceIdPrefix().GetValue()
	for _, inst := range page.Instances {
		if strings.HasPrefix(inst.ID, "@") || !strings.HasPrefix(inst.ID, prefix) {
			continue
		}
		out.OrchestrationState = append(out.OrchestrationState, instanceState(inst, q.GetFetchInputsAndOutputs()))
	}
	return out, nil
}

// ListInstanceIds lists the IDs of instances, newest first; completion
// times filter each page.
func (s *Server) ListInstanceIds(ctx context.Context, r *dtpb.ListInstanceIdsRequest) (*dtpb.ListInstanceIdsResponse, error) {
	p := &backend.ListInstancesParams{PageSize: int(r.GetPageSize()), PageToken: r.GetLastInstanceKey().GetValue()}
	if p.PageSize < 0 || p.PageSize > 1000 {
		return nil, grpcError("list instance IDs", invalid("pageSize %d: want 0 to 1000", p.PageSize))
	}
	for _, st := range r.GetRuntimeStatus() {
		bs, ok := statusFromPB(st)
		if !ok {
			return nil, grpcError("list instance IDs", invalid("status %s has no counterpart in duro", st))
		}
		p.Statuses = append(p.Statuses, bs)
	}
	page, err := s.be.ListInstances(ctx, p)
	if err != nil {
		return nil, grpcError("list instance IDs", err)
	}
	from, to := fromTS(r.GetCompletedTimeFrom()), fromTS(r.GetCompletedTimeTo())
	out := &dtpb.ListInstanceIdsResponse{LastInstanceKey: strOf(page.NextPageToken)}
	for _, inst := range page.Instances {
		if strings.HasPrefix(inst.ID, "@") {
			continue
		}
		if (!from.IsZero() || !to.IsZero()) && inst.CompletedAt.IsZero() {
			continue
		}
		if (!from.IsZero() && inst.CompletedAt.Before(from)) || (!to.IsZero() && !inst.CompletedAt.Before(to)) {
			continue
		}
		out.InstanceIds = append(out.InstanceIds, inst.ID)
	}
	return out, nil
}

// StreamInstanceHistory sends the current execution's history, in chunks,
// with duro's task IDs.
func (s *Server) StreamInstanceHistory(r *dtpb.StreamInstanceHistoryRequest, ss grpc.ServerStreamingServer[dtpb.HistoryChunk]) error {
	ctx := ss.Context()
	inst, err := s.be.GetInstance(ctx, r.GetInstanceId())
	if err != nil {
		return grpcError("stream history", err)
	}
	h, err := s.be.GetHistory(ctx, inst.ID)
	if err != nil {
		return grpcError("stream history", err)
	}
	chunk := &dtpb.HistoryChunk{}
	hc := newHistoryConverter(inst, h)
	for _, ev := range h {
		if pe, ok := hc.convert(ev); ok {
			chunk.Events = append(chunk.Events, pe)
		}
		if len(chunk.Events) == 200 {
			if err := ss.Send(chunk); err != nil {
				return err
			}
			chunk = &dtpb.HistoryChunk{}
		}
	}
	if len(chunk.Events) > 0 {
		return ss.Send(chunk)
	}
	return nil
}
