package replay

import (
	"fmt"

	"github.com/durohq/duro/backend"
)

// Patches let orchestration code change while instances run. The code asks
// Patched(id) where the new code differs from the old; the first time it
// asks in an execution, the answer is recorded as an EventPatched marker
// at the code's current point (the task ID its next action would take),
// and replay gives the same answer again:
//
//   - code running for the first time (not replaying) takes the new path
//     and records a marker;
//   - code replaying a step of history takes the new path when that step
//     recorded the marker at this point, and the old path when it did not:
//     the step ran code from before the patch.
//
// A marker takes no task ID, so the old path's actions keep the IDs the
// old code gave them. A recorded marker that the code does not ask for at
// its point is a divergence, unless DeprecatePatch recorded it.

// kindPatch is the kind of the action a patch marker is: kept in the
// context's order, so that new markers are recorded among the step's
// other actions, but not in its actions by task ID, which a marker does
// not take.
const kindPatch actionKind = "patch"

// patchPoint is a marker's place in an execution: the patch ID at a task
// ID.
type patchPoint struct {
	taskID int
	id     string
}

// patchDecision is what the code decided for one patch ID in this
// execution; later calls return the same answer.
type patchDecision struct {
	patched bool
	// taskID is where the code first asked.
	taskID int
	// mark is the marker of a patched decision (recorded or new).
	mark *action
}

// Patched reports whether the code takes the new path of the patch id;
// see the comment at the top of patch.go.
func (c *Context) Patched(id string) bool { return c.patch(id, false) }

// DeprecatePatch is Patched for a patch whose old path is gone from the
// code: the code always takes the new path. It still records a marker, so
// that workers whose code still asks Patched(id) replay the instance on
// the new path; the marker is flagged deprecated, so that code that no
// longer mentions id replays it too. A history recorded without the
// marker replays the new path, which history matching then checks.
func (c *Context) DeprecatePatch(id string) { c.patch(id, true) }

func (c *Context) patch(id string, deprecated bool) bool {
	if d, ok := c.patches[id]; ok {
		return d.patched
	}
	if c.patches == nil {
		c.patches = map[string]*patchDecision{}
	}
	d := &patchDecision{patched: true, taskID: c.nextTaskID}
	c.patches[id] = d
	if c.replaying && !c.recordedPatches[patchPoint{c.nextTaskID, id}] {
		// This step of history ran here without recording the marker: its
		// code predates the patch.
		d.patched = deprecated
		return d.patched
	}
	ev := &backend.Event{Type: backend.EventPatched, TaskID: c.nextTaskID, Name: id, Deprecated: deprecated, Timestamp: c.now}
	d.mark = &action{kind: kindPatch, taskID: c.nextTaskID, name: id, event: ev}
	c.order = append(c.order, d.mark)
	return true
}

// indexPatches notes the markers history holds, which replay looks ahead
// to: the code asks before the history event that recorded its answer is
// replayed.
func (c *Context) indexPatches(history []*backend.Event) {
	for _, ev := range history {
		if ev.Type != backend.EventPatched {
			continue
		}
		if c.recordedPatches == nil {
			c.recordedPatches = map[patchPoint]bool{}
		}
		c.recordedPatches[patchPoint{ev.TaskID, ev.Name}] = true
	}
}

// matchPatch pairs a recorded marker with the code's decision.
func (r *run) matchPatch(ev *backend.Event) {
	c := r.c
	d := c.patches[ev.Name]
	switch {
	case d != nil && d.mark != nil && d.mark.taskID == ev.TaskID && !d.mark.recorded:
		d.mark.recorded = true
	case ev.Deprecated || r.tolerant():
		// A deprecated patch the code no longer asks for, or the abandoned
		// branch of a rewind.
	case d == nil:
		c.nondeterminism = fmt.Errorf("non-deterministic orchestration %q: history has patch %q (at task %d) but the code did not ask Patched(%q)",
			c.name, ev.Name, ev.TaskID, ev.Name)
	default:
		c.nondeterminism = fmt.Errorf("non-deterministic orchestration %q: history has patch %q (at task %d) but the code asked Patched(%q) at task %d",
			c.name, ev.Name, ev.TaskID, ev.Name, d.taskID)
	}
}
