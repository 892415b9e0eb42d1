package replay

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// The sticky tests run the same randomized orchestrations through a
// simulated store twice, once replaying every step (Execute) and once with
// executors kept between steps (ExecuteSticky), with random evictions and
// random steps taken "by another worker" (without the executor, which must
// then be found stale), and require every step's effects to be identical.

// program is orchestration code whose operations are drawn from a seed:
// activities, fan-outs, timers, event waits with timeouts, children,
// retries with backoff timers, side effects (UUIDs, custom status, sent
// events), a patch, and continue-as-new. The code is deterministic: its
// choices come from its input, never from the store.
func program(c *Context, in []byte) ([]byte, error) {
	var seed uint64
	var gen int
	if _, err := fmt.Sscanf(string(in), "%d:%d", &seed, &gen); err != nil {
		return nil, fmt.Errorf("bad input %q: %w", in, err)
	}
	rng := rand.New(rand.NewPCG(seed, uint64(gen)))
	acc := []string{}
	ops := 4 + rng.IntN(10)
	for i := 0; i < ops; i++ {
		switch op := rng.IntN(10); op {
		case 0, 1: // an activity
			v, err := await(c, c.ScheduleActivity("Echo", []byte(fmt.Sprintf("a%d", i)), backend.ActivityOptions{}))
			if err != nil {
				return nil, err
			}
			acc = append(acc, string(v))
		case 2: // a fan-out
			n := 2 + rng.IntN(6)
			fs := make([]*Future, n)
			for j := range fs {
				fs[j] = c.ScheduleActivity("Echo", []byte(fmt.Sprintf("f%d.%d", i, j)), backend.ActivityOptions{})
			}
			for _, f := range fs {
				v, err := await(c, f)
				if err != nil {
					return nil, err
				}
				acc = append(acc, string(v))
			}
		case 3: // a timer
			if _, err := await(c, c.CreateTimer(c.Now().Add(time.Duration(1+rng.IntN(60))*time.Minute))); err != nil {
				return nil, err
			}
			acc = append(acc, "tick")
		case 4: // an event, or its timeout
			v, err := await(c, c.WaitForEvent("go", time.Duration(1+rng.IntN(5))*time.Hour))
			switch {
			case errors.Is(err, ErrTimeout):
				acc = append(acc, "timeout")
			case err != nil:
				return nil, err
			default:
				acc = append(acc, "event:"+string(v))
			}
		case 5: // a child
			v, err := await(c, c.CallSubOrchestration("Child", "", []byte(strconv.Itoa(i))))
			if err != nil {
				acc = append(acc, "child failed: "+err.Error())
			} else {
				acc = append(acc, "child:"+string(v))
			}
		case 6: // retries of a flaky activity, with backoff timers
			var v []byte
			var err error
			for try := 0; try < 3; try++ {
				if v, err = await(c, c.ScheduleActivity("Flaky", []byte(fmt.Sprintf("r%d", i)), backend.ActivityOptions{})); err == nil {
					break
				}
				if _, terr := await(c, c.CreateTimer(c.Now().Add(time.Duration(try+1)*time.Second))); terr != nil {
					return nil, terr
				}
			}
			if err != nil {
				if rng.IntN(2) == 0 {
					return nil, fmt.Errorf("gave up on r%d: %w", i, err)
				}
				acc = append(acc, "gave up")
			} else {
				acc = append(acc, string(v))
			}
		case 7: // side effects
			id := c.NewUUID()
			c.SetCustomStatus([]byte(`"` + id.String() + `"`))
			c.SendEvent("elsewhere", "note", []byte(id.String()))
			acc = append(acc, id.String()[:8])
		case 8: // a patch
			if c.Patched("fast-path") {
				acc = append(acc, "patched")
			} else {
				acc = append(acc, "unpatched")
			}
		case 9: // an event that arrived earlier, if any
			v, err := await(c, c.WaitForEvent("go", 0))
			if err == nil {
				acc = append(acc, "buffered:"+string(v))
			}
		}
	}
	if gen < 2 && rng.IntN(2) == 0 {
		c.ContinueAsNew([]byte(fmt.Sprintf("%d:%d", seed, gen+1)))
		return nil, nil
	}
	return []byte(strings.Join(acc, ",")), nil
}

