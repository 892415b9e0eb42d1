package replay

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/durohq/duro/backend"
)

// The orchestrations of the patch tests: old calls A then C; patched asks
// Patched("p") after A and calls B on the new path, C on the old one;
// deprecated has only the new path, behind DeprecatePatch; removed has
// no patch call at all.
var (
	patchOld = chain("A", "C")
	patched  = func(c *Context, in []byte) ([]byte, error) {
		v, err := await(c, c.ScheduleActivity("A", in, backend.ActivityOptions{}))
		if err != nil {
			return nil, err
		}
		next := "C"
		if c.Patched("p") {
			next = "B"
		}
		return await(c, c.ScheduleActivity(next, v, backend.ActivityOptions{}))
	}
	patchDeprecated = func(c *Context, in []byte) ([]byte, error) {
		v, err := await(c, c.ScheduleActivity("A", in, backend.ActivityOptions{}))
		if err != nil {
			return nil, err
		}
		c.DeprecatePatch("p")
		return await(c, c.ScheduleActivity("B", v, backend.ActivityOptions{}))
	}
	patchRemoved = chain("A", "B")
)

// scheduledNames returns the names of the activities events schedule, with
// their task IDs.
func scheduledNames(evs []*backend.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == backend.EventTaskScheduled {
			out = append(out, e.Name+"#"+strconv.Itoa(e.TaskID))
		}
	}
	return out
}

func expectOutput(t *testing.T, out *backend.CompleteOrchestrationStepParams, want string) {
	t.Helper()
	if out.Status != backend.StatusCompleted || string(out.Output) != want {
		t.Fatalf("ended %s with output %s, failure %+v; want Completed with %s", out.Status, out.Output, out.Failure, want)
	}
}

func TestPatchedNewInstanceRecordsMarker(t *testing.T) {
	t.Parallel()
	h := newHarness(t, patched)
	h.step(startMsg(`1`))
	out := h.step(completedMsg(0, `2`))
	checkTypes(t, "step 2", out.NewEvents, backend.EventOrchestratorStarted, backend.EventTaskCompleted,
		backend.EventPatched, backend.EventTaskScheduled)
	if m := out.NewEvents[2]; m.Name != "p" || m.TaskID != 1 || m.Deprecated {
		t.Errorf("marker %+v; want patch p at task 1, not deprecated", m)
	}
	// The marker takes no task ID: B is task 1, where C was.
	if got := scheduledNames(out.NewEvents); !slices.Equal(got, []string{"B#1"}) {
		t.Fatalf("step 2 scheduled %v; want B#1", got)
	}
	expectOutput(t, h.step(completedMsg(1, `3`)), `3`)
	if n := len(slices.DeleteFunc(slices.Clone(h.history), func(e *backend.Event) bool { return e.Type != backend.EventPatched })); n != 1 {
		t.Errorf("history has %d markers; want 1 (replay matches the recorded one)", n)
	}
}

func TestPatchedReplaysOldHistoryOnOldPath(t *testing.T) {
	t.Parallel()
	// An instance that passed the patch point under the old code keeps
	// the old path once the code is patched.
	h := newHarness(t, patchOld)
	h.step(startMsg(`1`))
	h.step(completedMsg(0, `2`))
	h.fn = patched
	out := h.step(completedMsg(1, `3`))
	expectOutput(t, out, `3`)
	checkTypes(t, "last step", out.NewEvents, backend.EventOrchestratorStarted, backend.EventTaskCompleted, backend.EventExecutionCompleted)

	// One that had not reached it yet takes the new path.
	h = newHarness(t, patchOld)
	h.step(startMsg(`1`))
	h.fn = patched
	out = h.step(completedMsg(0, `2`))
	if got := scheduledNames(out.NewEvents); !slices.Equal(got, []string{"B#1"}) {
		t.Fatalf("scheduled %v after the deployment; want B#1 (the new path)", got)
	}
	expectOutput(t, h.step(completedMsg(1, `3`)), `3`)
}

