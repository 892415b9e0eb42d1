package dtgrpc

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

// Payloads are opaque bytes to duro and JSON text to the SDKs, so they
// travel unchanged: a missing StringValue is no payload.

func str(b []byte) *wrapperspb.StringValue {
	if b == nil {
		return nil
	}
	return wrapperspb.String(string(b))
}

func strOf(s string) *wrapperspb.StringValue {
	if s == "" {
		return nil
	}
	return wrapperspb.String(s)
}

func payload(v *wrapperspb.StringValue) []byte {
	if v == nil {
		return nil
	}
	return []byte(v.GetValue())
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func fromTS(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime().UTC()
}

var statusToPB = map[backend.Status]dtpb.OrchestrationStatus{
	backend.StatusPending:        dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_PENDING,
	backend.StatusRunning:        dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_RUNNING,
	backend.StatusSuspended:      dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_SUSPENDED,
	backend.StatusCompleted:      dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_COMPLETED,
	backend.StatusFailed:         dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_FAILED,
	backend.StatusTerminated:     dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_TERMINATED,
	backend.StatusContinuedAsNew: dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_CONTINUED_AS_NEW,
}

// statusFromPB maps the protocol's statuses to duro's; CANCELED has none.
func statusFromPB(s dtpb.OrchestrationStatus) (backend.Status, bool) {
	for k, v := range statusToPB {
		if v == s {
			return k, true
		}
	}
	return "", false
}

func failureToPB(f *backend.Failure) *dtpb.TaskFailureDetails {
	if f == nil {
		return nil
	}
	errType := f.Type
	if errType == "" {
		errType = "Error"
	}
	return &dtpb.TaskFailureDetails{
		ErrorType: errType, ErrorMessage: f.Message, StackTrace: strOf(f.Stack),
		InnerFailure: failureToPB(f.Cause), IsNonRetriable: f.NonRetryable,
	}
}

func failureFromPB(d *dtpb.TaskFailureDetails, taskName string) *backend.Failure {
	if d == nil {
		return nil
	}
	f := &backend.Failure{
		Message: d.GetErrorMessage(), Type: d.GetErrorType(), TaskName: taskName,
		NonRetryable: d.GetIsNonRetriable(), Stack: d.GetStackTrace().GetValue(),
	}
	if d.GetInnerFailure() != nil {
		f.Cause = failureFromPB(d.GetInnerFailure(), "")
	}
	return f
}

// instanceState describes an instance in the protocol's terms; with
// payloads, its input, output and custom status too.
func instanceState(inst *backend.Instance, payloads bool) *dtpb.OrchestrationState {
	st := &dtpb.OrchestrationState{
		InstanceId: inst.ID, Name: inst.Name, OrchestrationStatus: statusToPB[inst.Status],
		CreatedTimestamp: ts(inst.CreatedAt), LastUpdatedTimestamp: ts(inst.UpdatedAt),
		CompletedTimestamp: ts(inst.CompletedAt), ExecutionId: strOf(inst.ExecutionID),
		FailureDetails: failureToPB(inst.Failure),
	}
	if inst.Parent != nil {
		st.ParentInstanceId = strOf(inst.Parent.InstanceID)
	}
	if payloads {
		st.Input, st.Output, st.CustomStatus = str(inst.Input), str(inst.Output), str(inst.CustomStatus)
	}
	return st
}

// eventToPB converts a history event; ok is false for events the
// protocol has no counterpart of (duro's own records: duplicates, late
// results, rewinds' details), which the SDKs never need.
func eventToPB(inst *backend.Instance, ev *backend.Event) (*dtpb.HistoryEvent, bool) {
	h := &dtpb.HistoryEvent{EventId: -1, Timestamp: ts(ev.Timestamp)}
	id := int32(ev.TaskID)
	switch ev.Type {
	case backend.EventOrchestratorStarted:
		h.EventType = &dtpb.HistoryEvent_OrchestratorStarted{OrchestratorStarted: &dtpb.OrchestratorStartedEvent{}}
	case backend.EventExecutionStarted:
		es := &dtpb.ExecutionStartedEvent{
			Name: ev.Name, Input: str(ev.Input),
			OrchestrationInstance: &dtpb.OrchestrationInstance{InstanceId: inst.ID, ExecutionId: strOf(ev.ExecutionID)},
		}
		if es.OrchestrationInstance.ExecutionId == nil {
			es.OrchestrationInstance.ExecutionId = strOf(inst.ExecutionID)
		}
		if p := ev.Parent; p != nil {
			es.ParentInstance = &dtpb.ParentInstanceInfo{TaskScheduledId: int32(p.TaskID),
				OrchestrationInstance: &dtpb.OrchestrationInstance{InstanceId: p.InstanceID, ExecutionId: strOf(p.ExecutionID)}}
		}
		h.EventType = &dtpb.HistoryEvent_ExecutionStarted{ExecutionStarted: es}
	case backend.EventExecutionCompleted:
		h.EventType = &dtpb.HistoryEvent_ExecutionCompleted{ExecutionCompleted: &dtpb.ExecutionCompletedEvent{
			OrchestrationStatus: statusToPB[ev.Status], Result: str(ev.Result), FailureDetails: failureToPB(ev.Failure)}}
	case backend.EventExecutionTerminated:
		h.EventType = &dtpb.HistoryEvent_ExecutionTerminated{ExecutionTerminated: &dtpb.ExecutionTerminatedEvent{Input: strOf(ev.Reason)}}
	case backend.EventExecutionSuspended:
		h.EventType = &dtpb.HistoryEvent_ExecutionSuspended{ExecutionSuspended: &dtpb.ExecutionSuspendedEvent{Input: strOf(ev.Reason)}}
	case backend.EventExecutionResumed:
		h.EventType = &dtpb.HistoryEvent_ExecutionResumed{ExecutionResumed: &dtpb.ExecutionResumedEvent{Input: strOf(ev.Reason)}}
	case backend.EventExecutionRewound:
		h.EventType = &dtpb.HistoryEvent_ExecutionRewound{ExecutionRewound: &dtpb.ExecutionRewoundEvent{Reason: strOf(ev.Reason)}}
	case backend.EventTaskScheduled:
		h.EventId = id
		h.EventType = &dtpb.HistoryEvent_TaskScheduled{TaskScheduled: &dtpb.TaskScheduledEvent{
			Name: ev.Name, Input: str(ev.Input), Tags: optionTags(ev.Activity)}}
	case backend.EventTaskCompleted:
		h.EventType = &dtpb.HistoryEvent_TaskCompleted{TaskCompleted: &dtpb.TaskCompletedEvent{TaskScheduledId: id, Result: str(ev.Result)}}
	case backend.EventTaskFailed:
		h.EventType = &dtpb.HistoryEvent_TaskFailed{TaskFailed: &dtpb.TaskFailedEvent{TaskScheduledId: id, FailureDetails: failureToPB(ev.Failure)}}
	case backend.EventTimerCreated:
		h.EventId = id
		h.EventType = &dtpb.HistoryEvent_TimerCreated{TimerCreated: &dtpb.TimerCreatedEvent{FireAt: ts(ev.FireAt)}}
	case backend.EventTimerFired:
		h.EventType = &dtpb.HistoryEvent_TimerFired{TimerFired: &dtpb.TimerFiredEvent{TimerId: id, FireAt: ts(ev.FireAt)}}
	case backend.EventSubOrchestrationCreated:
		h.EventId = id
		h.EventType = &dtpb.HistoryEvent_SubOrchestrationInstanceCreated{SubOrchestrationInstanceCreated: &dtpb.SubOrchestrationInstanceCreatedEvent{
			InstanceId: ev.InstanceID, Name: ev.Name, Input: str(ev.Input)}}
	case backend.EventSubOrchestrationCompleted:
		h.EventType = &dtpb.HistoryEvent_SubOrchestrationInstanceCompleted{SubOrchestrationInstanceCompleted: &dtpb.SubOrchestrationInstanceCompletedEvent{
			TaskScheduledId: id, Result: str(ev.Result)}}
	case backend.EventSubOrchestrationFailed:
		h.EventType = &dtpb.HistoryEvent_SubOrchestrationInstanceFailed{SubOrchestrationInstanceFailed: &dtpb.SubOrchestrationInstanceFailedEvent{
			TaskScheduledId: id, FailureDetails: failureToPB(ev.Failure)}}
	case backend.EventEventRaised:
		h.EventType = &dtpb.HistoryEvent_EventRaised{EventRaised: &dtpb.EventRaisedEvent{Name: ev.Name, Input: str(ev.Input)}}
	case backend.EventEventSent:
		h.EventId = id
		h.EventType = &dtpb.HistoryEvent_EventSent{EventSent: &dtpb.EventSentEvent{InstanceId: ev.InstanceID, Name: ev.Name, Input: str(ev.Input)}}
	default:
		return nil, false
	}
	return h, true
}

// Tags of ActivityRequest and ScheduleTaskAction that duro reads or sets.
const (
	// TagAttempt carries the delivery's attempt number on an ActivityRequest.
	TagAttempt = "duro.attempt"
	// TagGuarantee "AtMostOnce" makes a scheduled activity at most once.
	TagGuarantee = "duro.guarantee"
	// TagOnDuplicate is the at-most-once policy: "Fail", "Suspend" or
	// "Reconcile".
	TagOnDuplicate = "duro.onDuplicate"
	// TagReconcile names the activity that reconciles a possible duplicate
	// under "Reconcile" (see Server.CompleteActivityTask).
	TagReconcile = "duro.reconcile"
	// TagReconcileOf, on the ActivityRequest of a reconcile activity,
	// names the activity it reconciles.
	TagReconcileOf = "duro.reconcileOf"
)

// optionTags describes recorded activity options as tags.
func optionTags(o *backend.ActivityOptions) map[string]string {
	if o == nil || !o.AtMostOnce {
		return nil
	}
	t := map[string]string{TagGuarantee: "AtMostOnce"}
	if o.OnDuplicate != "" {
		t[TagOnDuplicate] = o.OnDuplicate
	}
	if o.ReconcileActivity != "" {
		t[TagReconcile] = o.ReconcileActivity
	}
	return t
}