// store simulates a backend for one instance: its execution, history and
// inbox, the activities its steps schedule (run at once, their results
// queued), its children (completed at once) and its timers (fired when
// delivered).
type store struct {
	t       *testing.T
	rng     *rand.Rand
	inst    backend.Instance
	history []*backend.Event
	inbox   []*backend.Message
	now     time.Time
	attempt int64
	flaky   map[string]int
}

func newStore(t *testing.T, seed uint64) *store {
	s := &store{t: t, rng: rand.New(rand.NewPCG(seed, 7)), now: t0, flaky: map[string]int{},
		inst: backend.Instance{ID: testInstance, Name: "Program", ExecutionID: testExecution, Status: backend.StatusPending, CreatedAt: t0}}
	s.inbox = []*backend.Message{{ID: "start", InstanceID: testInstance, ExecutionID: testExecution,
		Event: &backend.Event{Type: backend.EventExecutionStarted, Input: fmt.Appendf(nil, "%d:0", seed), Timestamp: t0}}}
	return s
}

// workItem claims the next step: a random number of the oldest messages,
// sometimes with an external event raised first.
func (s *store) workItem() *backend.OrchestrationWorkItem {
	if s.rng.IntN(6) == 0 {
		s.inbox = append(s.inbox, &backend.Message{ID: fmt.Sprintf("ev%d", s.attempt), InstanceID: testInstance,
			Event: &backend.Event{Type: backend.EventEventRaised, Name: "go", Input: fmt.Appendf(nil, "%d", s.attempt), Timestamp: s.now}})
	}
	n := 1 + s.rng.IntN(min(len(s.inbox), 4))
	s.attempt++
	inst := s.inst
	return &backend.OrchestrationWorkItem{Instance: &inst, History: slices.Clip(s.history), Messages: slices.Clone(s.inbox[:n]),
		Attempt: s.attempt, Deliveries: 1}
}

// commit applies a step's effects as a backend would.
func (s *store) commit(out *backend.CompleteOrchestrationStepParams) {
	consumed := map[string]bool{}
	for _, id := range out.ConsumedMessageIDs {
		consumed[id] = true
	}
	s.inbox = slices.DeleteFunc(s.inbox, func(m *backend.Message) bool { return consumed[m.ID] })
	s.history = append(s.history, out.NewEvents...)
	s.inst.Status, s.inst.Output, s.inst.Failure, s.inst.CustomStatus = out.Status, out.Output, out.Failure, out.CustomStatus
	s.now = s.now.Add(time.Second)
	for _, a := range out.ActivityTasks {
		ev := &backend.Event{Type: backend.EventTaskCompleted, TaskID: a.TaskID, Result: append([]byte("ok:"), a.Input...), Attempt: 1, Timestamp: s.now}
		if a.Name == "Flaky" {
			s.flaky[string(a.Input)]++
			if s.rng.IntN(3) > 0 {
				ev = &backend.Event{Type: backend.EventTaskFailed, TaskID: a.TaskID, Attempt: 1, Timestamp: s.now,
					Failure: &backend.Failure{Message: "flaky " + string(a.Input), Type: "Test"}}
			}
		}
		s.inbox = append(s.inbox, &backend.Message{ID: backend.ResultMessageID(a.ID), InstanceID: testInstance, ExecutionID: a.ExecutionID, Event: ev})
	}
	for _, m := range out.Messages {
		if m.InstanceID == testInstance {
			s.inbox = append(s.inbox, m)
		}
	}
	for _, st := range out.StartInstances {
		ev := &backend.Event{Type: backend.EventSubOrchestrationCompleted, TaskID: st.Parent.TaskID, Result: append([]byte("child:"), st.Input...), Timestamp: s.now}
		if s.rng.IntN(4) == 0 {
			ev = &backend.Event{Type: backend.EventSubOrchestrationFailed, TaskID: st.Parent.TaskID, Timestamp: s.now,
				Failure: &backend.Failure{Message: "child failed", Type: "Test"}}
		}
		s.inbox = append(s.inbox, &backend.Message{ID: "child/" + st.ID, InstanceID: testInstance, ExecutionID: st.Parent.ExecutionID, Event: ev})
	}
	if can := out.ContinueAsNew; can != nil {
		old := s.inst.ExecutionID
		s.inst.ExecutionID, s.inst.Status, s.history = can.NewExecutionID, backend.StatusPending, nil
		s.inbox = slices.DeleteFunc(s.inbox, func(m *backend.Message) bool { return m.ExecutionID == old })
		s.inbox = append(s.inbox, &backend.Message{ID: "start/" + can.NewExecutionID, InstanceID: testInstance, ExecutionID: can.NewExecutionID,
			Event: &backend.Event{Type: backend.EventExecutionStarted, Input: can.Input, Timestamp: s.now}})
	}
}

