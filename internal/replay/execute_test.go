package replay

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

func TestExecuteFirstStepSchedulesActivity(t *testing.T) {
	t.Parallel()
	opts := backend.ActivityOptions{LeaseDuration: time.Minute, AtMostOnce: true, OnDuplicate: "Fail", MaxDeliveries: 3}
	h := newHarness(t, func(c *Context, in []byte) ([]byte, error) {
		return await(c, c.ScheduleActivity("Charge", in, opts))
	})
	now := h.now
	out := h.step(startMsg(`42`))

	checkTypes(t, "new events", out.NewEvents,
		backend.EventOrchestratorStarted, backend.EventExecutionStarted, backend.EventTaskScheduled)
	if out.Status != backend.StatusRunning {
		t.Errorf("status %s; want Running", out.Status)
	}
	if ts := out.NewEvents[0].Timestamp; !ts.Equal(now) {
		t.Errorf("OrchestratorStarted at %v; want the step's time %v", ts, now)
	}
	sched := out.NewEvents[2]
	if sched.TaskID != 0 || sched.Name != "Charge" || string(sched.Input) != `42` || !sched.Timestamp.Equal(now) ||
		sched.Activity == nil || *sched.Activity != opts {
		t.Errorf("TaskScheduled %+v (options %+v)", sched, sched.Activity)
	}
	want := &backend.ActivityTask{
		ID: backend.TaskMessageID(testInstance, testExecution, 0), InstanceID: testInstance, ExecutionID: testExecution,
		TaskID: 0, Name: "Charge", Input: []byte(`42`), Options: opts,
	}
	if len(out.ActivityTasks) != 1 || !reflect.DeepEqual(out.ActivityTasks[0], want) {
		t.Fatalf("activity tasks %+v; want [%+v]", out.ActivityTasks, want)
	}
	if len(out.Messages) != 0 || len(out.StartInstances) != 0 || out.ContinueAsNew != nil {
		t.Errorf("unexpected effects: messages %v, starts %v, continue %v", out.Messages, out.StartInstances, out.ContinueAsNew)
	}
}

func TestExecuteCompletionResumesCode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, chain("A", "B"))
	h.step(startMsg(`1`))

	out := h.step(completedMsg(0, `2`))
	checkTypes(t, "step 2", out.NewEvents,
		backend.EventOrchestratorStarted, backend.EventTaskCompleted, backend.EventTaskScheduled)
	if len(out.ActivityTasks) != 1 {
		t.Fatalf("step 2 activity tasks %+v; want B only", out.ActivityTasks)
	}
	if b := out.ActivityTasks[0]; b.Name != "B" || b.TaskID != 1 || string(b.Input) != `2` ||
		b.ID != backend.TaskMessageID(testInstance, testExecution, 1) {
		t.Errorf("step 2 scheduled %+v; want B (task 1) with A's result", b)
	}

	out = h.step(completedMsg(1, `3`))
	checkTypes(t, "step 3", out.NewEvents,
		backend.EventOrchestratorStarted, backend.EventTaskCompleted, backend.EventExecutionCompleted)
	if out.Status != backend.StatusCompleted || string(out.Output) != `3` || out.Failure != nil {
		t.Errorf("step 3 ended %s with output %s, failure %v; want Completed with 3", out.Status, out.Output, out.Failure)
	}
	if len(out.ActivityTasks) != 0 {
		t.Errorf("step 3 scheduled %+v again", out.ActivityTasks)
	}
	if n := h.runs.Load(); n != 3 {
		t.Errorf("the code ran %d times; want once per step (3)", n)
	}
}

func TestExecuteDropsMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// prepare runs steps after the start (A is scheduled).
		prepare func(h *harness)
		msgs    []*backend.Message
		want    []backend.EventType
		// wantB is whether B is scheduled by the step.
		wantB bool
	}{
		{
			name: "DuplicateCompletionInOneStep",
			msgs: []*backend.Message{completedMsg(0, `"first"`), withID(completedMsg(0, `"second"`), "dup")},
			want: []backend.EventType{backend.EventOrchestratorStarted, backend.EventTaskCompleted, backend.EventTaskScheduled}, wantB: true,
		},
		{
			name:    "CompletionAlreadyInHistory",
			prepare: func(h *harness) { h.step(completedMsg(0, `"first"`)) },
			msgs:    []*backend.Message{withID(completedMsg(0, `"again"`), "redelivered")},
			want:    []backend.EventType{backend.EventOrchestratorStarted},
		},
		{
			name: "OtherExecution",
			msgs: []*backend.Message{func() *backend.Message {
				m := completedMsg(0, `"stale"`)
				m.ExecutionID = "exec-0"
				return m
			}()},
			want: []backend.EventType{backend.EventOrchestratorStarted},
		},
		{
			name: "UnknownTask",
			msgs: []*backend.Message{completedMsg(7, `"who?"`)},
			want: []backend.EventType{backend.EventOrchestratorStarted},
		},
		{
			name: "WrongKindOfCompletion",
			msgs: []*backend.Message{resultMsg(&backend.Event{Type: backend.EventTimerFired, TaskID: 0, FireAt: t0})},
			want: []backend.EventType{backend.EventOrchestratorStarted},
		},
		{
			name: "NoEvent",
			msgs: []*backend.Message{{ID: "empty", InstanceID: testInstance}},
			want: []backend.EventType{backend.EventOrchestratorStarted},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, chain("A", "B"))
			h.step(startMsg(`"in"`))
			if tc.prepare != nil {
				tc.prepare(h)
			}
			out := h.step(tc.msgs...)
			checkTypes(t, "new events", out.NewEvents, tc.want...)
			if out.Status != backend.StatusRunning {
				t.Errorf("status %s; want Running", out.Status)
			}
			if got := len(out.ActivityTasks) == 1; got != tc.wantB || len(out.ActivityTasks) > 1 {
				t.Fatalf("activity tasks %+v; want B scheduled: %v", out.ActivityTasks, tc.wantB)
			}
			if tc.wantB && string(out.ActivityTasks[0].Input) != `"first"` {
				t.Errorf("B got %s; want the first result", out.ActivityTasks[0].Input)
			}
		})
	}
}

func TestExecuteBuffersEventsBeforeStart(t *testing.T) {
	t.Parallel()
	t.Run("SameStep", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, waitEvent(time.Hour))
		out := h.step(eventMsg("approve", `"yes"`), startMsg(""))
		checkTypes(t, "new events", out.NewEvents, backend.EventOrchestratorStarted, backend.EventEventRaised,
			backend.EventExecutionStarted, backend.EventExecutionCompleted)
		if out.Status != backend.StatusCompleted || string(out.Output) != `"yes"` {
			t.Fatalf("ended %s with %s; want Completed with the early event", out.Status, out.Output)
		}
	})
	t.Run("EarlierStep", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, waitEvent(time.Hour))
		out := h.step(eventMsg("approve", `"yes"`))
		checkTypes(t, "step 1", out.NewEvents, backend.EventOrchestratorStarted, backend.EventEventRaised)
		if out.Status != backend.StatusPending || h.runs.Load() != 0 {
			t.Fatalf("before its start the instance is %s and its code ran %d times; want Pending, 0", out.Status, h.runs.Load())
		}
		out = h.step(startMsg(""))
		if out.Status != backend.StatusCompleted || string(out.Output) != `"yes"` {
			t.Fatalf("ended %s with %s; want Completed with the early event", out.Status, out.Output)
		}
	})
}

