package dtgrpc

import (
	"errors"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/replay"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

// Entity operations of SDK orchestrations: the sendEntityMessage actions
// (signal, call, lock, unlock) become duro's entity requests, and the
// history the SDK replays shows them as the protocol's entity events,
// with the SDK's request and critical-section IDs, which it matches the
// responses with (EntityOperationCompleted/Failed, EntityLockGranted).

// entityAction converts a sendEntityMessage action.
func entityAction(ra replay.RemoteAction, m *dtpb.SendEntityMessageAction) (replay.RemoteAction, error) {
	switch t := m.GetEntityMessageType().(type) {
	case *dtpb.SendEntityMessageAction_EntityOperationSignaled:
		e := t.EntityOperationSignaled
		ra.Kind, ra.InstanceID, ra.Name, ra.Input = replay.RemoteEntitySignal, e.GetTargetInstanceId().GetValue(), e.GetOperation(), payload(e.GetInput())
		ra.RequestID, ra.FireAt = e.GetRequestId(), fromTS(e.GetScheduledTime())
	case *dtpb.SendEntityMessageAction_EntityOperationCalled:
		e := t.EntityOperationCalled
		if !fromTS(e.GetScheduledTime()).IsZero() {
			return ra, errors.New("scheduled entity calls are not supported by duro")
		}
		ra.Kind, ra.InstanceID, ra.Name, ra.Input = replay.RemoteEntityCall, e.GetTargetInstanceId().GetValue(), e.GetOperation(), payload(e.GetInput())
		ra.RequestID = e.GetRequestId()
	case *dtpb.SendEntityMessageAction_EntityLockRequested:
		e := t.EntityLockRequested
		ra.Kind, ra.Lock, ra.RequestID = replay.RemoteEntityLock, e.GetLockSet(), e.GetCriticalSectionId()
	case *dtpb.SendEntityMessageAction_EntityUnlockSent:
		e := t.EntityUnlockSent
		ra.Kind, ra.InstanceID, ra.RequestID = replay.RemoteEntityUnlock, e.GetTargetInstanceId().GetValue(), e.GetCriticalSectionId()
	default:
		return ra, errors.New("an entity message of an unknown kind")
	}
	return ra, nil
}

// historyConverter converts the events an SDK replays: entity events need
// the request IDs of the requests they answer.
type historyConverter struct {
	inst *backend.Instance
	// requests are the SDK's request IDs of calls and lock requests, by
	// the code's task ID.
	requests map[int]string
}

func newHistoryConverter(inst *backend.Instance, events ...[]*backend.Event) *historyConverter {
	hc := &historyConverter{inst: inst, requests: map[int]string{}}
	for _, list := range events {
		for _, ev := range list {
			if (ev.Type == backend.EventEntityCalled || ev.Type == backend.EventEntityLockRequested) && ev.Entity != nil {
				hc.requests[ev.TaskID] = ev.Entity.RequestID
			}
		}
	}
	return hc
}

// convert is eventToPB with entity events.
func (hc *historyConverter) convert(ev *backend.Event) (*dtpb.HistoryEvent, bool) {
	h := &dtpb.HistoryEvent{EventId: -1, Timestamp: ts(ev.Timestamp)}
	var reqID string
	if ev.Entity != nil {
		reqID = ev.Entity.RequestID
	}
	parent := strOf(hc.inst.ID)
	switch ev.Type {
	case backend.EventEntitySignaled:
		h.EventId = int32(ev.TaskID)
		h.EventType = &dtpb.HistoryEvent_EntityOperationSignaled{EntityOperationSignaled: &dtpb.EntityOperationSignaledEvent{
			RequestId: reqID, Operation: ev.Name, Input: str(ev.Input), TargetInstanceId: strOf(ev.InstanceID)}}
	case backend.EventEntityCalled:
		h.EventId = int32(ev.TaskID)
		h.EventType = &dtpb.HistoryEvent_EntityOperationCalled{EntityOperationCalled: &dtpb.EntityOperationCalledEvent{
			RequestId: reqID, Operation: ev.Name, Input: str(ev.Input), TargetInstanceId: strOf(ev.InstanceID),
			ParentInstanceId: parent, ParentExecutionId: strOf(hc.inst.ExecutionID)}}
	case backend.EventEntityLockRequested:
		h.EventId = int32(ev.TaskID)
		var lock []string
		if ev.Entity != nil {
			lock = ev.Entity.Lock
		}
		h.EventType = &dtpb.HistoryEvent_EntityLockRequested{EntityLockRequested: &dtpb.EntityLockRequestedEvent{
			CriticalSectionId: reqID, LockSet: lock, ParentInstanceId: parent}}
	case backend.EventEntityUnlocked:
		h.EventId = int32(ev.TaskID)
		h.EventType = &dtpb.HistoryEvent_EntityUnlockSent{EntityUnlockSent: &dtpb.EntityUnlockSentEvent{
			CriticalSectionId: reqID, TargetInstanceId: strOf(ev.InstanceID), ParentInstanceId: parent}}
	case backend.EventEntityResponse:
		id := hc.requests[ev.TaskID]
		if ev.Failure != nil {
			h.EventType = &dtpb.HistoryEvent_EntityOperationFailed{EntityOperationFailed: &dtpb.EntityOperationFailedEvent{
				RequestId: id, FailureDetails: failureToPB(ev.Failure)}}
		} else {
			h.EventType = &dtpb.HistoryEvent_EntityOperationCompleted{EntityOperationCompleted: &dtpb.EntityOperationCompletedEvent{
				RequestId: id, Output: str(ev.Result)}}
		}
	case backend.EventEntityLockGranted:
		if ev.Failure != nil {
			// The protocol has no refused lock (duro refuses one when the
			// entity's queue is full): the SDK keeps waiting.
			return nil, false
		}
		h.EventType = &dtpb.HistoryEvent_EntityLockGranted{EntityLockGranted: &dtpb.EntityLockGrantedEvent{
			CriticalSectionId: hc.requests[ev.TaskID]}}
	default:
		return eventToPB(hc.inst, ev)
	}
	return h, true
}