func (s *store) done() bool { return s.inst.Status.IsTerminal() || len(s.inbox) == 0 }

func programLookup(name string) (Orchestrator, bool) {
	if name != "Program" {
		return nil, false
	}
	return program, true
}

// stickyCounts are what the sticky run did with its executors.
type stickyCounts struct{ hits, stale, bypassed, none, evicted, foreign int }

// runProgram runs seed's instance to its end and returns every step's
// effects. With sticky, executors are kept between steps; evict and
// foreign are the chances that the kept executor is dropped, or that a
// step runs without it while it is kept (another worker's step).
func runProgram(t *testing.T, seed uint64, sticky bool, evict, foreign float64, counts *stickyCounts) []*backend.CompleteOrchestrationStepParams {
	s := newStore(t, seed)
	chaos := rand.New(rand.NewPCG(seed, 99))
	var ex *Executor
	defer func() { ex.Close() }()
	// dirty is set while the kept executor is behind the history.
	dirty := false
	var outs []*backend.CompleteOrchestrationStepParams
	for step := 0; !s.done(); step++ {
		if step > 500 {
			t.Fatalf("seed %d: no end after %d steps", seed, step)
		}
		wi := s.workItem()
		p := &Params{WorkItem: wi, Lookup: programLookup, Now: s.now}
		var out *backend.CompleteOrchestrationStepParams
		var err error
		if !sticky {
			out, err = Execute(p)
		} else if ex != nil && chaos.Float64() < foreign {
			// Another worker's step: the kept executor stays behind.
			counts.foreign++
			dirty = true
			var next *Executor
			out, next, _, err = ExecuteSticky(p, nil)
			next.Close()
		} else {
			var next *Executor
			var how StickyOutcome
			kept := ex != nil
			out, next, how, err = ExecuteSticky(p, ex)
			ex = nil
			if kept && dirty != (how == StickyStale) {
				t.Fatalf("seed %d step %d: outcome %d with an executor behind the history: %v", seed, step, how, dirty)
			}
			dirty = false
			switch how {
			case StickyHit:
				counts.hits++
			case StickyStale:
				counts.stale++
			case StickyBypassed:
				counts.bypassed++
			default:
				counts.none++
			}
			if next != nil {
				next.Committed()
				if chaos.Float64() < evict {
					counts.evicted++
					next.Close()
				} else {
					ex = next
				}
			}
		}
		if err != nil {
			t.Fatalf("seed %d step %d: %v", seed, step, err)
		}
		outs = append(outs, out)
		s.commit(out)
	}
	return outs
}

func TestStickyMatchesReplay(t *testing.T) {
	var total stickyCounts
	for seed := uint64(1); seed <= 300; seed++ {
		want := runProgram(t, seed, false, 0, 0, nil)
		var counts stickyCounts
		got := runProgram(t, seed, true, 0.15, 0.1, &counts)
		compareSteps(t, seed, got, want)
		total.hits += counts.hits
		total.stale += counts.stale
		total.bypassed += counts.bypassed
		total.evicted += counts.evicted
		total.foreign += counts.foreign
	}
	t.Logf("sticky: %+v", total)
	// The run must have exercised every path it checks.
	if total.hits == 0 || total.stale == 0 || total.evicted == 0 || total.foreign == 0 {
		t.Fatalf("sticky counts %+v: some path never ran", total)
	}
}

