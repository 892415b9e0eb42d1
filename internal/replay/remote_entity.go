package replay

import (
	"fmt"
	"slices"

	"github.com/durohq/duro/backend"
)

// Entity actions of remote code become the same messages as a Go
// orchestration's SignalEntity, CallEntity, LockEntities and
// UnlockEntities, with the same IDs, and history events that keep the
// code's request IDs. The protocol unlocks one entity per action where a
// Go orchestration unlocks a critical section at once: an unlock event
// names its entity (InstanceID), and releases only it.

// entityEffects are what one entity action sends.
type entityEffects struct {
	ev       *backend.Event
	messages []*backend.Message
	starts   []*backend.CreateInstanceParams
}

// entityAction turns the remote entity action a, with duro task ID id and
// message ID msgID, into its event and messages.
func (s *RemoteStep) entityAction(a RemoteAction, id int, msgID string) (*entityEffects, error) {
	inst := s.wi.Instance
	ref := &backend.ParentRef{InstanceID: inst.ID, ExecutionID: inst.ExecutionID, TaskID: id}
	checkEntity := func(e string) error {
		if EntityName(e) == "" {
			return fmt.Errorf("%w: action %d: %q is not an entity ID (want @name@key)", ErrRemoteAction, a.ID, e)
		}
		return nil
	}
	switch a.Kind {
	case RemoteEntitySignal, RemoteEntityCall:
		if err := checkEntity(a.InstanceID); err != nil {
			return nil, err
		}
		if a.Name == "" {
			return nil, fmt.Errorf("%w: entity action %d without an operation", ErrRemoteAction, a.ID)
		}
		typ, req := backend.EventEntitySignaled, &backend.EntityRequest{Owner: inst.ID}
		if a.Kind == RemoteEntityCall {
			typ, req.Caller = backend.EventEntityCalled, ref
		}
		m := &backend.Message{ID: msgID, InstanceID: a.InstanceID,
			Event: &backend.Event{Type: backend.EventEntityRequest, Name: a.Name, Input: a.Input, Entity: req}}
		if a.Kind == RemoteEntitySignal && a.FireAt.After(s.now) {
			m.VisibleAt = a.FireAt.UTC()
		}
		return &entityEffects{
			ev: &backend.Event{Type: typ, TaskID: id, InstanceID: a.InstanceID, Name: a.Name, Input: a.Input, Timestamp: s.now,
				Entity: &backend.EntityRequest{RequestID: a.RequestID}},
			messages: []*backend.Message{m},
			starts:   []*backend.CreateInstanceParams{EntityCreation(a.InstanceID)},
		}, nil
	case RemoteEntityLock:
		if len(a.Lock) == 0 {
			return nil, fmt.Errorf("%w: lock %d of no entities", ErrRemoteAction, a.ID)
		}
		ids := sortedUnique(a.Lock)
		fx := &entityEffects{
			ev: &backend.Event{Type: backend.EventEntityLockRequested, TaskID: id, Timestamp: s.now,
				Entity: &backend.EntityRequest{Lock: ids, RequestID: a.RequestID}},
			messages: []*backend.Message{{ID: msgID, InstanceID: ids[0],
				Event: &backend.Event{Type: backend.EventEntityRequest,
					Entity: &backend.EntityRequest{Owner: inst.ID, Caller: ref, Lock: ids}}}},
		}
		for _, e := range ids {
			if err := checkEntity(e); err != nil {
				return nil, err
			}
			fx.starts = append(fx.starts, EntityCreation(e))
		}
		return fx, nil
	case RemoteEntityUnlock:
		lock := s.lockOf(a.RequestID)
		if lock == nil {
			return nil, fmt.Errorf("%w: unlock %d of critical section %q, which history does not have", ErrRemoteAction, a.ID, a.RequestID)
		}
		ids := lock.Entity.Lock
		if !slices.Contains(ids, a.InstanceID) {
			return nil, fmt.Errorf("%w: unlock %d of %q, which critical section %q does not lock", ErrRemoteAction, a.ID, a.InstanceID, a.RequestID)
		}
		lockRef := &backend.ParentRef{InstanceID: inst.ID, ExecutionID: inst.ExecutionID, TaskID: lock.TaskID}
		return &entityEffects{
			ev: &backend.Event{Type: backend.EventEntityUnlocked, TaskID: id, InstanceID: a.InstanceID, Timestamp: s.now,
				Entity: &backend.EntityRequest{Lock: ids, Caller: lockRef, RequestID: a.RequestID}},
			messages: releaseMessages(inst.ID, lockRef, ids, msgID, a.InstanceID),
		}, nil
	}
	return nil, fmt.Errorf("%w: action %d is not an entity action", ErrRemoteAction, a.ID)
}

// lockOf returns the lock request event of the critical section the
// code named requestID.
func (s *RemoteStep) lockOf(requestID string) *backend.Event {
	for _, ev := range s.all {
		if ev.Type == backend.EventEntityLockRequested && ev.Entity != nil && requestID != "" && ev.Entity.RequestID == requestID {
			return ev
		}
	}
	return nil
}