func TestExecuteTerminate(t *testing.T) {
	t.Parallel()
	parentRef := &backend.ParentRef{InstanceID: "grandparent", ExecutionID: "gp-exec", TaskID: 4}
	h := newHarness(t, func(c *Context, _ []byte) ([]byte, error) {
		a := c.CallSubOrchestration("Child", "", nil)
		b := c.CallSubOrchestration("Child", "kid-b", nil)
		c.Await(func() bool { return a.Done() && b.Done() })
		return []byte(`"both done"`), nil
	})
	h.inst.Parent = parentRef

	out := h.step(startMsg(""))
	firstChild := testInstance + ":" + testExecution + ":0"
	if len(out.StartInstances) != 2 || out.StartInstances[0].ID != firstChild || out.StartInstances[1].ID != "kid-b" {
		t.Fatalf("children started: %+v; want %s and kid-b", out.StartInstances, firstChild)
	}
	if p := out.StartInstances[0].Parent; p == nil || *p != (backend.ParentRef{InstanceID: testInstance, ExecutionID: testExecution, TaskID: 0}) {
		t.Errorf("first child's parent %+v", p)
	}
	h.step(resultMsg(&backend.Event{Type: backend.EventSubOrchestrationCompleted, TaskID: 1, Result: []byte(`"b"`)}))
	runs := h.runs.Load()

	out = h.step(terminateMsg("enough"), eventMsg("approve", `"late"`))
	checkTypes(t, "new events", out.NewEvents, backend.EventOrchestratorStarted, backend.EventExecutionTerminated)
	if out.NewEvents[1].Reason != "enough" {
		t.Errorf("ExecutionTerminated reason %q", out.NewEvents[1].Reason)
	}
	if out.Status != backend.StatusTerminated || out.Output != nil || out.Failure != nil {
		t.Errorf("ended %s, output %s, failure %v; want Terminated without output", out.Status, out.Output, out.Failure)
	}
	if h.runs.Load() != runs {
		t.Error("the code ran in the terminate step")
	}
	if len(out.Messages) != 2 {
		t.Fatalf("messages %+v; want one to the running child and one to the parent", out.Messages)
	}
	toChild, toParent := out.Messages[0], out.Messages[1]
	if toChild.InstanceID != firstChild || toChild.Event.Type != backend.EventExecutionTerminated ||
		toChild.Event.Reason != "parent terminated: enough" ||
		toChild.ID != backend.ResultMessageID(backend.TaskMessageID(testInstance, testExecution, 0))+"/terminate" {
		t.Errorf("message to the child %+v (event %+v)", toChild, toChild.Event)
	}
	if toParent.InstanceID != parentRef.InstanceID || toParent.ExecutionID != parentRef.ExecutionID ||
		toParent.ID != backend.ResultMessageID(backend.TaskMessageID(parentRef.InstanceID, parentRef.ExecutionID, parentRef.TaskID)) ||
		toParent.Event.Type != backend.EventSubOrchestrationFailed || toParent.Event.TaskID != parentRef.TaskID ||
		toParent.Event.Failure == nil || toParent.Event.Failure.Type != FailureTypeTerminated ||
		toParent.Event.Failure.Message != "terminated: enough" {
		t.Errorf("message to the parent %+v (event %+v)", toParent, toParent.Event)
	}
}

func TestExecuteTerminateBeforeStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, chain("A"))
	out := h.step(startMsg(""), terminateMsg("never mind"))
	checkTypes(t, "new events", out.NewEvents, backend.EventOrchestratorStarted, backend.EventExecutionTerminated)
	if out.Status != backend.StatusTerminated || h.runs.Load() != 0 || len(out.ActivityTasks)+len(out.Messages) != 0 {
		t.Fatalf("ended %s after %d runs with %+v, %+v", out.Status, h.runs.Load(), out.ActivityTasks, out.Messages)
	}
}

func TestExecutePanicFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fn    Orchestrator
		steps [][]*backend.Message
		want  string
	}{
		{
			name:  "FirstRun",
			fn:    func(c *Context, _ []byte) ([]byte, error) { panic("boom") },
			steps: [][]*backend.Message{{startMsg("")}},
			want:  "panic: boom",
		},
		{
			name: "AfterResume",
			fn: func(c *Context, in []byte) ([]byte, error) {
				if _, err := await(c, c.ScheduleActivity("A", in, backend.ActivityOptions{})); err != nil {
					return nil, err
				}
				panic(errors.New("bad result"))
			},
			steps: [][]*backend.Message{{startMsg("")}, {completedMsg(0, `1`)}},
			want:  "panic: bad result",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.fn)
			h.inst.Parent = &backend.ParentRef{InstanceID: "parent", ExecutionID: "pe", TaskID: 2}
			var out *backend.CompleteOrchestrationStepParams
			for _, msgs := range tc.steps {
				out = h.step(msgs...)
			}
			if out.Status != backend.StatusFailed || out.Failure == nil {
				t.Fatalf("ended %s with failure %v; want Failed", out.Status, out.Failure)
			}
			f := out.Failure
			if f.Type != FailureTypePanic || f.Message != tc.want || f.TaskName != testName || !strings.Contains(f.Stack, "panic") {
				t.Errorf("failure %+v; want type Panic, message %q, task name %q and a stack", f, tc.want, testName)
			}
			last := out.NewEvents[len(out.NewEvents)-1]
			if last.Type != backend.EventExecutionCompleted || last.Status != backend.StatusFailed || last.Failure != f {
				t.Errorf("last event %+v", last)
			}
			if len(out.Messages) != 1 || out.Messages[0].Event.Type != backend.EventSubOrchestrationFailed ||
				out.Messages[0].Event.Failure.Type != FailureTypePanic {
				t.Errorf("messages %+v; want the failure sent to the parent", out.Messages)
			}
		})
	}
}

