package durotest

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/testhook"
)

// loopKind is one of a worker's claim loops.
type loopKind int

const (
	loopSteps loopKind = iota // orchestration steps and entity batches
	loopTasks                 // activity tasks
)

// crashKind is a point where a delivery of an activity can be crashed.
type crashKind int

const (
	crashAfterStart crashKind = iota
	crashAfterRun
)

// heldItem is a claimed work item not yet handed back to the store.
type heldItem struct {
	key   string
	owner string
	// name is an activity task's activity.
	name string
}

// finished ends a held item after a call about it: always, or when the
// call succeeded or failed for good (a call that failed otherwise is
// retried or followed by an abandon). A claim that is not the worker's
// (a client applying a termination) ends with its first call.
type finished struct {
	key    string
	err    error
	always bool
}

// clock is the environment's virtual clock. It stands still until the
// environment moves it.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// state is what the environment knows of the work in flight. gen counts
// the changes that may have made work claimable (and the moves of the
// clock); drained says, per claim loop, at which gen a claim started
// that found nothing more to claim. Nothing can run when no call is in
// progress, no work item is held, and every loop that claims found
// nothing since the last change.
type state struct {
	reg    *duro.Registry
	worker string // the worker's lease owner name
	clock  clock

	mu      sync.Mutex
	gen     uint64
	calls   int
	held    map[string]heldItem
	drained [2]uint64
	claimed [2]bool // drained[k] is set
	// wake is closed when work may have become claimable (the worker's
	// WorkAvailable); changed when anything above changed (for Wait).
	wake, changed chan struct{}
	// crashes are the armed crashes, by kind and activity name.
	crashes [2]map[string]int
}

func newState(reg *duro.Registry, worker string, start time.Time) *state {
	s := &state{reg: reg, worker: worker, held: map[string]heldItem{},
		crashes: [2]map[string]int{{}, {}}}
	s.clock.ns.Store(start.UnixNano())
	return s
}

// begin counts a call in progress and returns the current gen.
func (s *state) begin() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.gen
}

// end ends a call: it adds the items it claimed, ends those it finished,
// and, for a call that may have made work claimable, wakes the worker.
func (s *state) end(mutation bool, add []heldItem, done []finished) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls--
	for _, h := range add {
		s.held[h.key] = h
	}
	for _, f := range done {
		h, ok := s.held[f.key]
		if ok && (f.always || f.err == nil || final(f.err) || h.owner != s.worker) {
			delete(s.held, f.key)
		}
	}
	if mutation {
		s.bumpLocked()
	}
	s.changedLocked()
}

// endClaim ends a claim of loop k that started at gen; drained says it
// found fewer items than it asked for.
func (s *state) endClaim(k loopKind, gen uint64, drained bool, add []heldItem) {
	s.mu.Lock()
	if drained && (!s.claimed[k] || gen >= s.drained[k]) {
		s.drained[k], s.claimed[k] = gen, true
	}
	s.mu.Unlock()
	s.end(false, add, nil)
}

// final reports the errors after which the worker drops a work item.
func final(err error) bool {
	return errors.Is(err, backend.ErrLeaseLost) || errors.Is(err, backend.ErrInstanceFinished) ||
		errors.Is(err, backend.ErrClosed) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

func (s *state) bumpLocked() {
	s.gen++
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}

func (s *state) changedLocked() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

func (s *state) workAvailable() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake == nil {
		s.wake = make(chan struct{})
	}
	return s.wake
}

// claimedTasks holds the activity deliveries a claim returned, except
// those the test crashed right after the claim (CrashAfterStart of an
// activity that does not mark its deliveries started): they are claimed
// in the store, with their attempt numbers spent, and never run.
func (s *state) claimedTasks(items []*backend.ActivityWorkItem, owner string) ([]*backend.ActivityWorkItem, []heldItem) {
	if len(items) == 0 {
		return items, nil
	}
	kept := items[:0:0]
	var held []heldItem
	for _, wi := range items {
		name := wi.Task.Name
		marks := wi.Task.Options.AtMostOnce || testhook.AtMostOnce(s.reg, name)
		if !marks && s.takeCrash(crashAfterStart, name) {
			continue
		}
		kept = append(kept, wi)
		held = append(held, heldItem{key: taskKey(wi.Task.ID, int64(wi.Attempt)), owner: owner, name: name})
	}
	return kept, held
}

// crashAt reports whether the held delivery key crashes at point k (and
// disarms that crash).
func (s *state) crashAt(key string, k crashKind) bool {
	s.mu.Lock()
	h, ok := s.held[key]
	s.mu.Unlock()
	return ok && s.takeCrash(k, h.name)
}

func (s *state) takeCrash(k crashKind, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashes[k][name] == 0 {
		return false
	}
	s.crashes[k][name]--
	return true
}

func (s *state) armCrash(k crashKind, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crashes[k][name]++
}

// snapshot is the state as a waiter sees it.
type snapshot struct {
	idle    bool
	gen     uint64
	changed <-chan struct{}
}

func (s *state) snapshot() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return snapshot{idle: s.idleLocked(), gen: s.gen, changed: s.changed}
}

// idleLocked reports whether nothing can run at the clock's time.
func (s *state) idleLocked() bool {
	if s.calls > 0 || len(s.held) > 0 {
		return false
	}
	steps, tasks := testhook.Runs(s.reg)
	drained := func(k loopKind) bool { return s.claimed[k] && s.drained[k] == s.gen }
	return (!steps || drained(loopSteps)) && (!tasks || drained(loopTasks))
}

// advance moves the clock to t if nothing changed since gen and nothing
// can run, and reports whether it did.
func (s *state) advance(gen uint64, t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen || !s.idleLocked() {
		return false
	}
	if t.After(s.clock.Now()) {
		s.clock.ns.Store(t.UnixNano())
	}
	s.bumpLocked()
	s.changedLocked()
	return true
}

// busy describes the work in flight, for a timeout's message.
func (s *state) busy() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.held {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{}
	if s.calls > 0 {
		parts = append(parts, "store calls in progress")
	}
	if len(keys) > 0 {
		parts = append(parts, "deliveries running: "+strings.Join(keys, ", "))
	}
	if len(parts) == 0 {
		parts = append(parts, "the worker has not looked for work since the last change")
	}
	return strings.Join(parts, "; ")
}
