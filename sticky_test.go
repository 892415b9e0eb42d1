package duro

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/memory"
	"github.com/durohq/duro/internal/replay"
)

// stickyRig drives orchestration steps and activities by hand, claiming
// each work item from a memory store and handing it to the worker of the
// test's choice, so that a test decides which worker takes each step.
type stickyRig struct {
	t   *testing.T
	be  *memory.Backend
	c   *Client
	reg *Registry
	// entered and exited count the orchestration goroutines that began
	// and those that unwound (an evicted or closed executor's does).
	entered, exited atomic.Int64
	// fixed makes activity Fail succeed.
	fixed atomic.Bool
}

func newStickyRig(t *testing.T) *stickyRig {
	be, err := memory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	r := &stickyRig{t: t, be: be, c: NewClient(be, nil), reg: NewRegistry()}
	RegisterActivity(r.reg, "Echo", func(ctx ActivityContext, s string) (string, error) { return "echo:" + s, nil })
	RegisterActivity(r.reg, "Fail", func(ctx ActivityContext, s string) (string, error) {
		if strings.HasPrefix(s, "fail") && !r.fixed.Load() {
			return "", fmt.Errorf("asked to fail: %s", s)
		}
		return "fixed:" + s, nil
	})
	// Collect waits for n events, calling Echo with each, and returns
	// what it got. Its deferred call counts the goroutines that unwind
	// (an evicted or closed executor's does).
	RegisterOrchestration(r.reg, "Collect", func(ctx *OrchestrationContext, n int) (string, error) {
		r.entered.Add(1)
		defer r.exited.Add(1)
		var got []string
		for range n {
			var v, e string
			if err := ctx.WaitForEvent("next", -1).Await(&v); err != nil {
				return "", err
			}
			if err := ctx.CallActivity("Echo", v).Await(&e); err != nil {
				return "", err
			}
			got = append(got, e)
		}
		return strings.Join(got, ","), nil
	})
	return r
}

func (r *stickyRig) worker(name string, opts WorkerOptions) *Worker {
	opts.Name = name
	opts.Logger = slog.New(slog.DiscardHandler)
	w, err := NewWorker(r.be, r.reg, &opts)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(w.sticky.close)
	return w
}

// step claims the next orchestration step and runs it on w.
func (r *stickyRig) step(w *Worker) {
	r.t.Helper()
	ctx := context.Background()
	wi, err := r.be.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: w.opts.Name, LeaseDuration: time.Minute})
	if err != nil || wi == nil {
		r.t.Fatalf("claim step: %v, %v", wi, err)
	}
	w.runStep(ctx, wi)
}

// activity claims the next activity and runs it on w.
func (r *stickyRig) activity(w *Worker) {
	r.t.Helper()
	ctx := context.Background()
	wi, err := r.be.ClaimActivity(ctx, &backend.ClaimParams{Owner: w.opts.Name, LeaseDuration: time.Minute})
	if err != nil || wi == nil {
		r.t.Fatalf("claim activity: %v, %v", wi, err)
	}
	w.runActivity(ctx, wi)
}