// TestExecutePanicInDeferredCall checks the step still finishes
// cleanly when the code panics while Execute unwinds it (a deferred call
// that panics).
func TestExecutePanicInDeferredCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Context, in []byte) ([]byte, error) {
		defer func() {
			if r := recover(); r != nil {
				panic(r) // re-panic from a deferred call
			}
		}()
		panic("inner")
	})
	out := h.step(startMsg(""))
	if out.Status != backend.StatusFailed || out.Failure.Type != FailureTypePanic {
		t.Fatalf("ended %s with %+v", out.Status, out.Failure)
	}
}

func TestExecuteNotRegistered(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		status  backend.Status
		msgs    []*backend.Message
		wantErr bool
		want    backend.Status
	}{
		// The step is handed back for a worker that has the code.
		{"Start", backend.StatusPending, []*backend.Message{startMsg("")}, true, ""},
		{"Event", backend.StatusRunning, []*backend.Message{eventMsg("approve", `1`)}, true, ""},
		// No code is needed to terminate, or to drop messages to a finished
		// instance.
		{"Terminate", backend.StatusRunning, []*backend.Message{terminateMsg("stop")}, false, backend.StatusTerminated},
		{"Finished", backend.StatusCompleted, []*backend.Message{eventMsg("approve", `1`)}, false, backend.StatusCompleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			h.inst.Status = tc.status
			out, err := h.execute(tc.msgs...)
			if tc.wantErr {
				if !errors.Is(err, ErrNotRegistered) || !strings.Contains(err.Error(), `"Orch"`) || out != nil {
					t.Fatalf("Execute = %+v, %v; want no effects and ErrNotRegistered naming the orchestration", out, err)
				}
				return
			}
			if err != nil || out.Status != tc.want || len(out.ConsumedMessageIDs) != len(tc.msgs) {
				t.Fatalf("Execute = %+v, %v; want %s with every message consumed", out, err, tc.want)
			}
		})
	}
}

