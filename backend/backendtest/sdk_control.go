package backendtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// ledger counts executions outside the engine, by key.
type ledger struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *ledger) add(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[string]int{}
	}
	l.n[key]++
	return l.n[key]
}

func (l *ledger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.n)
}

func bg(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// controlTests check suspend/resume, operator decisions, poisoned steps and
// rewind through the SDK.
func controlTests() []test {
	return []test{
		{"SuspendKeepsMessagesInOrderUntilResume", func(t *testing.T, e *env) {
			register := func(r *duro.Registry) {
				duro.RegisterOrchestration(r, "Collect", func(ctx *duro.OrchestrationContext, n int) ([]int, error) {
					var got []int
					for range n {
						var v int
						if err := ctx.WaitForEvent("num", -1).Await(&v); err != nil {
							return nil, err
						}
						got = append(got, v)
						if err := ctx.SetCustomStatus(len(got)); err != nil {
							return nil, err
						}
					}
					return got, nil
				})
			}
			env := newSDKEnv(t, e.b, register)
			ctx := bg(t)
			id, err := env.client.Start(ctx, "Collect", 10)
			if err != nil {
				t.Fatal(err)
			}
			waitStatus(t, env.client, id, duro.StatusRunning)
			for range 2 { // idempotent
				if err := env.client.Suspend(ctx, id, "investigating"); err != nil {
					t.Fatal(err)
				}
			}
			waitStatus(t, env.client, id, duro.StatusSuspended)
			// The events arrive with no worker running; the store must then
			// not hand them to one while the instance is suspended.
			stopWorker(t, env)
			for i := range 10 {
				if err := env.client.RaiseEvent(ctx, id, "num", i); err != nil {
					t.Fatal(err)
				}
			}
			noDataWhileSuspended(t, e.b)
			inst, err := env.client.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if inst.Status != duro.StatusSuspended || len(inst.RawCustomStatus) != 0 || inst.Suspension.Reason != "investigating" {
				t.Fatalf("while suspended: %s custom %s suspension %+v", inst.Status, inst.RawCustomStatus, inst.Suspension)
			}
			env = newSDKEnv(t, e.b, register)
			for i := range 2 {
				// A second resume while the first is queued is refused (it
				// would change nothing); after it, it does nothing, or finds
				// the instance finished already.
				err := env.client.Resume(ctx, id, "all clear")
				if err != nil && (i == 0 || !errors.Is(err, duro.ErrResumePending) && !errors.Is(err, duro.ErrInstanceFinished)) {
					t.Fatal(err)
				}
			}
			inst, err = env.client.Wait(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			got := mustOutput[[]int](t, inst)
			if fmt.Sprint(got) != "[0 1 2 3 4 5 6 7 8 9]" {
				t.Fatalf("events after resume: %v", got)
			}
			h, _ := env.client.History(ctx, id)
			var kinds []string
			for _, ev := range h {
				if ev.Type == backend.EventExecutionSuspended || ev.Type == backend.EventExecutionResumed {
					kinds = append(kinds, string(ev.Type)+":"+ev.Reason)
				}
			}
			if strings.Join(kinds, ",") != "ExecutionSuspended:investigating,ExecutionResumed:all clear" {
				t.Fatalf("history records %v", kinds)
			}
			if err := env.client.Resume(ctx, id, "again"); !errors.Is(err, duro.ErrInstanceFinished) {
				t.Fatalf("resume completed instance: %v", err)
			}
			if err := env.client.Suspend(ctx, id, "again"); !errors.Is(err, duro.ErrInstanceFinished) {
				t.Fatalf("suspend completed instance: %v", err)
			}
			if err := env.client.Suspend(ctx, "nope", ""); !errors.Is(err, duro.ErrInstanceNotFound) {
				t.Fatalf("suspend unknown instance: %v", err)
			}
		}},
		{"TerminateSuspended", func(t *testing.T, e *env) {
			env := newSDKEnv(t, e.b, func(r *duro.Registry) {
				duro.RegisterOrchestration(r, "Wait", func(ctx *duro.OrchestrationContext, _ any) (any, error) {
					return nil, ctx.WaitForEvent("go", -1).Await(nil)
				})
			})
			ctx := bg(t)
			id, _ := env.client.Start(ctx, "Wait", nil)
			waitStatus(t, env.client, id, duro.StatusRunning)
			if err := env.client.Suspend(ctx, id, "hold"); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, env.client, id, duro.StatusSuspended)
			if err := env.client.Terminate(ctx, id, "give up"); err != nil {
				t.Fatal(err)
			}
			inst, err := env.client.Wait(ctx, id)
			if err != nil || inst.Status != duro.StatusTerminated || inst.Suspension != nil {
				t.Fatalf("%+v %v", inst, err)
			}
		}},
		{"SuspendingParentSuspendsChildren", func(t *testing.T, e *env) {
			register := func(r *duro.Registry) {
				duro.RegisterOrchestration(r, "Child", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
					var s string
					err := ctx.WaitForEvent("go", -1).Await(&s)
					return "child got " + s, err
				})
				duro.RegisterOrchestration(r, "Parent", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
					var s string
					err := ctx.CallSubOrchestration("Child", nil, duro.CallOptions{InstanceID: ctx.InstanceID() + "-child"}).Await(&s)
					return s, err
				})
			}
			env := newSDKEnv(t, e.b, register)
			ctx := bg(t)
			id, _ := env.client.Start(ctx, "Parent", nil, duro.StartOptions{InstanceID: "sp"})
			waitStatus(t, env.client, "sp-child", duro.StatusRunning)
			if err := env.client.Suspend(ctx, id, "audit"); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, env.client, "sp-child", duro.StatusSuspended)
			// The event arrives with no worker running; the store must then
			// not hand it to one while the child is suspended.
			stopWorker(t, env)
			if err := env.client.RaiseEvent(ctx, "sp-child", "go", "x"); err != nil {
				t.Fatal(err)
			}
			noDataWhileSuspended(t, e.b)
			if inst, err := env.client.Get(ctx, "sp-child"); err != nil || inst.Status != duro.StatusSuspended {
				t.Fatalf("child %+v %v while parent suspended", inst, err)
			}
			env = newSDKEnv(t, e.b, register)
			if err := env.client.Resume(ctx, id, "done"); err != nil {
				t.Fatal(err)
			}
			inst, err := env.client.Wait(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustOutput[string](t, inst); got != "child got x" {
				t.Fatalf("got %q", got)
			}
		}},
		{"DuplicateSuspendsForDecision", func(t *testing.T, e *env) {
			for _, tc := range []struct {
				name     string
				decision func(taskID int) duro.Decision
				want     string
				runs     int32
			}{
				{"retry", duro.RetryTask, "charged on attempt 3", 1},
				{"result", func(id int) duro.Decision { return duro.CompleteTask(id, "PAY-checked-by-hand") }, "PAY-checked-by-hand", 0},
				{"fail", func(id int) duro.Decision { return duro.FailTask(id, "refunded by hand") }, "failed OperatorFailed: refunded by hand", 0},
			} {
				t.Run(tc.name, func(t *testing.T) {
					be := e.fresh(t)
					var runs atomic.Int32
					second := func(r *duro.Registry) {
						duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
							runs.Add(1)
							return fmt.Sprintf("charged on attempt %d", ctx.Attempt()), nil
						})
						registerPay(r)
					}
					id, client, w := redeliverUntil(t, be, duro.CallOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend}, second, duro.StatusSuspended)
					ctx := bg(t)
					inst, err := client.Get(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					s := inst.Suspension
					if s == nil || len(s.Pending) != 1 || s.Pending[0].Name != "Charge" || s.Pending[0].Attempt != 2 ||
						!strings.Contains(s.Reason, `activity "Charge" (task 0) attempt 2`) || string(s.Pending[0].Input) != "42" {
						t.Fatalf("suspension %+v pending %+v", s, s.Pending)
					}
					pend, err := client.PendingDecisions(ctx)
					if err != nil || len(pend) != 1 || pend[0].InstanceID != id || pend[0].TaskID != 0 {
						t.Fatalf("pending decisions %+v %v", pend, err)
					}
					if err := client.Resume(ctx, id, "no decision"); !errors.Is(err, duro.ErrDecisionRequired) {
						t.Fatalf("resume without decision: %v", err)
					}
					if err := client.Resume(ctx, id, "wrong task", duro.RetryTask(7)); !errors.Is(err, duro.ErrNoPendingDecision) {
						t.Fatalf("resume with a decision for another task: %v", err)
					}
					if err := client.Resume(ctx, id, "checked with the provider", tc.decision(0)); err != nil {
						t.Fatal(err)
					}
					inst, err = client.Wait(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					if got := mustOutput[string](t, inst); got != tc.want || runs.Load() != tc.runs {
						t.Fatalf("got %q after %d runs, want %q after %d", got, runs.Load(), tc.want, tc.runs)
					}
					if w.Stats().DuplicatesSuspended != 1 {
						t.Fatalf("stats %+v", w.Stats())
					}
					if pend, _ := client.PendingDecisions(ctx); len(pend) != 0 {
						t.Fatalf("still pending: %+v", pend)
					}
				})
			}
		}},
		{"PoisonedStepResumes", func(t *testing.T, e *env) {
			// The first worker runs steps (a worker with no orchestration
			// and no entity claims none) but lacks Late.
			first := newSDKEnvOpts(t, e.b, &duro.WorkerOptions{MaxStepDeliveries: 2}, func(r *duro.Registry) {
				duro.RegisterOrchestration(r, "Other", func(*duro.OrchestrationContext, any) (any, error) { return nil, nil })
			})
			ctx := bg(t)
			id, err := first.client.Start(ctx, "Late", "x")
			if err != nil {
				t.Fatal(err)
			}
			if err := first.client.RaiseEvent(ctx, id, "e", "kept"); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, first.client, id, duro.StatusSuspended)
			_ = first.worker.Stop(ctx)
			// The code is deployed; resume retries the step.
			second := newSDKEnv(t, e.b, func(r *duro.Registry) {
				duro.RegisterOrchestration(r, "Late", func(ctx *duro.OrchestrationContext, in string) (string, error) {
					var ev string
					err := ctx.WaitForEvent("e", -1).Await(&ev)
					return in + "+" + ev, err
				})
			})
			if err := second.client.Resume(ctx, id, "deployed"); err != nil {
				t.Fatal(err)
			}
			inst, err := second.client.Wait(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustOutput[string](t, inst); got != "x+kept" {
				t.Fatalf("got %q", got)
			}
		}},
		{"RewindSequence", func(t *testing.T, e *env) {
			var l ledger
			env := newSDKEnv(t, e.b, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Step", func(ctx duro.ActivityContext, n int) (int, error) {
					if runs := l.add(fmt.Sprint("step", n)); n == 3 && runs == 1 {
						return 0, errors.New("step 3 is down")
					}
					return n, nil
				})
				duro.RegisterOrchestration(r, "Five", func(ctx *duro.OrchestrationContext, _ any) (int, error) {
					sum := 0
					for i := 1; i <= 5; i++ {
						var v int
						if err := ctx.CallActivity("Step", i).Await(&v); err != nil {
							return 0, err
						}
						sum += v
					}
					return sum, nil
				})
			})
			ctx := bg(t)
			if err := env.client.Rewind(ctx, "nope", "x"); !errors.Is(err, duro.ErrInstanceNotFound) {
				t.Fatalf("rewind unknown: %v", err)
			}
			inst := env.run(t, "Five", nil)
			if inst.Status != duro.StatusFailed {
				t.Fatalf("status %s", inst.Status)
			}
			if err := env.client.Rewind(ctx, inst.ID, "step 3 is back"); err != nil {
				t.Fatal(err)
			}
			inst, err := env.client.Wait(ctx, inst.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustOutput[int](t, inst); got != 15 {
				t.Fatalf("sum %d", got)
			}
			if l.String() != "map[step1:1 step2:1 step3:2 step4:1 step5:1]" {
				t.Fatalf("ledger %s", l.String())
			}
			h, _ := env.client.History(ctx, inst.ID)
			var seen []string
			for _, ev := range h {
				switch ev.Type {
				case backend.EventTaskFailed, backend.EventExecutionRewound:
					seen = append(seen, string(ev.Type))
				case backend.EventExecutionCompleted:
					seen = append(seen, string(ev.Status))
				}
			}
			if strings.Join(seen, ",") != "TaskFailed,Failed,ExecutionRewound,Completed" {
				t.Fatalf("history keeps the failure and records the rewind: %v", seen)
			}
			if err := env.client.Rewind(ctx, inst.ID, "again"); !errors.Is(err, duro.ErrInstanceNotFailed) {
				t.Fatalf("rewind completed instance: %v", err)
			}
			if err := env.client.Purge(ctx, inst.ID); err != nil {
				t.Fatal(err)
			}
			if err := env.client.Rewind(ctx, inst.ID, "after purge"); !errors.Is(err, duro.ErrInstanceNotFound) {
				t.Fatalf("rewind purged instance: %v", err)
			}
		}},
		{"RewindSubOrchestrationTree", func(t *testing.T, e *env) {
			var l ledger
			env := newSDKEnv(t, e.b, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Work", func(ctx duro.ActivityContext, name string) (string, error) {
					if runs := l.add(name); name == "leaf-b" && runs == 1 {
						return "", errors.New("leaf-b is down")
					}
					return name, nil
				})
				duro.RegisterOrchestration(r, "Leaf", func(ctx *duro.OrchestrationContext, name string) (string, error) {
					var s string
					err := ctx.CallActivity("Work", name).Await(&s)
					return s, err
				})
				duro.RegisterOrchestration(r, "Mid", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
					a := ctx.CallSubOrchestration("Leaf", "leaf-a")
					b := ctx.CallSubOrchestration("Leaf", "leaf-b")
					if err := ctx.AwaitAll(a, b); err != nil {
						return "", err
					}
					var sa, sb string
					_ = a.Await(&sa)
					_ = b.Await(&sb)
					return sa + "," + sb, nil
				})
				duro.RegisterOrchestration(r, "Root", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
					var pre, mid string
					if err := ctx.CallActivity("Work", "root-pre").Await(&pre); err != nil {
						return "", err
					}
					if err := ctx.CallSubOrchestration("Mid", nil).Await(&mid); err != nil {
						return "", err
					}
					return pre + "|" + mid, nil
				})
			})
			ctx := bg(t)
			inst := env.run(t, "Root", nil)
			if inst.Status != duro.StatusFailed {
				t.Fatalf("status %s", inst.Status)
			}
			if err := env.client.Rewind(ctx, inst.ID, "leaf-b is back"); err != nil {
				t.Fatal(err)
			}
			inst, err := env.client.Wait(ctx, inst.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustOutput[string](t, inst); got != "root-pre|leaf-a,leaf-b" {
				t.Fatalf("got %q", got)
			}
			if l.String() != "map[leaf-a:1 leaf-b:2 root-pre:1]" {
				t.Fatalf("ledger %s", l.String())
			}
		}},
		{"RewindFanOutRerunsOnlyFailures", func(t *testing.T, e *env) {
			var l ledger
			env := newSDKEnv(t, e.b, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Part", func(ctx duro.ActivityContext, n int) (int, error) {
					if runs := l.add(fmt.Sprint("part", n)); n%3 == 0 && runs == 1 {
						return 0, fmt.Errorf("part %d failed", n)
					}
					return n, nil
				})
				duro.RegisterOrchestration(r, "Fan", func(ctx *duro.OrchestrationContext, _ any) (int, error) {
					var ts []*duro.Task
					for i := 1; i <= 7; i++ {
						ts = append(ts, ctx.CallActivity("Part", i))
					}
					if err := ctx.AwaitAll(ts...); err != nil {
						return 0, err
					}
					sum := 0
					for _, t := range ts {
						var v int
						_ = t.Await(&v)
						sum += v
					}
					return sum, nil
				})
			})
			ctx := bg(t)
			inst := env.run(t, "Fan", nil)
			if inst.Status != duro.StatusFailed {
				t.Fatalf("status %s", inst.Status)
			}
			if err := env.client.Rewind(ctx, inst.ID, "retry the parts"); err != nil {
				t.Fatal(err)
			}
			inst, err := env.client.Wait(ctx, inst.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustOutput[int](t, inst); got != 28 {
				t.Fatalf("sum %d", got)
			}
			if l.String() != "map[part1:1 part2:1 part3:2 part4:1 part5:1 part6:2 part7:1]" {
				t.Fatalf("ledger %s", l.String())
			}
		}},
	}
}

// redeliverUntil is redeliver for instances that do not finish: it returns
// once the instance reaches status on the second worker.
func redeliverUntil(t *testing.T, be backend.Backend, opts duro.CallOptions, second func(r *duro.Registry), status duro.Status) (string, *duro.Client, *duro.Worker) {
	t.Helper()
	running := make(chan struct{}, 1)
	gate := &claimGate{Backend: be}
	first := newSDKEnv(t, gate, interruptedCharge(running))
	ctx := bg(t)
	id, err := first.client.Start(ctx, "Pay", opts)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-running:
	case <-ctx.Done():
		t.Fatal("Charge never ran on the first worker")
	}
	stopAbandoning(ctx, first, gate)
	next := newSDKEnv(t, be, second)
	waitStatus(t, next.client, id, status)
	return id, next.client, next.worker
}
