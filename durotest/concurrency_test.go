package durotest_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/durotest"
)

type workItem struct {
	Inst string
	I    int
}

// Several instances fan out activities that all run at once (each waits
// for its siblings at a barrier), one of them retried after a backoff,
// then sleep: the clock does not move while any of them runs, and every
// wait is skipped.
func TestFanOutConcurrent(t *testing.T) {
	const instances, width = 3, 20
	env := durotest.New(t, durotest.WithStartTime(start))
	var mu sync.Mutex
	arrived := map[string]int{}
	barrier := map[string]chan struct{}{}
	failed := map[string]bool{}
	var wrong []string
	for i := range instances {
		barrier[fmt.Sprint("fan-", i)] = make(chan struct{})
	}
	duro.RegisterActivity(env.Registry(), "Work", func(ctx duro.ActivityContext, w workItem) (int, error) {
		at := env.Now()
		mu.Lock()
		first := !failed[w.Inst] && w.I == 0
		if first {
			failed[w.Inst] = true
		}
		ch := barrier[w.Inst]
		if arrived[w.Inst] < width {
			if arrived[w.Inst]++; arrived[w.Inst] == width {
				close(ch)
			}
		}
		mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if now := env.Now(); !now.Equal(at) {
			mu.Lock()
			wrong = append(wrong, fmt.Sprintf("%s/%d: clock moved from %v to %v while it ran", w.Inst, w.I, at, now))
			mu.Unlock()
		}
		if first {
			return 0, errors.New("first try fails")
		}
		return w.I, nil
	}, duro.ActivityOptions{RetryPolicy: &duro.RetryPolicy{MaxAttempts: 2, InitialInterval: 10 * time.Minute}})
	duro.RegisterOrchestration(env.Registry(), "FanOut", func(ctx *duro.OrchestrationContext, _ struct{}) (string, error) {
		tasks := make([]*duro.Task, width)
		for i := range tasks {
			tasks[i] = ctx.CallActivity("Work", workItem{ctx.InstanceID(), i})
		}
		sum := 0
		for _, task := range tasks {
			var n int
			if err := task.Await(&n); err != nil {
				return "", err
			}
			sum += n
		}
		after := ctx.Now().Sub(start)
		if err := ctx.Sleep(time.Hour); err != nil {
			return "", err
		}
		return fmt.Sprintf("sum %d, fanned in at +%v, done at +%v", sum, after, ctx.Now().Sub(start)), nil
	})
	ids := make([]string, instances)
	for i := range ids {
		ids[i] = env.Start("FanOut", struct{}{}, duro.StartOptions{InstanceID: fmt.Sprint("fan-", i)})
	}
	for _, id := range ids {
		want := fmt.Sprintf("sum %d, fanned in at +10m0s, done at +1h10m0s", width*(width-1)/2)
		if got := output[string](t, env.Wait(id)); got != want {
			t.Fatalf("%s: %q; want %q", id, got, want)
		}
		env.AssertActivityCalled(t, id, "Work", width+1)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(wrong) > 0 {
		t.Fatal(wrong)
	}
}

// While an activity runs, the clock stands still although another
// instance's timer is due next: the environment counts the delivery in
// flight. The activity watches the clock for a while of real time; an
// environment that skipped time while it ran would move it at once.
func TestClockStillWhileActivityRuns(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start))
	var moved []time.Time
	duro.RegisterActivity(env.Registry(), "Slow", func(ctx duro.ActivityContext, _ struct{}) (string, error) {
		at := env.Now()
		for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
			if now := env.Now(); !now.Equal(at) {
				moved = append(moved, now)
				break
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		return "slow done", nil
	})
	duro.RegisterOrchestration(env.Registry(), "Sleeper", func(ctx *duro.OrchestrationContext, _ struct{}) (time.Time, error) {
		err := ctx.Sleep(time.Minute)
		return ctx.Now(), err
	})
	duro.RegisterOrchestration(env.Registry(), "Busy", func(ctx *duro.OrchestrationContext, _ struct{}) (string, error) {
		var s string
		err := ctx.CallActivity("Slow", struct{}{}).Await(&s)
		return s, err
	})
	sleeper := env.Start("Sleeper", struct{}{})
	busy := env.Start("Busy", struct{}{})
	if got := output[string](t, env.Wait(busy)); got != "slow done" {
		t.Fatalf("output %q", got)
	}
	if len(moved) > 0 {
		t.Fatalf("the clock moved to %v while the activity ran", moved[0])
	}
	if !env.Now().Equal(start) {
		t.Fatalf("clock at %v after the activity; the timer was not needed yet", env.Now())
	}
	if got := output[time.Time](t, env.Wait(sleeper)); !got.Equal(start.Add(time.Minute)) {
		t.Fatalf("sleeper woke at %v", got)
	}
}

// Entities run in the environment too: orchestrations call a counter
// entity between timers, and the entity's state is read at the end.
func TestEntities(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start))
	duro.RegisterEntityOperation(env.Registry(), "Counter", "add", func(ctx duro.EntityContext, n *int, d int) (int, error) {
		*n += d
		return *n, nil
	})
	counter := duro.EntityID{Name: "Counter", Key: "c"}
	duro.RegisterOrchestration(env.Registry(), "Adder", func(ctx *duro.OrchestrationContext, d int) (int, error) {
		var n int
		for range 3 {
			if err := ctx.Sleep(time.Hour); err != nil {
				return 0, err
			}
			if err := ctx.CallEntity(counter, "add", d).Await(&n); err != nil {
				return 0, err
			}
		}
		return n, nil
	})
	a, b := env.Start("Adder", 1), env.Start("Adder", 10)
	env.Wait(a)
	env.Wait(b)
	st, err := env.Client().GetEntity(t.Context(), counter)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := st.State(&n); err != nil || n != 33 {
		t.Fatalf("counter %d, %v; want 33", n, err)
	}
	if !env.Now().Equal(start.Add(3 * time.Hour)) {
		t.Fatalf("clock at %v", env.Now())
	}
}