func TestExecuteWaitForEvent(t *testing.T) {
	t.Parallel()
	const timeout = time.Minute
	// Each case runs the start step, then one step on msgs, which gets the
	// timer message of the start step (nil if there is none).
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		msgs    func(timer *backend.Message) []*backend.Message
		want    string
	}{
		{"TimeoutFires", timeout, func(tm *backend.Message) []*backend.Message { return []*backend.Message{tm} }, `"timeout"`},
		{"EventFirst", timeout, func(*backend.Message) []*backend.Message {
			return []*backend.Message{eventMsg("approve", `"yes"`)}
		}, `"yes"`},
		{"OtherEventIgnored", timeout, func(tm *backend.Message) []*backend.Message {
			return []*backend.Message{eventMsg("reject", `"no"`), tm}
		}, `"timeout"`},
		{"EventThenTimerInOneStep", timeout, func(tm *backend.Message) []*backend.Message {
			return []*backend.Message{eventMsg("approve", `"yes"`), tm}
		}, `"yes"`},
		{"TimerThenEventInOneStep", timeout, func(tm *backend.Message) []*backend.Message {
			return []*backend.Message{tm, eventMsg("approve", `"yes"`)}
		}, `"timeout"`},
		{"NoTimeout", -1, func(*backend.Message) []*backend.Message {
			return []*backend.Message{eventMsg("approve", `"yes"`)}
		}, `"yes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, waitEvent(tc.timeout))
			start := h.now
			out := h.step(startMsg(""))
			var timer *backend.Message
			if tc.timeout > 0 {
				checkTypes(t, "start step", out.NewEvents,
					backend.EventOrchestratorStarted, backend.EventExecutionStarted, backend.EventTimerCreated)
				fireAt := start.Add(tc.timeout)
				if tc := out.NewEvents[2]; tc.TaskID != 0 || !tc.FireAt.Equal(fireAt) {
					t.Fatalf("TimerCreated %+v; want task 0 firing at %v", tc, fireAt)
				}
				if len(out.Messages) != 1 {
					t.Fatalf("messages %+v; want the timer", out.Messages)
				}
				timer = out.Messages[0]
				if timer.ID != backend.ResultMessageID(backend.TaskMessageID(testInstance, testExecution, 0)) ||
					timer.InstanceID != testInstance || timer.ExecutionID != testExecution || !timer.VisibleAt.Equal(fireAt) ||
					timer.Event.Type != backend.EventTimerFired || timer.Event.TaskID != 0 {
					t.Fatalf("timer message %+v (event %+v)", timer, timer.Event)
				}
			} else {
				checkTypes(t, "start step", out.NewEvents, backend.EventOrchestratorStarted, backend.EventExecutionStarted)
				if len(out.Messages) != 0 {
					t.Fatalf("messages %+v; want none without a timeout", out.Messages)
				}
			}
			out = h.step(tc.msgs(timer)...)
			if out.Status != backend.StatusCompleted || string(out.Output) != tc.want {
				t.Fatalf("ended %s with %s; want Completed with %s", out.Status, out.Output, tc.want)
			}
			// Whatever comes later is consumed and ignored.
			late := []*backend.Message{eventMsg("approve", `"late"`)}
			if timer != nil {
				late = append(late, withID(timer, "timer-again"))
			}
			if out = h.step(late...); len(out.NewEvents) != 0 || out.Status != backend.StatusCompleted {
				t.Fatalf("after the end: events %v, status %s", types(out.NewEvents), out.Status)
			}
		})
	}
}

func TestExecuteWaitForEventZeroTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, waitEvent(0))
	out := h.step(startMsg(""))
	checkTypes(t, "new events", out.NewEvents,
		backend.EventOrchestratorStarted, backend.EventExecutionStarted, backend.EventExecutionCompleted)
	if string(out.Output) != `"timeout"` || len(out.Messages) != 0 {
		t.Fatalf("output %s, messages %+v; want an immediate timeout and no timer", out.Output, out.Messages)
	}
}

func TestExecuteNonDeterminism(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// history is recorded with chain("A") unless set.
		history []*backend.Event
		code    Orchestrator
		msgs    []*backend.Message
		want    string
		// knownBug, if set, says why the engine does not detect the case
		// yet; the case is skipped while it is not detected.
		knownBug string
	}{
		{
			name: "RenamedActivity", code: chain("B"), msgs: []*backend.Message{completedMsg(0, `1`)},
			want: `history has activity "A" (task 0) but the code scheduled activity "B" (task 0)`,
		},
		{
			name: "TimerInsteadOfActivity",
			code: func(c *Context, _ []byte) ([]byte, error) { return await(c, c.CreateTimer(c.Now().Add(time.Hour))) },
			msgs: []*backend.Message{completedMsg(0, `1`)},
			want: `history has activity "A" (task 0) but the code scheduled timer "timer" (task 0)`,
		},
		{
			name: "NothingScheduled", code: waitEvent(-1), msgs: []*backend.Message{completedMsg(0, `1`)},
			want: `history has activity "A" (task 0) but the code did not schedule it`,
		},
		{
			name: "CompletionOfAnotherKind", code: chain("A"),
			history: []*backend.Event{
				{Type: backend.EventOrchestratorStarted, Timestamp: t0},
				{Type: backend.EventExecutionStarted, Name: testName},
				{Type: backend.EventTaskScheduled, TaskID: 0, Name: "A"},
				{Type: backend.EventOrchestratorStarted, Timestamp: t0},
				{Type: backend.EventTimerFired, TaskID: 0},
			},
			want: `history has TimerFired for task 0 which the code did not schedule as a timer`,
		},
		{
			name: "CompletionWithoutScheduling", code: chain("A", "B"),
			history: []*backend.Event{
				{Type: backend.EventOrchestratorStarted, Timestamp: t0},
				{Type: backend.EventExecutionStarted, Name: testName},
				{Type: backend.EventOrchestratorStarted, Timestamp: t0},
				{Type: backend.EventTaskCompleted, TaskID: 0, Result: []byte(`1`)},
			},
			want: `task 0`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, chain("A"))
			if tc.history != nil {
				h.history = tc.history
				h.inst.Status = backend.StatusRunning
			} else {
				h.step(startMsg(""))
			}
			h.fn = tc.code
			out := h.step(tc.msgs...)
			if out.Status != backend.StatusFailed && tc.knownBug != "" {
				t.Skip("known bug: " + tc.knownBug)
			}
			if out.Status != backend.StatusFailed || out.Failure == nil || out.Failure.Type != FailureTypeNonDeterminism {
				t.Fatalf("ended %s with %+v; want a NonDeterminism failure", out.Status, out.Failure)
			}
			if !out.Failure.NonRetryable || !strings.Contains(out.Failure.Message, tc.want) {
				t.Errorf("failure %q (non-retryable %v); want it to say %q", out.Failure.Message, out.Failure.NonRetryable, tc.want)
			}
			if len(out.ActivityTasks) != 0 {
				t.Errorf("a diverged step scheduled %+v", out.ActivityTasks)
			}
		})
	}
}

// TestExecuteUnwindsBlockedCode checks that the goroutine of code still
// waiting at the end of a step exits before Execute returns, running its
// deferred calls (TestMain checks for leaks overall).
func TestExecuteUnwindsBlockedCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		wait func(c *Context)
	}{
		{"NeverTrue", func(c *Context) { c.Await(func() bool { return false }) }},
		{"Activity", func(c *Context) { _, _ = await(c, c.ScheduleActivity("A", nil, backend.ActivityOptions{})) }},
		{"EventForever", func(c *Context) { _, _ = await(c, c.WaitForEvent("never", -1)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			unwound := make(chan struct{})
			h := newHarness(t, func(c *Context, _ []byte) ([]byte, error) {
				defer close(unwound)
				tc.wait(c)
				return nil, errors.New("resumed without a reason")
			})
			for i := range 3 {
				var msgs []*backend.Message
				if i == 0 {
					msgs = append(msgs, startMsg(""))
				}
				if out := h.step(msgs...); out.Status != backend.StatusRunning {
					t.Fatalf("step %d ended %s; want Running", i, out.Status)
				}
				select {
				case <-unwound:
				default:
					t.Fatalf("step %d returned before the blocked code unwound", i)
				}
				unwound = make(chan struct{})
			}
		})
	}
}

func TestExecuteNotifiesParent(t *testing.T) {
	t.Parallel()
	parentRef := &backend.ParentRef{InstanceID: "parent", ExecutionID: "pe", TaskID: 5}
	for _, tc := range []struct {
		name string
		msg  *backend.Message
		want backend.EventType
	}{
		{"Completed", completedMsg(0, `"ok"`), backend.EventSubOrchestrationCompleted},
		{"Failed", failedMsg(0, "no"), backend.EventSubOrchestrationFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, chain("A"))
			h.inst.Parent = parentRef
			h.step(startMsg(""))
			out := h.step(tc.msg)
			if len(out.Messages) != 1 {
				t.Fatalf("messages %+v; want one to the parent", out.Messages)
			}
			m := out.Messages[0]
			if m.InstanceID != "parent" || m.ExecutionID != "pe" || m.Event.Type != tc.want || m.Event.TaskID != 5 ||
				m.ID != backend.ResultMessageID(backend.TaskMessageID("parent", "pe", 5)) {
				t.Fatalf("message %+v (event %+v)", m, m.Event)
			}
			if tc.want == backend.EventSubOrchestrationCompleted && string(m.Event.Result) != `"ok"` {
				t.Errorf("result %s", m.Event.Result)
			}
			if tc.want == backend.EventSubOrchestrationFailed && (m.Event.Failure == nil || m.Event.Failure.TaskName != testName) {
				t.Errorf("failure %+v; want the orchestration named", m.Event.Failure)
			}
		})
	}
}

func TestExecuteContinueAsNew(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Context, in []byte) ([]byte, error) {
		c.SendEvent("other", "ping", []byte(`1`))
		c.ScheduleActivity("NotAwaited", nil, backend.ActivityOptions{})
		c.CreateTimer(c.Now().Add(time.Hour))
		c.ContinueAsNew([]byte(`"next"`))
		return nil, errors.New("continued as new")
	})
	again, err := h.execute(startMsg(""))
	if err != nil {
		t.Fatal(err)
	}
	h.attempt--
	out := h.step(startMsg(""))
	if out.Status != backend.StatusContinuedAsNew || out.ContinueAsNew == nil || string(out.ContinueAsNew.Input) != `"next"` {
		t.Fatalf("ended %s with %+v; want ContinuedAsNew with the new input", out.Status, out.ContinueAsNew)
	}
	if id := out.ContinueAsNew.NewExecutionID; id == "" || id == testExecution || id != again.ContinueAsNew.NewExecutionID {
		t.Errorf("new execution ID %q (another run: %q); want a fresh deterministic ID", id, again.ContinueAsNew.NewExecutionID)
	}
	last := out.NewEvents[len(out.NewEvents)-1]
	if last.Type != backend.EventExecutionCompleted || last.Status != backend.StatusContinuedAsNew || string(last.Result) != `"next"` {
		t.Errorf("last event %+v", last)
	}
	// Sent events leave; work for the old execution does not.
	if len(out.ActivityTasks) != 0 || len(out.Messages) != 1 || out.Messages[0].InstanceID != "other" {
		t.Errorf("activity tasks %+v, messages %+v; want only the sent event", out.ActivityTasks, out.Messages)
	}
}

// TestExecuteIsDeterministic runs the same step twice: its effects must be
// equal, since a step whose commit fails is computed again by another
// worker.
func TestExecuteIsDeterministic(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Context, in []byte) ([]byte, error) {
		v, err := await(c, c.ScheduleActivity("A", in, backend.ActivityOptions{}))
		if err != nil {
			return nil, err
		}
		c.CallSubOrchestration("Child", "", v)
		id := c.NewUUID()
		return []byte(`"` + id.String() + ` at ` + c.Now().Format(time.RFC3339Nano) + `"`), nil
	})
	h.step(startMsg(`1`))
	msgs := []*backend.Message{completedMsg(0, `2`), eventMsg("x", `3`)}
	first, err1 := h.execute(msgs...)
	h.attempt--
	second, err2 := h.execute(msgs...)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("two runs of one step differ:\n%+v\n%+v", first, second)
	}
	if want := `at ` + h.now.Format(time.RFC3339Nano); !strings.Contains(string(first.Output), want) {
		t.Errorf("output %s; want Now to be the step's time (%s)", first.Output, want)
	}
}

func TestExecuteLoggerIsQuietDuringReplay(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	fn := func(c *Context, in []byte) ([]byte, error) {
		c.Logger().Info("started")
		v, err := await(c, c.ScheduleActivity("A", in, backend.ActivityOptions{}))
		c.Logger().Info("resumed")
		return v, err
	}
	var history []*backend.Event
	for i, msgs := range [][]*backend.Message{{startMsg("")}, {completedMsg(0, `1`)}} {
		inst := backend.Instance{ID: testInstance, Name: testName, ExecutionID: testExecution, Status: backend.StatusRunning}
		out, err := Execute(&Params{
			WorkItem: &backend.OrchestrationWorkItem{Instance: &inst, History: history, Messages: msgs, Attempt: int64(i + 1)},
			Lookup:   func(string) (Orchestrator, bool) { return fn, true },
			Now:      t0, Logger: logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		history = append(history, out.NewEvents...)
	}
	if got := strings.Count(buf.String(), "msg=started"); got != 1 {
		t.Errorf("%q logged %d times; want once:\n%s", "started", got, buf.String())
	}
	if got := strings.Count(buf.String(), "msg=resumed"); got != 1 {
		t.Errorf("%q logged %d times; want once:\n%s", "resumed", got, buf.String())
	}
	if !strings.Contains(buf.String(), "instance="+testInstance) {
		t.Errorf("log lacks the instance: %s", buf.String())
	}
}

// TestExecuteActionInsertedWherePassed checks that code which takes an
// action in a step of history that did not record it diverges: the
// instance passed that point of the code without the action.
func TestExecuteActionInsertedWherePassed(t *testing.T) {
	t.Parallel()
	waitAfter := func(names ...string) Orchestrator {
		return func(c *Context, in []byte) ([]byte, error) {
			if _, err := chain(names...)(c, in); err != nil {
				return nil, err
			}
			return await(c, c.WaitForEvent("approve", -1))
		}
	}
	h := newHarness(t, waitAfter("A"))
	h.step(startMsg(`1`))
	h.step(completedMsg(0, `2`)) // the code waits for "approve"
	h.fn = waitAfter("A", "B")
	out := h.step(eventMsg("approve", `"yes"`))
	if out.Status != backend.StatusFailed || out.Failure == nil || out.Failure.Type != FailureTypeNonDeterminism {
		t.Fatalf("ended %s with %+v; want a NonDeterminism failure", out.Status, out.Failure)
	}
	want := `the code scheduled activity "B" (task 1) in a step of history that did not record it`
	if !strings.Contains(out.Failure.Message, want) {
		t.Errorf("failure %q; want it to say %q", out.Failure.Message, want)
	}
	if len(out.ActivityTasks) != 0 {
		t.Errorf("a diverged step scheduled %+v", out.ActivityTasks)
	}
}
