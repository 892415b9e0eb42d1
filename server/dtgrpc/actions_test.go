package dtgrpc_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server/dtgrpc"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

func action(id int32, a any) *dtpb.OrchestratorAction {
	out := &dtpb.OrchestratorAction{Id: id}
	switch a := a.(type) {
	case *dtpb.TerminateOrchestrationAction:
		out.OrchestratorActionType = &dtpb.OrchestratorAction_TerminateOrchestration{TerminateOrchestration: a}
	case *dtpb.CreateSubOrchestrationAction:
		out.OrchestratorActionType = &dtpb.OrchestratorAction_CreateSubOrchestration{CreateSubOrchestration: a}
	case *dtpb.CompleteOrchestrationAction:
		out.OrchestratorActionType = &dtpb.OrchestratorAction_CompleteOrchestration{CompleteOrchestration: a}
	default:
		panic("action of an unknown kind")
	}
	return out
}

// answer answers work items of the stream, steps by instance ID with
// reply's actions (empty: the code waits), until done holds.
func (f *fakeSDK) answer(b *bundle, reply func(*dtpb.OrchestratorRequest) []*dtpb.OrchestratorAction, done func() bool) {
	f.t.Helper()
	for !done() {
		wi := f.next()
		req := wi.GetOrchestratorRequest()
		if req == nil {
			f.t.Fatalf("unexpected work item %v", wi)
		}
		_, err := b.client.CompleteOrchestratorTask(b.ctx, &dtpb.OrchestratorResponse{InstanceId: req.InstanceId,
			CompletionToken: wi.CompletionToken, Actions: reply(req)})
		if err != nil {
			f.t.Fatal(err)
		}
	}
}