func TestPatchedIsDecidedOncePerExecution(t *testing.T) {
	t.Parallel()
	var answers []bool
	twice := func(c *Context, in []byte) ([]byte, error) {
		v, err := await(c, c.ScheduleActivity("A", in, backend.ActivityOptions{}))
		if err != nil {
			return nil, err
		}
		first := c.Patched("p")
		if v, err = await(c, c.ScheduleActivity("C", v, backend.ActivityOptions{})); err != nil {
			return nil, err
		}
		answers = append(answers, first, c.Patched("p"))
		return v, nil
	}
	// Recorded under the old code up to C: replay answers false at the
	// patch point, and the second call, in a new step, answers the same.
	h := newHarness(t, patchOld)
	h.step(startMsg(`1`))
	h.step(completedMsg(0, `2`))
	h.fn = twice
	out := h.step(completedMsg(1, `3`))
	expectOutput(t, out, `3`)
	if !slices.Equal(answers, []bool{false, false}) {
		t.Errorf("Patched answered %v; want [false false]", answers)
	}
	if slices.ContainsFunc(out.NewEvents, func(e *backend.Event) bool { return e.Type == backend.EventPatched }) {
		t.Errorf("a decided-false patch recorded a marker: %v", types(out.NewEvents))
	}

	// A new instance records one marker for both calls.
	answers = nil
	h = newHarness(t, twice)
	h.step(startMsg(`1`))
	h.step(completedMsg(0, `2`))
	expectOutput(t, h.step(completedMsg(1, `3`)), `3`)
	if !slices.Equal(answers, []bool{true, true}) {
		t.Errorf("Patched answered %v; want [true true]", answers)
	}
	var markers int
	for _, e := range h.history {
		if e.Type == backend.EventPatched {
			markers++
		}
	}
	if markers != 1 {
		t.Errorf("history has %d markers; want 1", markers)
	}
}

func TestDeprecatePatch(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, record, replay Orchestrator) *backend.CompleteOrchestrationStepParams {
		t.Helper()
		h := newHarness(t, record)
		h.step(startMsg(`1`))
		h.step(completedMsg(0, `2`))
		h.fn = replay
		return h.step(completedMsg(1, `3`))
	}
	t.Run("ReplaysPatchedHistory", func(t *testing.T) {
		t.Parallel()
		expectOutput(t, run(t, patched, patchDeprecated), `3`)
	})
	t.Run("PatchedCodeReplaysItsHistory", func(t *testing.T) {
		// A rolling deployment: a worker that still runs the Patched code
		// takes the new path on an instance started by a newer one.
		t.Parallel()
		expectOutput(t, run(t, patchDeprecated, patched), `3`)
	})
	t.Run("CodeWithoutThePatchReplaysItsHistory", func(t *testing.T) {
		t.Parallel()
		expectOutput(t, run(t, patchDeprecated, patchRemoved), `3`)
	})
	t.Run("RecordsADeprecatedMarker", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, patchDeprecated)
		h.step(startMsg(`1`))
		out := h.step(completedMsg(0, `2`))
		i := slices.IndexFunc(out.NewEvents, func(e *backend.Event) bool { return e.Type == backend.EventPatched })
		if i < 0 || !out.NewEvents[i].Deprecated || out.NewEvents[i].Name != "p" || out.NewEvents[i].TaskID != 1 {
			t.Fatalf("step events %+v; want a deprecated marker p at task 1", out.NewEvents)
		}
	})
}

func TestPatchNonDeterminism(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		record, replay Orchestrator
		want           string
	}{
		{
			// The change deployed without Patched: the old history does not
			// replay.
			name: "ChangeWithoutPatched", record: patchOld, replay: patchRemoved,
			want: `history has activity "C" (task 1) but the code scheduled activity "B" (task 1)`,
		},
		{
			// Rolled back to the code before the patch: the marker is
			// unexpected.
			name: "MarkerWithoutPatched", record: patched, replay: patchOld,
			want: `history has patch "p" (at task 1) but the code did not ask Patched("p")`,
		},
		{
			// The patch call removed while instances that recorded a
			// (non-deprecated) marker still run.
			name: "PatchRemovedTooEarly", record: patched, replay: patchRemoved,
			want: `history has patch "p" (at task 1) but the code did not ask Patched("p")`,
		},
		{
			name: "PatchMovedEarlier", record: patched,
			replay: func(c *Context, in []byte) ([]byte, error) {
				next := "C"
				if c.Patched("p") {
					next = "B"
				}
				v, err := await(c, c.ScheduleActivity("A", in, backend.ActivityOptions{}))
				if err != nil {
					return nil, err
				}
				return await(c, c.ScheduleActivity(next, v, backend.ActivityOptions{}))
			},
			want: `history has patch "p" (at task 1) but the code asked Patched("p") at task 0`,
		},
		{
			// DeprecatePatch deployed while instances of the old code run:
			// they replay the new path, which history matching refuses.
			name: "DeprecatedOverOldHistory", record: patchOld, replay: patchDeprecated,
			want: `history has activity "C" (task 1) but the code scheduled activity "B" (task 1)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.record)
			h.step(startMsg(`1`))
			h.step(completedMsg(0, `2`))
			h.fn = tc.replay
			out := h.step(completedMsg(1, `3`))
			if out.Status != backend.StatusFailed || out.Failure == nil || out.Failure.Type != FailureTypeNonDeterminism {
				t.Fatalf("ended %s with %+v; want a NonDeterminism failure", out.Status, out.Failure)
			}
			if !strings.Contains(out.Failure.Message, tc.want) {
				t.Errorf("failure %q; want it to say %q", out.Failure.Message, tc.want)
			}
		})
	}
}
