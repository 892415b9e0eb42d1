package dtgrpc

import (
	"context"
	"errors"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

// RestartInstance starts an instance's orchestration again with the input
// of its current execution. Under the same ID the instance must have
// finished (Completed, Failed or Terminated): it is replaced, as a start
// with an ID reuse policy replaces it, with a new execution and a fresh
// history. With restartWithNewInstanceId a new instance, under a new ID,
// runs the same orchestration with the same input, and the old one is
// left as it is, whatever its status. The restarted instance has no
// parent. An unknown instance is NOT_FOUND; a live one restarted under its
// own ID is FAILED_PRECONDITION, which the SDKs report as "cannot be
// restarted".
func (s *Server) RestartInstance(ctx context.Context, r *dtpb.RestartInstanceRequest) (*dtpb.RestartInstanceResponse, error) {
	id := r.GetInstanceId()
	if err := checkInstanceID(id); err != nil {
		return nil, grpcError("restart instance", err)
	}
	if strings.HasPrefix(id, "@") {
		return nil, grpcError("restart instance", invalid("instance ID %q: IDs starting with @ are entities', which do not restart", id))
	}
	inst, err := s.be.GetInstance(ctx, id)
	if err != nil {
		return nil, grpcError("restart instance "+id, err)
	}
	p := &backend.CreateInstanceParams{ID: id, Name: inst.Name, ExecutionID: uuid.NewString(), Input: inst.Input,
		IfExists: backend.IfExistsReplaceFinished}
	if r.GetRestartWithNewInstanceId() {
		p.ID, p.IfExists = uuid.NewString(), backend.IfExistsFail
	} else if !inst.Status.IsTerminal() {
		return nil, status.Errorf(codes.FailedPrecondition,
			"restart instance %q: it is %s; only a finished instance restarts under its own ID (or restart it with a new instance ID)",
			id, inst.Status)
	}
	err = s.be.CreateInstance(ctx, p)
	if errors.Is(err, backend.ErrInstanceExists) && p.ID == id {
		// It was started again between the read and the replace.
		return nil, status.Errorf(codes.FailedPrecondition, "restart instance %q: it is running again: %v", id, err)
	}
	if err != nil {
		return nil, grpcError("restart instance "+id, err)
	}
	return &dtpb.RestartInstanceResponse{InstanceId: p.ID}, nil
}