func statusOf(t *testing.T, b *bundle, id string) backend.Status {
	t.Helper()
	inst, err := b.be.GetInstance(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return inst.Status
}

// waitStatus waits until instance id has status want.
func waitStatus(t *testing.T, b *bundle, id string, want backend.Status) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for statusOf(t, b, id) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, not %s", id, statusOf(t, b, id), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTerminateAction: an orchestration terminates two others, one with
// its running sub-orchestration (recurse) and one without; the SDK's
// re-emission of the actions on its next replay changes nothing, and the
// termination never appears in the history the SDK replays.
func TestTerminateAction(t *testing.T) {
	t.Parallel()
	b := setup(t, dtgrpc.Options{})
	for _, id := range []string{"v1", "v2"} {
		if _, err := b.client.StartInstance(b.ctx, &dtpb.CreateInstanceRequest{InstanceId: id, Name: "Victim"}); err != nil {
			t.Fatal(err)
		}
	}
	sdk := connect(t, b)
	isRunning := func(ids ...string) func() bool {
		return func() bool {
			for _, id := range ids {
				if statusOf(t, b, id) != backend.StatusRunning {
					return false
				}
			}
			return true
		}
	}
	// Each victim starts a child that waits.
	sdk.answer(b, func(r *dtpb.OrchestratorRequest) []*dtpb.OrchestratorAction {
		if r.InstanceId == "v1" || r.InstanceId == "v2" {
			return []*dtpb.OrchestratorAction{action(1, &dtpb.CreateSubOrchestrationAction{InstanceId: r.InstanceId + "-child", Name: "Child"})}
		}
		return nil
	}, isRunning("v1", "v2", "v1-child", "v2-child"))

	if _, err := b.client.StartInstance(b.ctx, &dtpb.CreateInstanceRequest{InstanceId: "boss", Name: "Boss"}); err != nil {
		t.Fatal(err)
	}
	terminate := []*dtpb.OrchestratorAction{
		action(1, &dtpb.TerminateOrchestrationAction{InstanceId: "v1", Reason: wrapperspb.String("all of it"), Recurse: true}),
		action(2, &dtpb.TerminateOrchestrationAction{InstanceId: "v2", Reason: wrapperspb.String("just it")}),
	}
	steps := 0
	sdk.answer(b, func(r *dtpb.OrchestratorRequest) []*dtpb.OrchestratorAction {
		if r.InstanceId != "boss" {
			t.Fatalf("a step of %s: %v", r.InstanceId, r)
		}
		steps++
		if steps == 1 {
			return terminate
		}
		for _, ev := range r.PastEvents {
			if ev.GetEventSent() != nil {
				t.Errorf("the SDK replays the termination as %v", ev)
			}
		}
		return append(terminate, action(3, &dtpb.CompleteOrchestrationAction{
			OrchestrationStatus: dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_COMPLETED}))
	}, func() bool {
		if steps == 1 {
			// The server runs the victims' termination steps itself.
			waitStatus(t, b, "v1", backend.StatusTerminated)
			waitStatus(t, b, "v2", backend.StatusTerminated)
			// Wake the boss for a replay: an event.
			if _, err := b.client.RaiseEvent(b.ctx, &dtpb.RaiseEventRequest{InstanceId: "boss", Name: "again"}); err != nil {
				t.Fatal(err)
			}
			steps++
		}
		return statusOf(t, b, "boss") == backend.StatusCompleted
	})
	for id, want := range map[string]backend.Status{"v1": backend.StatusTerminated, "v1-child": backend.StatusTerminated,
		"v2": backend.StatusTerminated, "v2-child": backend.StatusRunning} {
		if got := statusOf(t, b, id); got != want {
			t.Errorf("%s is %s, want %s", id, got, want)
		}
	}
	h, err := b.be.GetHistory(b.ctx, "v2")
	if err != nil {
		t.Fatal(err)
	}
	if last := h[len(h)-1]; last.Type != backend.EventExecutionTerminated || last.Reason != "just it" {
		t.Errorf("v2's last event: %+v", last)
	}
	h, err = b.be.GetHistory(b.ctx, "boss")
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, ev := range h {
		if ev.Type == backend.EventEventSent {
			sent++
		}
	}
	if sent != 2 {
		t.Errorf("the boss's history records %d terminations, want 2: %v", sent, h)
	}
}

// TestCarryoverEvents: a continue-as-new's carried-over events reach the
// next execution first, in order, ahead of an event that arrived during
// the step that continued.
func TestCarryoverEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, dtgrpc.Options{})
	if _, err := b.client.StartInstance(b.ctx, &dtpb.CreateInstanceRequest{InstanceId: "c", Name: "Carry", Input: wrapperspb.String("0")}); err != nil {
		t.Fatal(err)
	}
	sdk := connect(t, b)
	wi := sdk.next()
	if _, err := b.client.RaiseEvent(b.ctx, &dtpb.RaiseEventRequest{InstanceId: "c", Name: "item", Input: wrapperspb.String("4")}); err != nil {
		t.Fatal(err)
	}
	var carry []*dtpb.HistoryEvent
	for _, n := range []string{"1", "2", "3"} {
		carry = append(carry, &dtpb.HistoryEvent{EventId: -1, EventType: &dtpb.HistoryEvent_EventRaised{
			EventRaised: &dtpb.EventRaisedEvent{Name: "item", Input: wrapperspb.String(n)}}})
	}
	_, err := b.client.CompleteOrchestratorTask(b.ctx, &dtpb.OrchestratorResponse{InstanceId: "c", CompletionToken: wi.CompletionToken,
		Actions: []*dtpb.OrchestratorAction{action(1, &dtpb.CompleteOrchestrationAction{
			OrchestrationStatus: dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_CONTINUED_AS_NEW, Result: wrapperspb.String("1"),
			CarryoverEvents: carry})}})
	if err != nil {
		t.Fatal(err)
	}
	next := sdk.next().GetOrchestratorRequest()
	var items []string
	started := ""
	for _, ev := range next.GetNewEvents() {
		if er := ev.GetEventRaised(); er != nil {
			items = append(items, er.GetInput().GetValue())
		}
		if es := ev.GetExecutionStarted(); es != nil {
			started = es.GetInput().GetValue()
		}
	}
	if len(next.GetPastEvents()) != 0 || started != "1" || len(items) != 4 || items[0] != "1" || items[1] != "2" || items[2] != "3" || items[3] != "4" {
		t.Fatalf("the next execution's first step: started with %q, items %v (%v)", started, items, next)
	}
}
