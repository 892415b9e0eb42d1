package backendtest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
)

type counter struct {
	Value int `json:"value"`
}

// registerCounter registers the "counter" entity: add, get, fail (changes
// the state, then fails), reset (deletes the state).
func registerCounter(r *duro.Registry) {
	duro.RegisterEntityOperation(r, "counter", "add", func(ctx duro.EntityContext, s *counter, n int) (int, error) {
		s.Value += n
		return s.Value, nil
	})
	duro.RegisterEntityOperation(r, "counter", "get", func(ctx duro.EntityContext, s *counter, _ any) (int, error) {
		return s.Value, nil
	})
	duro.RegisterEntityOperation(r, "counter", "fail", func(ctx duro.EntityContext, s *counter, _ any) (int, error) {
		s.Value = -1000
		return 0, duro.NewError("Nope", "fail always fails")
	})
	duro.RegisterEntityOperation(r, "counter", "reset", func(ctx duro.EntityContext, s *counter, _ any) (any, error) {
		ctx.DeleteState()
		return nil, nil
	})
}

func entityValue(t *testing.T, c *duro.Client, id duro.EntityID) int {
	t.Helper()
	st, err := c.GetEntity(bg(t), id)
	if err != nil {
		t.Fatal(err)
	}
	var v counter
	if err := st.State(&v); err != nil {
		t.Fatal(err)
	}
	return v.Value
}

// waitEntity polls until the entity's counter reaches want.
func waitEntity(t *testing.T, c *duro.Client, id duro.EntityID, want int) {
	t.Helper()
	got := 0
	if !poll(30*time.Second, func() bool {
		var ok bool
		got, ok = counterValue(c, id)
		return ok && got == want
	}) {
		t.Fatalf("entity %s = %d, want %d", id, got, want)
	}
}

