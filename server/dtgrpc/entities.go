package dtgrpc

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

// The client side of entities, mapped onto duro's entity client. The
// SDKs' entity IDs have duro's form, "@name@key"; note that the
// JavaScript SDK lowercases entity names.

// SignalEntity sends an operation to an entity; the request ID, when
// given, is the signal's idempotency key.
func (s *Server) SignalEntity(ctx context.Context, r *dtpb.SignalEntityRequest) (*dtpb.SignalEntityResponse, error) {
	id, err := duro.ParseEntityID(r.GetInstanceId())
	if err != nil {
		return nil, grpcError("signal entity", invalid("%v", err))
	}
	if at := fromTS(r.GetScheduledTime()); !at.IsZero() && at.After(time.Now().Add(time.Second)) {
		return nil, grpcError("signal entity", invalid("scheduled signals are not supported by duro"))
	}
	in := payload(r.GetInput())
	if err := checkPayload("signal input", in); err != nil {
		return nil, grpcError("signal entity", err)
	}
	var input any
	if in != nil {
		if !json.Valid(in) {
			return nil, grpcError("signal entity", invalid("the input is not JSON"))
		}
		input = json.RawMessage(in)
	}
	if err := s.c.SignalEntity(ctx, id, r.GetName(), input, duro.SignalOptions{IdempotencyKey: r.GetRequestId()}); err != nil {
		if !errors.Is(err, backend.ErrInstanceFinished) && !errors.Is(err, backend.ErrInstanceNotFound) && !errors.Is(err, backend.ErrClosed) &&
			!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			err = invalid("%v", err)
		}
		return nil, grpcError("signal entity", err)
	}
	return &dtpb.SignalEntityResponse{}, nil
}

func entityMetadata(st *duro.EntityState, withState bool) *dtpb.EntityMetadata {
	m := &dtpb.EntityMetadata{InstanceId: st.ID.String(), LastModifiedTime: ts(st.LastModified),
		BacklogQueueSize: int32(st.Queued), LockedBy: strOf(st.LockedBy)}
	if withState && st.Exists {
		m.SerializedState = str(st.RawState)
	}
	return m
}

// GetEntity describes an entity; exists is false for one without state.
func (s *Server) GetEntity(ctx context.Context, r *dtpb.GetEntityRequest) (*dtpb.GetEntityResponse, error) {
	id, err := duro.ParseEntityID(r.GetInstanceId())
	if err != nil {
		return nil, grpcError("get entity", invalid("%v", err))
	}
	st, err := s.c.GetEntity(ctx, id)
	if errors.Is(err, backend.ErrInstanceNotFound) {
		return &dtpb.GetEntityResponse{}, nil
	}
	if err != nil {
		return nil, grpcError("get entity", err)
	}
	return &dtpb.GetEntityResponse{Exists: st.Exists, Entity: entityMetadata(st, r.GetIncludeState())}, nil
}

// QueryEntities lists entities, newest first; the ID prefix and the
// modification times filter each page.
func (s *Server) QueryEntities(ctx context.Context, r *dtpb.QueryEntitiesRequest) (*dtpb.QueryEntitiesResponse, error) {
	q := r.GetQuery()
	eq := duro.EntityQuery{IncludeEmpty: q.GetIncludeTransient(), PageSize: int(q.GetPageSize().GetValue()),
		PageToken: q.GetContinuationToken().GetValue()}
	if eq.PageSize < 0 || eq.PageSize > 1000 {
		return nil, grpcError("query entities", invalid("pageSize %d: want 0 to 1000", eq.PageSize))
	}
	prefix := q.GetInstanceIdStartsWith().GetValue()
	if name, _, ok := strings.Cut(strings.TrimPrefix(prefix, "@"), "@"); ok && strings.HasPrefix(prefix, "@") {
		eq.Name = name
	}
	page, err := s.c.ListEntities(ctx, eq)
	if err != nil {
		return nil, grpcError("query entities", err)
	}
	from, to := fromTS(q.GetLastModifiedFrom()), fromTS(q.GetLastModifiedTo())
	out := &dtpb.QueryEntitiesResponse{ContinuationToken: strOf(page.NextPageToken)}
	for _, st := range page.Entities {
		if !strings.HasPrefix(st.ID.String(), prefix) ||
			(!from.IsZero() && st.LastModified.Before(from)) || (!to.IsZero() && !st.LastModified.Before(to)) {
			continue
		}
		out.Entities = append(out.Entities, entityMetadata(st, q.GetIncludeState()))
	}
	return out, nil
}

// CleanEntityStorage removes empty entities (duro's CleanEntities). duro
// releases an ending orchestration's locks itself, so no lock is orphaned.
func (s *Server) CleanEntityStorage(ctx context.Context, r *dtpb.CleanEntityStorageRequest) (*dtpb.CleanEntityStorageResponse, error) {
	out := &dtpb.CleanEntityStorageResponse{}
	if !r.GetRemoveEmptyEntities() {
		return out, nil
	}
	purged, _, err := s.c.CleanEntities(ctx)
	if err != nil {
		return nil, grpcError("clean entity storage", err)
	}
	out.EmptyEntitiesRemoved = int32(purged)
	return out, nil
}