func (r *stickyRig) start(name, id string, input any) {
	r.t.Helper()
	if _, err := r.c.Start(context.Background(), name, input, StartOptions{InstanceID: id}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *stickyRig) raise(id, v string) {
	r.t.Helper()
	if err := r.c.RaiseEvent(context.Background(), id, "next", v); err != nil {
		r.t.Fatal(err)
	}
}

// event raises v, and runs the step that takes it on ws, the activity it
// calls and the step that takes the activity's result on wr.
func (r *stickyRig) event(id, v string, ws, wr *Worker) {
	r.t.Helper()
	r.raise(id, v)
	r.step(ws)
	r.activity(ws)
	r.step(wr)
}

func (r *stickyRig) output(id string) (Status, string) {
	r.t.Helper()
	inst, err := r.c.Get(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	var s string
	if inst.Status == StatusCompleted {
		if err := inst.Output(&s); err != nil {
			r.t.Fatal(err)
		}
	}
	return inst.Status, s
}

// checkLive checks that the orchestration goroutines still alive are
// exactly the cached executors', want of them.
func (r *stickyRig) checkLive(w *Worker, want int) {
	r.t.Helper()
	n, _ := w.sticky.len()
	if live := r.entered.Load() - r.exited.Load(); n != want || live != int64(n) {
		r.t.Fatalf("%d executors cached, %d orchestration goroutines alive; want %d of each", n, live, want)
	}
}

func checkSticky(t *testing.T, w *Worker, hits, misses, stale, evictions int64) {
	t.Helper()
	s := w.Stats()
	if s.StickyHits != hits || s.StickyMisses != misses || s.StickyStale != stale || s.StickyEvictions != evictions {
		t.Fatalf("%s: sticky hits %d, misses %d, stale %d, evictions %d; want %d, %d, %d, %d", w.opts.Name,
			s.StickyHits, s.StickyMisses, s.StickyStale, s.StickyEvictions, hits, misses, stale, evictions)
	}
}

// TestStickyOtherWorkerStep: a step another worker commits between two
// steps of a worker leaves that worker's cached executor behind the
// history; the worker finds it stale, replays, and the instance's result
// is the one it would have without the cache.
func TestStickyOtherWorkerStep(t *testing.T) {
	r := newStickyRig(t)
	a, b := r.worker("a", WorkerOptions{}), r.worker("b", WorkerOptions{})
	r.start("Collect", "i", 3)
	r.step(a)               // start: a replays (nothing cached) and keeps it
	r.event("i", "1", a, a) // two hits on a
	checkSticky(t, a, 2, 1, 0, 0)
	r.event("i", "2", b, b) // b takes both steps of event 2
	checkSticky(t, b, 1, 1, 0, 0)
	r.event("i", "3", a, a) // a's executor is two steps behind: stale
	checkSticky(t, a, 3, 2, 1, 0)
	if st, out := r.output("i"); st != StatusCompleted || out != "echo:1,echo:2,echo:3" {
		t.Fatalf("instance %s with output %q", st, out)
	}
}

// TestStickySuspendResumeTerminate: the suspension of a cached instance
// replays from the start (the cached executor is dropped, its goroutine
// ended), the steps after the resume are cached again, and a termination
// is right however stale the executor it leaves behind.
func TestStickySuspendResumeTerminate(t *testing.T) {
	r := newStickyRig(t)
	w := r.worker("w", WorkerOptions{})
	ctx := context.Background()
	r.start("Collect", "i", 3)
	r.step(w)
	r.event("i", "1", w, w)
	checkSticky(t, w, 2, 1, 0, 0)
	if err := r.c.Suspend(ctx, "i", "test"); err != nil {
		t.Fatal(err)
	}
	r.checkLive(w, 1)
	r.step(w) // bypassed: the step suspends
	if st, _ := r.output("i"); st != StatusSuspended {
		t.Fatalf("status %s; want Suspended", st)
	}
	r.checkLive(w, 0)
	if err := r.c.Resume(ctx, "i", "test"); err != nil {
		t.Fatal(err)
	}
	r.step(w)               // the resume: a replay (nothing cached; not kept, since it resumes)
	r.event("i", "2", w, w) // a replay, then a hit
	checkSticky(t, w, 3, 4, 0, 0)
	r.checkLive(w, 1)
	// The client runs the termination's step too; the executor the worker
	// keeps is behind the history now, and ends with the cache.
	if err := r.c.Terminate(ctx, "i", "enough"); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.output("i"); st != StatusTerminated {
		t.Fatalf("status %s; want Terminated", st)
	}
	r.checkLive(w, 1)
	w.sticky.close()
	r.checkLive(w, 0)
}

// TestStickyRewind: an instance that failed is rewound; the rewound
// execution replays (histories with a rewind are never cached) and ends as
// without the cache.
func TestStickyRewind(t *testing.T) {
	r := newStickyRig(t)
	RegisterOrchestration(r.reg, "Steps", func(ctx *OrchestrationContext, n int) (string, error) {
		var out []string
		for i := range n {
			in := fmt.Sprint(i)
			if i == 2 {
				in = "fail" + in
			}
			var s string
			if err := ctx.CallActivity("Fail", in).Await(&s); err != nil {
				return "", err
			}
			out = append(out, s)
		}
		return strings.Join(out, ","), nil
	})
	w := r.worker("w", WorkerOptions{})
	r.start("Steps", "i", 4)
	r.step(w)
	for range 3 {
		r.activity(w)
		r.step(w)
	}
	if st, _ := r.output("i"); st != StatusFailed {
		t.Fatalf("status %s; want Failed", st)
	}
	checkSticky(t, w, 3, 1, 0, 0)
	r.fixed.Store(true)
	if err := r.c.Rewind(context.Background(), "i", "fixed"); err != nil {
		t.Fatal(err)
	}
	// The rewind step, then the two activities it re-runs and schedules.
	r.step(w)
	for range 2 {
		r.activity(w)
		r.step(w)
	}
	if st, out := r.output("i"); st != StatusCompleted || out != "fixed:0,fixed:1,fixed:fail2,fixed:3" {
		t.Fatalf("instance %s with output %q", st, out)
	}
	checkSticky(t, w, 3, 4, 0, 0)
	r.checkLive(w, 0)
}

// TestStickyEviction: the cache keeps at most StickyOrchestrations
// executors and about StickyCacheBytes; evicted executors' goroutines end,
// and their instances' next steps replay.
func TestStickyEviction(t *testing.T) {
	t.Run("count", func(t *testing.T) {
		r := newStickyRig(t)
		w := r.worker("w", WorkerOptions{StickyOrchestrations: 2})
		for i := range 5 {
			r.start("Collect", fmt.Sprint(i), 1)
			r.step(w)
		}
		r.checkLive(w, 2)
		checkSticky(t, w, 0, 5, 0, 3)
		// The two most recent (3 and 4) are hits, the rest replay.
		for i := range 5 {
			id := fmt.Sprint(i)
			r.event(id, id, w, w)
			if st, out := r.output(id); st != StatusCompleted || out != "echo:"+id {
				t.Fatalf("instance %s: %s with output %q", id, st, out)
			}
		}
		s := w.Stats()
		if s.StickyHits < 2 {
			t.Fatalf("hits %d; want at least the two cached instances'", s.StickyHits)
		}
		r.checkLive(w, 0)
	})
	t.Run("bytes", func(t *testing.T) {
		r := newStickyRig(t)
		// Room for two executors' fixed cost, not three.
		w := r.worker("w", WorkerOptions{StickyCacheBytes: 40 << 10})
		for i := range 3 {
			r.start("Collect", fmt.Sprint(i), 2)
			r.step(w)
		}
		if _, bytes := w.sticky.len(); bytes > 40<<10 {
			t.Fatalf("%d bytes cached; want at most 40 KiB", bytes)
		}
		r.checkLive(w, 2)
		// An event whose payload alone is over the bound: the executor
		// that applied it is not kept.
		r.raise("2", strings.Repeat("x", 64<<10))
		r.step(w)
		r.checkLive(w, 1)
		checkSticky(t, w, 1, 3, 0, 1)
	})
	t.Run("disabled", func(t *testing.T) {
		r := newStickyRig(t)
		w := r.worker("w", WorkerOptions{StickyOrchestrations: -1})
		r.start("Collect", "i", 1)
		r.step(w)
		r.event("i", "1", w, w)
		if w.sticky != nil || r.exited.Load() != 3 {
			t.Fatalf("cache %v, %d goroutines ended; want none and one per step", w.sticky, r.exited.Load())
		}
		checkSticky(t, w, 0, 0, 0, 0)
	})
}

// TestStickyStopEndsExecutors: a started worker that caches executors
// ends their goroutines when it stops.
func TestStickyStopEndsExecutors(t *testing.T) {
	r := newStickyRig(t)
	ignore := goleak.IgnoreCurrent() // the store's own goroutines
	w := r.worker("w", WorkerOptions{PollInterval: 5 * time.Millisecond})
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 4 {
		r.start("Collect", fmt.Sprint(i), 2)
		r.raise(fmt.Sprint(i), "x")
	}
	// Each instance waits for its second event once the first is done.
	for w.Stats().StickyHits < 4 || func() bool { n, _ := w.sticky.len(); return n < 4 }() {
		select {
		case <-ctx.Done():
			t.Fatalf("cache never held the four instances: %+v", w.Stats())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := w.sticky.len(); n != 0 || r.exited.Load() != r.entered.Load() {
		t.Fatalf("%d cached, %d of %d goroutines ended after Stop", n, r.exited.Load(), r.entered.Load())
	}
	goleak.VerifyNone(t, ignore)
}

// TestStickyWorkloadReplays runs a mixed workload on a started worker with
// a cache too small for it (executors are evicted while their instances
// run, and several instances share the worker's slots): activities with
// retries of a flaky one, durable timers, events, children,
// continue-as-new, a patch and side effects. Every instance must end with
// the output its input determines, and every history the cached executors
// wrote must replay from the start (ReplayHistory) without a divergence.
func TestStickyWorkloadReplays(t *testing.T) {
	for _, entries := range []int{-1, 3} {
		t.Run(fmt.Sprintf("sticky=%d", entries), func(t *testing.T) { stickyWorkload(t, entries) })
	}
}

func stickyWorkload(t *testing.T, entries int) {
	r := newStickyRig(t)
	var flaky sync.Map // input → calls
	RegisterActivity(r.reg, "Flaky", func(ctx ActivityContext, s string) (string, error) {
		n, _ := flaky.LoadOrStore(s, new(atomic.Int32))
		if n.(*atomic.Int32).Add(1) < 3 {
			return "", fmt.Errorf("flaky %s", s)
		}
		return "ok:" + s, nil
	})
	RegisterOrchestration(r.reg, "Child", func(ctx *OrchestrationContext, s string) (string, error) {
		var e string
		err := ctx.CallActivity("Echo", s).Await(&e)
		return "child(" + e + ")", err
	})
	type in struct {
		ID   int
		Gen  int
		Acc  string
		Step int
	}
	RegisterOrchestration(r.reg, "Mixed", func(ctx *OrchestrationContext, x in) (string, error) {
		acc := x.Acc
		for i := range 6 {
			var s string
			var err error
			switch (x.ID + i + x.Gen) % 6 {
			case 0:
				err = ctx.CallActivity("Echo", fmt.Sprint(i)).Await(&s)
			case 1:
				err = ctx.CallActivity("Flaky", fmt.Sprintf("%d.%d.%d", x.ID, x.Gen, i),
					CallOptions{RetryPolicy: &RetryPolicy{MaxAttempts: 5, InitialInterval: time.Millisecond}}).Await(&s)
			case 2:
				err = ctx.Sleep(time.Millisecond)
				s = "slept"
			case 3:
				err = ctx.CallSubOrchestration("Child", fmt.Sprint(i)).Await(&s)
			case 4:
				// Events buffered by one execution do not carry over a
				// continue-as-new: only the first execution waits.
				if x.Gen == 0 {
					err = ctx.WaitForEvent("next", -1).Await(&s)
				} else {
					err = ctx.CallActivity("Echo", "late").Await(&s)
				}
			case 5:
				if ctx.Patched("p") {
					s = "patched"
				}
				_ = ctx.SetCustomStatus(ctx.NewUUID().String())
			}
			if err != nil {
				return "", err
			}
			acc += s + ";"
		}
		if x.Gen < 1 {
			return "", ctx.ContinueAsNew(in{ID: x.ID, Gen: x.Gen + 1, Acc: acc})
		}
		return acc, nil
	})
	w := r.worker("w", WorkerOptions{PollInterval: 5 * time.Millisecond, StickyOrchestrations: entries})
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 12
	for i := range n {
		r.start("Mixed", fmt.Sprint(i), in{ID: i})
	}
	// Each instance's first execution waits for one event.
	for i := range n {
		r.raise(fmt.Sprint(i), "ev")
	}
	for i := range n {
		id := fmt.Sprint(i)
		inst, err := r.c.Wait(ctx, id)
		if err != nil || inst.Status != StatusCompleted {
			t.Fatalf("instance %s: %v, %v", id, inst, err)
		}
		var got string
		if err := inst.Output(&got); err != nil {
			t.Fatal(err)
		}
		want := ""
		for gen := range 2 {
			for j := range 6 {
				switch (i + j + gen) % 6 {
				case 0:
					want += "echo:" + fmt.Sprint(j) + ";"
				case 1:
					want += fmt.Sprintf("ok:%d.%d.%d;", i, gen, j)
				case 2:
					want += "slept;"
				case 3:
					want += "child(echo:" + fmt.Sprint(j) + ");"
				case 4:
					if gen == 0 {
						want += "ev;"
					} else {
						want += "echo:late;"
					}
				case 5:
					want += "patched;"
				}
			}
		}
		if got != want {
			t.Fatalf("instance %s: output %q; want %q", id, got, want)
		}
		h, err := r.c.History(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := ReplayHistory(r.reg, h); err != nil {
			t.Fatalf("instance %s: the history does not replay: %v", id, err)
		}
	}
	s := w.Stats()
	t.Logf("sticky: %+v", s)
	if entries > 0 && (s.StickyHits == 0 || s.StickyEvictions == 0) {
		t.Fatalf("the cache was not exercised: %d hits, %d evictions", s.StickyHits, s.StickyEvictions)
	}
}

// TestStickyKeepsTheLaterStep puts two executors of one instance into the
// cache, the later step's first (as when the step an eager activity woke
// commits before the earlier step's executor is put back): the later one
// stays, and the earlier one is closed. Put the other way round, the later
// one replaces the earlier.
func TestStickyKeepsTheLaterStep(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	wait := func(c *replay.Context, _ []byte) ([]byte, error) {
		f := c.CreateTimer(c.Now().Add(time.Hour))
		c.Await(f.Done)
		return nil, nil
	}
	executor := func(attempt int64) *replay.Executor {
		t.Helper()
		wi := &backend.OrchestrationWorkItem{Attempt: attempt, Deliveries: 1,
			Instance: &backend.Instance{ID: "i", Name: "Wait", ExecutionID: "e", Status: backend.StatusPending, CreatedAt: t0},
			Messages: []*backend.Message{{ID: "start", InstanceID: "i", ExecutionID: "e",
				Event: &backend.Event{Type: backend.EventExecutionStarted, Timestamp: t0}}}}
		_, ex, _, err := replay.ExecuteSticky(&replay.Params{WorkItem: wi, Now: t0,
			Lookup: func(string) (replay.Orchestrator, bool) { return wait, true }}, nil)
		if err != nil || ex == nil {
			t.Fatalf("step at attempt %d: executor %v, %v", attempt, ex, err)
		}
		ex.Committed()
		return ex
	}
	for _, order := range [][2]int64{{2, 1}, {1, 2}} {
		s := newStickyCache(10, 1<<20, &workerStats{})
		for _, a := range order {
			s.put(executor(a))
		}
		got := s.take("i")
		if got == nil || got.Attempt() != 2 {
			t.Fatalf("put at attempts %v: the cache kept %v, want the executor of attempt 2", order, got)
		}
		got.Close()
		if n, _ := s.len(); n != 0 {
			t.Fatalf("put at attempts %v: %d executors left after the take, want none", order, n)
		}
		s.close()
	}
}