func entityTests() []test {
	return []test{
		{"ClientSignalsAndIdempotencyKeys", func(t *testing.T, e *env) {
			env := newSDKEnv(t, e.b, registerCounter)
			ctx := bg(t)
			id := duro.EntityID{Name: "counter", Key: "a"}
			for i := range 10 {
				if err := env.client.SignalEntity(ctx, id, "add", 1, duro.SignalOptions{IdempotencyKey: fmt.Sprint("k", i%5)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := env.client.SignalEntity(ctx, id, "add", 100); err != nil {
				t.Fatal(err)
			}
			if v := entityAfterMarker(t, env.client, id, 1000); v != 105 {
				t.Fatalf("counter %d after 5 keyed signals sent twice and one more", v)
			}
			if _, err := env.client.GetEntity(ctx, duro.EntityID{Name: "counter", Key: "never"}); !errors.Is(err, duro.ErrInstanceNotFound) {
				t.Fatalf("unknown entity: %v", err)
			}
			if err := env.client.SignalEntity(ctx, duro.EntityID{Name: "bad@name", Key: "x"}, "add", 1); err == nil {
				t.Fatal("an entity name with '@' was accepted")
			}
			page, err := env.client.ListEntities(ctx, duro.EntityQuery{Name: "counter"})
			if err != nil || len(page.Entities) != 1 || page.Entities[0].ID != id {
				t.Fatalf("list: %+v %v", page, err)
			}
		}},
		{"OrchestrationCallsSignalsAndFailures", func(t *testing.T, e *env) {
			env := newSDKEnv(t, e.b, func(r *duro.Registry) {
				registerCounter(r)
				duro.RegisterOrchestration(r, "UseCounter", func(ctx *duro.OrchestrationContext, key string) (string, error) {
					id := duro.EntityID{Name: "counter", Key: key}
					for range 3 {
						if err := ctx.SignalEntity(id, "add", 2); err != nil {
							return "", err
						}
					}
					var v int
					if err := ctx.CallEntity(id, "add", 10).Await(&v); err != nil {
						return "", err
					}
					err := ctx.CallEntity(id, "fail", nil).Await(nil)
					var te *duro.TaskError
					if !errors.As(err, &te) || te.Kind != duro.KindEntity || te.Type != "Nope" {
						return "", fmt.Errorf("want entity TaskError, got %v", err)
					}
					errU := ctx.CallEntity(id, "nope", nil).Await(nil)
					if !errors.As(errU, &te) || te.Type != "UnknownOperation" {
						return "", fmt.Errorf("want UnknownOperation, got %v", errU)
					}
					var after int
					if err := ctx.CallEntity(id, "get", nil).Await(&after); err != nil {
						return "", err
					}
					return fmt.Sprintf("%d %d", v, after), nil
				})
			})
			inst := env.run(t, "UseCounter", "b")
			if got := mustOutput[string](t, inst); got != "16 16" {
				t.Fatalf("got %q (a failed operation must not change the state)", got)
			}
			if err := env.client.SignalEntity(bg(t), duro.EntityID{Name: "counter", Key: "b"}, "reset", nil); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, func() bool {
				st, err := env.client.GetEntity(context.Background(), duro.EntityID{Name: "counter", Key: "b"})
				return err == nil && !st.Exists
			})
		}},
		{"ReexecutedActivitySignalsCountOnce", func(t *testing.T, e *env) {
			const calls = 100
			id := duro.EntityID{Name: "counter", Key: "metrics"}
			var signalled atomic.Int32
			fan := func(r *duro.Registry) {
				duro.RegisterOrchestration(r, "Fan", func(ctx *duro.OrchestrationContext, _ any) (any, error) {
					var ts []*duro.Task
					for i := range calls {
						ts = append(ts, ctx.CallActivity("Count", i))
					}
					return nil, ctx.AwaitAll(ts...)
				})
				registerCounter(r)
			}
			gate := &claimGate{Backend: e.b} // so that the second worker's deliveries are attempt 2
			first := newSDKEnvOpts(t, gate, &duro.WorkerOptions{ActivityConcurrency: calls}, func(r *duro.Registry) {
				fan(r)
				duro.RegisterActivity(r, "Count", func(ctx duro.ActivityContext, _ int) (any, error) {
					for range 3 {
						if err := ctx.SignalEntity(id, "add", 1); err != nil {
							return nil, err
						}
					}
					signalled.Add(1)
					<-ctx.Done() // killed after signalling, before completing
					return nil, ctx.Err()
				})
			})
			ctx := bg(t)
			iid, err := first.client.Start(ctx, "Fan", nil)
			if err != nil {
				t.Fatal(err)
			}
			waitUntil(t, func() bool { return signalled.Load() == calls })
			stopAbandoning(ctx, first, gate)
			var attempts2 atomic.Int32
			second := newSDKEnv(t, e.b, func(r *duro.Registry) {
				fan(r)
				duro.RegisterActivity(r, "Count", func(ctx duro.ActivityContext, _ int) (any, error) {
					if ctx.Attempt() == 2 {
						attempts2.Add(1)
					}
					for range 3 {
						if err := ctx.SignalEntity(id, "add", 1); err != nil {
							return nil, err
						}
					}
					return nil, nil
				})
			})
			inst, err := second.client.Wait(ctx, iid)
			if err != nil || inst.Status != duro.StatusCompleted {
				t.Fatalf("%+v %v", inst, err)
			}
			// Every signal was sent before the instance completed.
			if v := entityAfterMarker(t, second.client, id, 100000); v != 3*calls || attempts2.Load() != calls {
				t.Fatalf("counter %d (want %d) after %d re-executions", v, 3*calls, attempts2.Load())
			}
		}},
		{"CriticalSectionsOppositeOrder", testCriticalSectionsExclusive},
		{"TerminatedOrchestrationReleasesLocks", func(t *testing.T, e *env) {
			env := newSDKEnv(t, e.b, func(r *duro.Registry) {
				registerCounter(r)
				duro.RegisterOrchestration(r, "Hold", func(ctx *duro.OrchestrationContext, _ any) (any, error) {
					if _, err := ctx.LockEntities(duro.EntityID{Name: "counter", Key: "z"}); err != nil {
						return nil, err
					}
					return nil, ctx.WaitForEvent("never", -1).Await(nil)
				})
				duro.RegisterOrchestration(r, "Use", func(ctx *duro.OrchestrationContext, _ any) (int, error) {
					cs, err := ctx.LockEntities(duro.EntityID{Name: "counter", Key: "z"})
					if err != nil {
						return 0, err
					}
					var v int
					err = ctx.CallEntity(duro.EntityID{Name: "counter", Key: "z"}, "add", 1).Await(&v)
					cs.Unlock()
					return v, err
				})
			})
			ctx := bg(t)
			holder, _ := env.client.Start(ctx, "Hold", nil)
			waitUntil(t, func() bool {
				st, err := env.client.GetEntity(context.Background(), duro.EntityID{Name: "counter", Key: "z"})
				return err == nil && st.LockedBy == holder
			})
			if err := env.client.SignalEntity(ctx, duro.EntityID{Name: "counter", Key: "z"}, "add", 10); err != nil {
				t.Fatal(err)
			}
			user, _ := env.client.Start(ctx, "Use", nil)
			// The signal and then the second section's lock request wait in
			// the entity's queue while the first section holds it.
			var st *duro.EntityState
			if !poll(30*time.Second, func() bool {
				var err error
				st, err = env.client.GetEntity(context.Background(), duro.EntityID{Name: "counter", Key: "z"})
				return err == nil && (st.Queued == 2 || st.LockedBy != holder)
			}) || st.Queued != 2 || st.LockedBy != holder {
				t.Fatalf("entity %+v: want it locked by %q, with the signal and the lock request queued", st, holder)
			}
			if inst, err := env.client.Get(ctx, user); err != nil || inst.Status.IsTerminal() {
				t.Fatalf("the second orchestration got the lock while the first held it: %+v %v", inst, err)
			}
			if err := env.client.Terminate(ctx, holder, "stuck"); err != nil {
				t.Fatal(err)
			}
			inst, err := env.client.Wait(ctx, user)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustOutput[int](t, inst); got != 11 {
				t.Fatalf("got %d: the queued signal runs before the next critical section", got)
			}
		}},
		{"DedupWindow", func(t *testing.T, e *env) {
			env := newSDKEnvOpts(t, e.b, &duro.WorkerOptions{EntityDedupWindow: 2}, registerCounter)
			ctx := bg(t)
			id := duro.EntityID{Name: "counter", Key: "w"}
			send := func(key string, want int) {
				t.Helper()
				if err := env.client.SignalEntity(ctx, id, "add", 1, duro.SignalOptions{IdempotencyKey: key}); err != nil {
					t.Fatal(err)
				}
				waitEntity(t, env.client, id, want)
			}
			send("k1", 1)
			send("k1", 1) // inside the window: dropped
			for i := 2; i <= 5; i++ {
				send(fmt.Sprint("k", i), i) // k1 leaves the window; the entity continues as new
			}
			// Outside the window, and after the entity continued as new, the
			// documented behaviour: a late duplicate is applied again.
			send("k1", 6)
		}},
	}
}

// account is the state of the "account" entity of
// CriticalSectionsOppositeOrder: a balance, and a ledger of the critical
// sections inside it. Holder is the section inside now; Overlaps lists
// every time a section entered (or left) while another one was inside,
// which mutual exclusion never lets happen.
type account struct {
	Value    int      `json:"value"`
	Holder   string   `json:"holder,omitempty"`
	Entries  int      `json:"entries"`
	Overlaps []string `json:"overlaps,omitempty"`
}

func registerAccount(r *duro.Registry) {
	duro.RegisterEntityOperation(r, "account", "enter", func(ctx duro.EntityContext, s *account, holder string) (any, error) {
		if s.Holder != "" {
			s.Overlaps = append(s.Overlaps, holder+" entered while "+s.Holder+" was inside")
		}
		s.Holder = holder
		s.Entries++
		return nil, nil
	})
	duro.RegisterEntityOperation(r, "account", "exit", func(ctx duro.EntityContext, s *account, holder string) (any, error) {
		if s.Holder != holder {
			s.Overlaps = append(s.Overlaps, holder+" left while "+s.Holder+" was inside")
		}
		s.Holder = ""
		return nil, nil
	})
	duro.RegisterEntityOperation(r, "account", "add", func(ctx duro.EntityContext, s *account, n int) (int, error) {
		s.Value += n
		return s.Value, nil
	})
}

// testCriticalSectionsExclusive: orchestrations lock the same two entities,
// half of them naming them in the opposite order, and inside the critical
// section enter both, move an amount from one to the other, and leave
// both. They all complete (no deadlock), and the entities' ledgers show
// that no two critical sections were ever inside one entity at once.
func testCriticalSectionsExclusive(t *testing.T, e *env) {
	const sections = 10
	env := newSDKEnv(t, e.b, func(r *duro.Registry) {
		registerAccount(r)
		duro.RegisterOrchestration(r, "Transfer", func(ctx *duro.OrchestrationContext, keys []string) (string, error) {
			from, to := duro.EntityID{Name: "account", Key: keys[0]}, duro.EntityID{Name: "account", Key: keys[1]}
			cs, err := ctx.LockEntities(from, to)
			if err != nil {
				return "", err
			}
			defer cs.Unlock()
			me := ctx.InstanceID()
			for _, id := range []duro.EntityID{from, to} {
				if err := ctx.CallEntity(id, "enter", me).Await(nil); err != nil {
					return "", err
				}
			}
			if err := ctx.CallEntity(from, "add", -5).Await(nil); err != nil {
				return "", err
			}
			if err := ctx.CallEntity(to, "add", 5).Await(nil); err != nil {
				return "", err
			}
			for _, id := range []duro.EntityID{from, to} {
				if err := ctx.CallEntity(id, "exit", me).Await(nil); err != nil {
					return "", err
				}
			}
			return "ok", nil
		})
	})
	ctx := bg(t)
	var ids []string
	for i := range sections {
		keys := []string{"x", "y"}
		if i%2 == 1 {
			keys = []string{"y", "x"}
		}
		id, err := env.client.Start(ctx, "Transfer", keys)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		inst, err := env.client.Wait(ctx, id)
		if err != nil || inst.Status != duro.StatusCompleted {
			t.Fatalf("%+v %v", inst, err)
		}
	}
	total := 0
	for _, key := range []string{"x", "y"} {
		id := duro.EntityID{Name: "account", Key: key}
		st, err := env.client.GetEntity(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var a account
		if err := st.State(&a); err != nil {
			t.Fatal(err)
		}
		if len(a.Overlaps) > 0 {
			t.Fatalf("entity %s: critical sections overlapped %d times: %q", id, len(a.Overlaps), a.Overlaps)
		}
		if a.Entries != sections || a.Holder != "" {
			t.Fatalf("entity %s: %d critical sections entered, %q still inside; want %d, none", id, a.Entries, a.Holder, sections)
		}
		total += a.Value
	}
	if total != 0 {
		t.Fatalf("x + y = %d, want 0", total)
	}
}

// counterValue reads a counter entity's value; false if it cannot be read
// (yet).
func counterValue(c *duro.Client, id duro.EntityID) (int, bool) {
	st, err := c.GetEntity(context.Background(), id)
	if err != nil {
		return 0, false
	}
	var v counter
	if st.State(&v) != nil {
		return 0, false
	}
	return v.Value, true
}