func compareSteps(t *testing.T, seed uint64, got, want []*backend.CompleteOrchestrationStepParams) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		if i >= len(got) || i >= len(want) {
			t.Fatalf("seed %d: %d steps with the cache, %d without", seed, len(got), len(want))
		}
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("seed %d step %d differs:\nsticky: %v status %s out %q\nreplay: %v status %s out %q", seed, i,
				types(got[i].NewEvents), got[i].Status, got[i].Output, types(want[i].NewEvents), want[i].Status, want[i].Output)
		}
	}
}

// TestStickyDetectsChangedHistory: an executor continues only a history
// that ends where it stopped. Every change of the claimed work item that
// a store could show (another step appended, the same length with other
// events, another execution, a re-created instance, an older delivery)
// makes the step replay instead, with the effects of a replay.
func TestStickyDetectsChangedHistory(t *testing.T) {
	fn := chain("A", "B", "C", "D")
	lookup := func(string) (Orchestrator, bool) { return fn, true }
	start := &backend.Message{ID: "start", InstanceID: testInstance, ExecutionID: testExecution,
		Event: &backend.Event{Type: backend.EventExecutionStarted, Input: []byte("x"), Timestamp: t0}}
	inst := backend.Instance{ID: testInstance, Name: testName, ExecutionID: testExecution, Status: backend.StatusPending, CreatedAt: t0}
	// Two steps: start, then A's result.
	out1, ex, _, err := ExecuteSticky(&Params{WorkItem: &backend.OrchestrationWorkItem{Instance: &inst, Messages: []*backend.Message{start}, Attempt: 1},
		Lookup: lookup, Now: t0.Add(time.Second)}, nil)
	if err != nil || ex == nil {
		t.Fatalf("step 1: %v, executor %v", err, ex)
	}
	ex.Close()
	history := slices.Clone(out1.NewEvents)
	inst.Status = backend.StatusRunning
	msgA := completedMsg(0, "a")
	wi2 := func() *backend.OrchestrationWorkItem {
		in := inst
		return &backend.OrchestrationWorkItem{Instance: &in, History: slices.Clone(history), Messages: []*backend.Message{msgA}, Attempt: 2}
	}
	out2, err := Execute(&Params{WorkItem: wi2(), Lookup: lookup, Now: t0.Add(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	h2 := append(slices.Clone(history), out2.NewEvents...)
	msgB := completedMsg(1, "b")
	step3 := func(wi *backend.OrchestrationWorkItem) *backend.CompleteOrchestrationStepParams {
		out, err := Execute(&Params{WorkItem: wi, Lookup: lookup, Now: t0.Add(3 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	base := func() *backend.OrchestrationWorkItem {
		in := inst
		return &backend.OrchestrationWorkItem{Instance: &in, History: slices.Clone(h2), Messages: []*backend.Message{msgB}, Attempt: 3}
	}
	changes := map[string]func(wi *backend.OrchestrationWorkItem){
		"none": func(*backend.OrchestrationWorkItem) {},
		"longer history": func(wi *backend.OrchestrationWorkItem) {
			wi.History = append(wi.History, &backend.Event{Type: backend.EventOrchestratorStarted, Timestamp: t0})
		},
		"other last event": func(wi *backend.OrchestrationWorkItem) {
			last := *wi.History[len(wi.History)-1]
			last.Input = []byte("other")
			wi.History[len(wi.History)-1] = &last
		},
		"other timestamp": func(wi *backend.OrchestrationWorkItem) {
			last := *wi.History[len(wi.History)-1]
			last.Timestamp = last.Timestamp.Add(time.Nanosecond)
			wi.History[len(wi.History)-1] = &last
		},
		"other first event": func(wi *backend.OrchestrationWorkItem) {
			first := *wi.History[0]
			first.Timestamp = first.Timestamp.Add(time.Hour)
			wi.History[0] = &first
		},
		"other execution": func(wi *backend.OrchestrationWorkItem) { wi.Instance.ExecutionID = "exec-2" },
		"re-created":      func(wi *backend.OrchestrationWorkItem) { wi.Instance.CreatedAt = t0.Add(time.Minute) },
		"older delivery":  func(wi *backend.OrchestrationWorkItem) { wi.Attempt = 2 },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			// The executor of step 2, committed.
			_, ex, _, err := ExecuteSticky(&Params{WorkItem: wi2(), Lookup: lookup, Now: t0.Add(2 * time.Second)}, nil)
			if err != nil || ex == nil {
				t.Fatalf("step 2: %v, executor %v", err, ex)
			}
			ex.Committed()
			wi := base()
			change(wi)
			want := step3(wi)
			got, next, how, err := ExecuteSticky(&Params{WorkItem: wi, Lookup: lookup, Now: t0.Add(3 * time.Second)}, ex)
			defer next.Close()
			if err != nil {
				t.Fatal(err)
			}
			wantHow := StickyStale
			if name == "none" {
				wantHow = StickyHit
			}
			if how != wantHow {
				t.Fatalf("outcome %d; want %d", how, wantHow)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("effects %v; want those of a replay %v", types(got.NewEvents), types(want.NewEvents))
			}
		})
	}
}

// TestStickyPanicStopsExecutor: an engine panic in a step that was handed
// a cached executor stops that executor's goroutine too.
func TestStickyPanicStopsExecutor(t *testing.T) {
	fn := chain("A", "B")
	inst := backend.Instance{ID: testInstance, Name: testName, ExecutionID: testExecution, Status: backend.StatusPending, CreatedAt: t0}
	start := &backend.Message{ID: "start", InstanceID: testInstance, ExecutionID: testExecution,
		Event: &backend.Event{Type: backend.EventExecutionStarted, Input: []byte("x"), Timestamp: t0}}
	out, ex, _, err := ExecuteSticky(&Params{WorkItem: &backend.OrchestrationWorkItem{Instance: &inst, Messages: []*backend.Message{start}, Attempt: 1},
		Lookup: func(string) (Orchestrator, bool) { return fn, true }, Now: t0}, nil)
	if err != nil || ex == nil {
		t.Fatalf("step 1: %v, executor %v", err, ex)
	}
	ex.Committed()
	inst.Status = backend.StatusRunning
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		_, _, _, _ = ExecuteSticky(&Params{WorkItem: &backend.OrchestrationWorkItem{Instance: &inst, History: out.NewEvents,
			Messages: []*backend.Message{completedMsg(0, "a")}, Attempt: 2},
			Lookup: func(string) (Orchestrator, bool) { panic("engine bug") }, Now: t0}, ex)
	}()
	select {
	case _, ok := <-ex.c.co.handoff:
		if ok {
			t.Fatal("the executor's coroutine handed control over")
		}
	default:
		t.Fatal("the executor's goroutine still runs after the panic")
	}
}

// TestStickySizeCountsEveryEvent checks the size that bounds the sticky
// cache by bytes (Executor.Size): after every committed step, continued or
// replayed, it counts every event of the history the executor applied, as
// a replay of that history from the start would.
func TestStickySizeCountsEveryEvent(t *testing.T) {
	hits := 0
	for seed := uint64(1); seed <= 50; seed++ {
		s := newStore(t, seed)
		var ex *Executor
		for step := 0; !s.done(); step++ {
			if step > 500 {
				t.Fatalf("seed %d: no end after %d steps", seed, step)
			}
			p := &Params{WorkItem: s.workItem(), Lookup: programLookup, Now: s.now}
			out, next, how, err := ExecuteSticky(p, ex)
			if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			if how == StickyHit {
				hits++
			}
			s.commit(out)
			ex = next
			if ex == nil {
				continue
			}
			ex.Committed()
			want := int64(executorBaseSize)
			for _, ev := range s.history {
				want += eventSize(ev)
			}
			if got := ex.Size(); got != want || ex.HistoryLen() != len(s.history) {
				t.Fatalf("seed %d step %d (outcome %d): size %d over %d events, want %d over %d",
					seed, step, how, got, ex.HistoryLen(), want, len(s.history))
			}
		}
		ex.Close()
	}
	if hits == 0 {
		t.Fatal("no step continued an executor")
	}
}
