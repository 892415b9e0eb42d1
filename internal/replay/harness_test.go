package replay

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

const (
	testInstance  = "inst"
	testExecution = "exec-1"
	testName      = "Orch"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// harness plays the backend for one instance: it keeps the instance and its
// history between steps, and commits each step's effects the way a backend
// would.
type harness struct {
	t       *testing.T
	inst    backend.Instance
	history []*backend.Event
	fn      Orchestrator
	now     time.Time
	attempt int64
	// runs counts the times the orchestration function was entered.
	runs atomic.Int32
}

func newHarness(t *testing.T, fn Orchestrator) *harness {
	return &harness{
		t:    t,
		inst: backend.Instance{ID: testInstance, Name: testName, ExecutionID: testExecution, Status: backend.StatusPending, CreatedAt: t0},
		fn:   fn,
		now:  t0.Add(time.Second),
	}
}

func (h *harness) lookup(name string) (Orchestrator, bool) {
	if name != testName || h.fn == nil {
		return nil, false
	}
	fn := h.fn
	return func(c *Context, in []byte) ([]byte, error) {
		h.runs.Add(1)
		return fn(c, in)
	}, true
}

// execute runs one step without committing it.
func (h *harness) execute(msgs ...*backend.Message) (*backend.CompleteOrchestrationStepParams, error) {
	h.attempt++
	inst := h.inst
	return Execute(&Params{
		WorkItem: &backend.OrchestrationWorkItem{Instance: &inst, History: slices.Clone(h.history), Messages: msgs, Attempt: h.attempt},
		Lookup:   h.lookup,
		Now:      h.now,
	})
}

// step runs one step on msgs, checks the effects every step must have, and
// commits them.
func (h *harness) step(msgs ...*backend.Message) *backend.CompleteOrchestrationStepParams {
	h.t.Helper()
	out, err := h.execute(msgs...)
	if err != nil {
		h.t.Fatalf("Execute: %v", err)
	}
	if out.InstanceID != testInstance || out.ExecutionID != testExecution || out.Attempt != h.attempt || !out.Now.Equal(h.now) {
		h.t.Fatalf("step effects for %s/%s attempt %d at %v; want %s/%s attempt %d at %v",
			out.InstanceID, out.ExecutionID, out.Attempt, out.Now, testInstance, testExecution, h.attempt, h.now)
	}
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(out.ConsumedMessageIDs, ids) {
		h.t.Fatalf("consumed %q; want every message of the step %q", out.ConsumedMessageIDs, ids)
	}
	h.history = append(h.history, out.NewEvents...)
	h.inst.Status, h.inst.Output, h.inst.Failure, h.inst.CustomStatus = out.Status, out.Output, out.Failure, out.CustomStatus
	h.now = h.now.Add(time.Second)
	return out
}

// Messages as the backend hands them to a step.

func startMsg(input string) *backend.Message {
	return &backend.Message{
		ID: backend.StartMessageID(testInstance, testExecution), InstanceID: testInstance, ExecutionID: testExecution,
		Event: &backend.Event{Type: backend.EventExecutionStarted, Name: testName, ExecutionID: testExecution, Input: payload(input), Timestamp: t0},
	}
}

// resultMsg carries the result of task taskID, with the ID the engine and
// the activity worker give it.
func resultMsg(ev *backend.Event) *backend.Message {
	return &backend.Message{
		ID:         backend.ResultMessageID(backend.TaskMessageID(testInstance, testExecution, ev.TaskID)),
		InstanceID: testInstance, ExecutionID: testExecution, Event: ev,
	}
}

func completedMsg(taskID int, result string) *backend.Message {
	return resultMsg(&backend.Event{Type: backend.EventTaskCompleted, TaskID: taskID, Result: payload(result), Attempt: 1, Timestamp: t0})
}

func failedMsg(taskID int, message string) *backend.Message {
	return resultMsg(&backend.Event{Type: backend.EventTaskFailed, TaskID: taskID, Attempt: 1, Timestamp: t0,
		Failure: &backend.Failure{Message: message, Type: "Test"}})
}

var msgSeq atomic.Int64

func eventMsg(name, data string) *backend.Message {
	return &backend.Message{
		ID: fmt.Sprintf("event/%d", msgSeq.Add(1)), InstanceID: testInstance,
		Event: &backend.Event{Type: backend.EventEventRaised, Name: name, Input: payload(data), Timestamp: t0},
	}
}

func terminateMsg(reason string) *backend.Message {
	return &backend.Message{
		ID: fmt.Sprintf("terminate/%d", msgSeq.Add(1)), InstanceID: testInstance,
		Event: &backend.Event{Type: backend.EventExecutionTerminated, Reason: reason, Timestamp: t0},
	}
}

// withID returns a copy of m with another ID, as a redelivered or duplicated
// message.
func withID(m *backend.Message, id string) *backend.Message {
	c := *m
	c.ID = id
	return &c
}

func payload(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func types(evs []*backend.Event) []backend.EventType {
	var out []backend.EventType
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func checkTypes(t *testing.T, what string, evs []*backend.Event, want ...backend.EventType) {
	t.Helper()
	if got := types(evs); !slices.Equal(got, want) {
		t.Fatalf("%s: %v; want %v", what, got, want)
	}
}

// Orchestrators used by several tests. They use the engine's Context the
// way the SDK does.

// await blocks until f is resolved and returns its outcome as the SDK would
// see it.
func await(c *Context, f *Future) ([]byte, error) {
	c.Await(f.Done)
	if err := f.Err(); err != nil {
		return nil, err
	}
	if fl := f.Failure(); fl != nil {
		return nil, fl
	}
	return f.Value(), nil
}

// chain calls the activities in turn, each with the previous result, and
// returns the last result.
func chain(names ...string) Orchestrator {
	return func(c *Context, in []byte) ([]byte, error) {
		v := in
		for _, n := range names {
			var err error
			if v, err = await(c, c.ScheduleActivity(n, v, backend.ActivityOptions{})); err != nil {
				return nil, err
			}
		}
		return v, nil
	}
}

// waitEvent waits for event "approve" with timeout and returns its data, or
// "timeout".
func waitEvent(timeout time.Duration) Orchestrator {
	return func(c *Context, _ []byte) ([]byte, error) {
		v, err := await(c, c.WaitForEvent("approve", timeout))
		if errors.Is(err, ErrTimeout) {
			return []byte(`"timeout"`), nil
		}
		return v, err
	}
}
