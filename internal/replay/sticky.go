package replay

import (
	"bytes"
	"time"

	"github.com/durohq/duro/backend"
)

// Sticky execution.
//
// A step normally replays the orchestration's whole history before it
// applies the step's messages, so a step costs O(history). An Executor is
// the live state a step leaves behind instead of stopping it: the
// orchestration's coroutine, parked where the code waits for the next
// events, and its Context. A worker that keeps it (after the step
// committed, see Committed) hands it to the instance's next step, which
// applies only the new events when the executor sits exactly at the end of
// the claimed history, and replays from the start otherwise.
//
// "Exactly at the end" is checked, not assumed: the same instance (ID,
// name, creation time), the same execution, a newer delivery, a history
// whose length is the one the executor has applied and whose first event
// and last step's events are the ones it applied. Any step that another
// worker committed meanwhile, a continue-as-new, a purge and re-creation,
// a rewind or a reset changes one of them. Steps the executor does not
// continue, whatever their history: an instance not Running, and a step
// with a control event (suspend, resume, duplicate, rewind, terminate) or
// whose plan carries work of its own (operator decisions). Histories with
// a rewind are never kept: their replay rules depend on positions.

// StickyOutcome says what ExecuteSticky did with the executor it was given.
type StickyOutcome int

// Outcomes of ExecuteSticky.
const (
	// StickyNone: no executor was given; the step replayed history.
	StickyNone StickyOutcome = iota
	// StickyHit: the executor was continued with the step's events only.
	StickyHit
	// StickyStale: the executor was not at the claimed history's end (the
	// instance changed elsewhere); it was stopped and history replayed.
	StickyStale
	// StickyBypassed: the executor matched, but the step is one an
	// executor does not continue (see Executor); it was stopped and
	// history replayed.
	StickyBypassed
)

// Executor is the live state of one orchestration execution between two
// steps (see the comment at the top of sticky.go). It is owned by one
// goroutine at a time: the step that runs it, or the cache that holds it.
type Executor struct {
	c *Context
	r *run

	id, name, execID string
	createdAt        time.Time
	// attempt is the delivery of the step that left the executor.
	attempt int64
	// histLen is how many history events the executor has applied, and
	// tail the last step's events among them; pending are the events of
	// a step not yet known to be committed.
	histLen int
	first   *backend.Event
	tail    []*backend.Event
	pending []*backend.Event
	// committed is set by Committed; only a committed executor continues.
	committed bool
}

// executorBaseSize approximates the fixed cost of a kept executor: the
// coroutine's goroutine stack and the Context.
const executorBaseSize = 16 << 10

// eventSize approximates what one applied event retains.
func eventSize(ev *backend.Event) int64 {
	n := 256 + len(ev.Input) + len(ev.Result) + len(ev.Name) + len(ev.InstanceID) + len(ev.Reason)
	if f := ev.Failure; f != nil {
		n += len(f.Message) + len(f.Type) + len(f.Stack) + len(f.Details)
	}
	return int64(n)
}

// ExecuteSticky is Execute with an executor: prev (nil if none) is
// continued if it sits at the end of the work item's history and stopped
// otherwise, and next, when not nil, is the live executor the step leaves.
// The caller owns next: Committed once the step's effects are committed
// (then it may be given to the instance's next step), Close otherwise.
func ExecuteSticky(p *Params, prev *Executor) (out *backend.CompleteOrchestrationStepParams, next *Executor, how StickyOutcome, err error) {
	return execute(p, prev, true)
}

// Committed records that the step that returned ex committed its effects:
// the events it appended are history now.
func (ex *Executor) Committed() {
	c := ex.c
	for _, a := range c.order[c.settled:] {
		a.recorded = true
	}
	c.settled = len(c.order)
	// The run's size goes on with the executor: a step that continues it
	// starts from the size of everything applied so far.
	for _, ev := range ex.pending {
		ex.r.size += eventSize(ev)
	}
	ex.histLen += len(ex.pending)
	ex.tail, ex.pending = ex.pending, nil
	ex.committed = true
}

// Close stops the executor's coroutine (running the code's deferred
// calls). It may be called on nil, and more than once.
func (ex *Executor) Close() {
	if ex != nil {
		ex.c.co.stop()
	}
}

// Size approximates the bytes the executor retains: its goroutine, and
// the events it applied with their payloads.
func (ex *Executor) Size() int64 { return ex.r.size }

// Attempt returns the step attempt of the delivery whose step left the
// executor.
func (ex *Executor) Attempt() int64 { return ex.attempt }

// InstanceID returns the instance the executor runs.
func (ex *Executor) InstanceID() string { return ex.id }

// HistoryLen returns how many history events the executor has applied.
func (ex *Executor) HistoryLen() int { return ex.histLen }

// matches reports whether the executor sits exactly at the end of wi's
// history.
func (ex *Executor) matches(wi *backend.OrchestrationWorkItem) bool {
	inst := wi.Instance
	h := wi.History
	if !ex.committed || inst.ID != ex.id || inst.Name != ex.name || inst.ExecutionID != ex.execID ||
		!inst.CreatedAt.Equal(ex.createdAt) || wi.Attempt <= ex.attempt ||
		len(h) != ex.histLen || len(h) < len(ex.tail) || len(h) == 0 {
		return false
	}
	if !sameEvent(h[0], ex.first) {
		return false
	}
	base := len(h) - len(ex.tail)
	for i, ev := range ex.tail {
		if !sameEvent(h[base+i], ev) {
			return false
		}
	}
	return true
}

// continues reports whether a matching executor may run the step: the
// instance runs, and the step holds nothing but events to apply.
func (ex *Executor) continues(wi *backend.OrchestrationWorkItem, pl *plan, stepEvents []*backend.Event) bool {
	if wi.Instance.Status != backend.StatusRunning || pl.suspended || len(pl.tasks) > 0 || len(pl.messages) > 0 ||
		len(pl.rewinds) > 0 || len(pl.outcomes) > 0 || ex.r.rules != nil {
		return false
	}
	for _, ev := range stepEvents {
		if ev.Type.IsControl() || ev.Type == backend.EventExecutionRewound {
			return false
		}
	}
	return true
}

// stays reports whether the state a step leaves may be kept: the code
// waits for more events, replay agreed with history, and the instance goes
// on running the same execution.
func (r *run) stays(out *backend.CompleteOrchestrationStepParams) bool {
	c := r.c
	if !c.co.started || c.co.done || c.nondeterminism != nil || r.rules != nil ||
		out.Status != backend.StatusRunning || out.ContinueAsNew != nil {
		return false
	}
	for _, ev := range out.NewEvents {
		if ev.Type.IsControl() {
			return false
		}
	}
	return true
}

// sameEvent reports whether two events record the same thing, as far as
// replay reads them.
func sameEvent(a, b *backend.Event) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil {
		return false
	}
	return a.Type == b.Type && a.TaskID == b.TaskID && a.Name == b.Name && a.InstanceID == b.InstanceID &&
		a.ExecutionID == b.ExecutionID && a.Timestamp.Equal(b.Timestamp) && a.FireAt.Equal(b.FireAt) &&
		a.Attempt == b.Attempt && a.Status == b.Status && a.Reason == b.Reason && a.Deprecated == b.Deprecated &&
		bytes.Equal(a.Input, b.Input) && bytes.Equal(a.Result, b.Result) && sameFailure(a.Failure, b.Failure)
}

func sameFailure(a, b *backend.Failure) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Message == b.Message && a.Type == b.Type
}
