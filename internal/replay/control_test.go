package replay

import (
	"strings"
	"testing"

	"github.com/durohq/duro/backend"
)

// A resume whose decisions no longer match the pending tasks (they changed
// after the client checked) is refused visibly: the instance stays suspended
// and history records why.
func TestResumeRefusedIsRecorded(t *testing.T) {
	h := newHarness(t, chain("A"))
	h.step(startMsg(`"x"`))
	dup := &backend.Message{ID: "dup-0", InstanceID: testInstance, ExecutionID: testExecution,
		Event: &backend.Event{Type: backend.EventTaskDuplicate, TaskID: 0, Name: "A", Attempt: 2, Timestamp: t0}}
	out := h.step(dup)
	if out.Status != backend.StatusSuspended || out.Suspension == nil || len(out.Suspension.Pending) != 1 {
		t.Fatalf("after a duplicate: %s %+v", out.Status, out.Suspension)
	}
	h.inst.Suspension = out.Suspension
	resume := &backend.Message{ID: "resume-1", InstanceID: testInstance,
		Event: &backend.Event{Type: backend.EventExecutionResumed, Reason: "ok",
			Decisions: []*backend.Decision{{TaskID: 7, Action: backend.DecisionRetry}}}}
	out = h.step(resume)
	if out.Status != backend.StatusSuspended || len(out.ActivityTasks) != 0 {
		t.Fatalf("a refused resume changed the instance: %s, tasks %v", out.Status, out.ActivityTasks)
	}
	var recorded bool
	for _, ev := range out.NewEvents {
		if ev.Type == backend.EventExecutionSuspended && strings.Contains(ev.Reason, "resume refused (decision for task 7, which is not pending)") {
			recorded = true
		}
	}
	if !recorded {
		t.Fatalf("no record of the refusal in %v", types(out.NewEvents))
	}
}
