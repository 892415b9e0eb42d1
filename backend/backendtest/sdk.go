package backendtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// sdkEnv is a running worker and client on one backend, for the end-to-end
// scenarios that check the engine's semantics on top of a backend.
type sdkEnv struct {
	be     backend.Backend
	reg    *duro.Registry
	client *duro.Client
	worker *duro.Worker
}

func newSDKEnv(t *testing.T, be backend.Backend, register func(r *duro.Registry)) *sdkEnv {
	t.Helper()
	return newSDKEnvOpts(t, be, &duro.WorkerOptions{}, register)
}

// newSDKEnvOpts is newSDKEnv with worker options (the poll interval and the
// logger are set for tests).
func newSDKEnvOpts(t *testing.T, be backend.Backend, opts *duro.WorkerOptions, register func(r *duro.Registry)) *sdkEnv {
	t.Helper()
	reg := duro.NewRegistry()
	register(reg)
	o := *opts
	o.PollInterval = 10 * time.Millisecond
	o.Logger = slog.New(slog.DiscardHandler)
	w, err := duro.NewWorker(be, reg, &o)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("worker stop: %v", err)
		}
	})
	return &sdkEnv{be: be, reg: reg, client: duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 10 * time.Millisecond}), worker: w}
}

// run starts an instance and waits for it to finish.
func (e *sdkEnv) run(t *testing.T, name string, input any, opts ...duro.StartOptions) *duro.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := e.client.Start(ctx, name, input, opts...)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	inst, err := e.client.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return inst
}

func mustOutput[T any](t *testing.T, inst *duro.Instance) T {
	t.Helper()
	if inst.Status != duro.StatusCompleted {
		t.Fatalf("instance %s: status %s, failure %v", inst.ID, inst.Status, inst.Failure)
	}
	var out T
	if err := inst.Output(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// sdkTests run the engine end to end (client, worker, replay) on the backend.
func sdkTests() []test {
	return []test{
		{"Sequence", func(t *testing.T, be *env) {
			e := newSDKEnv(t, be.b, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Hello", func(ctx duro.ActivityContext, name string) (string, error) {
					return "Hello, " + name, nil
				})
				duro.RegisterOrchestration(r, "Cities", func(ctx *duro.OrchestrationContext, _ any) ([]string, error) {
					var out []string
					for _, c := range []string{"Tokyo", "Seattle", "London"} {
						var s string
						if err := ctx.CallActivity("Hello", c).Await(&s); err != nil {
							return nil, err
						}
						out = append(out, s)
					}
					return out, nil
				})
			})
			got := mustOutput[[]string](t, e.run(t, "Cities", nil))
			if strings.Join(got, "|") != "Hello, Tokyo|Hello, Seattle|Hello, London" {
				t.Fatalf("output %q", got)
			}
		}},
		{"FanOutFanIn", func(t *testing.T, be *env) {
			e := newSDKEnv(t, be.b, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Square", func(ctx duro.ActivityContext, n int) (int, error) { return n * n, nil })
				duro.RegisterOrchestration(r, "Sum", func(ctx *duro.OrchestrationContext, n int) (int, error) {
					var tasks []*duro.Task
					for i := 1; i <= n; i++ {
						tasks = append(tasks, ctx.CallActivity("Square", i))
					}
					if err := ctx.AwaitAll(tasks...); err != nil {
						return 0, err
					}
					sum := 0
					for _, task := range tasks {
						var v int
						if err := task.Await(&v); err != nil {
							return 0, err
						}
						sum += v
					}
					return sum, nil
				})
			})
			if got := mustOutput[int](t, e.run(t, "Sum", 50)); got != 42925 {
				t.Fatalf("sum = %d, want 42925", got)
			}
		}},
		{"TimerAndAwaitAny", func(t *testing.T, be *env) {
			// Slow finishes only when the test ends, so the timer wins
			// however slowly the machine runs.
			release := make(chan struct{})
			e := newSDKEnv(t, be.b, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Slow", func(ctx duro.ActivityContext, _ any) (string, error) {
					select {
					case <-release:
					case <-ctx.Done():
					}
					return "slow", nil
				})
				duro.RegisterOrchestration(r, "Race", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
					start := ctx.Now()
					timer := ctx.CreateTimer(50 * time.Millisecond)
					slow := ctx.CallActivity("Slow", nil)
					i, err := ctx.AwaitAny(slow, timer)
					if err != nil {
						return "", err
					}
					if i != 1 {
						return "activity won", nil
					}
					if ctx.Now().Sub(start) < 50*time.Millisecond {
						return "", fmt.Errorf("timer fired early: %v", ctx.Now().Sub(start))
					}
					return "timer won", nil
				})
			})
			t.Cleanup(func() { close(release) }) // before the worker's Stop
			if got := mustOutput[string](t, e.run(t, "Race", nil)); got != "timer won" {
				t.Fatalf("got %q", got)
			}
		}},
		{"ExternalEventsInOrderAndTimeout", func(t *testing.T, be *env) {
			e := newSDKEnv(t, be.b, func(r *duro.Registry) {
				duro.RegisterOrchestration(r, "Collect", func(ctx *duro.OrchestrationContext, n int) ([]int, error) {
					var got []int
					for range n {
						var v int
						if err := ctx.WaitForEvent("num", -1).Await(&v); err != nil {
							return nil, err
						}
						got = append(got, v)
					}
					if err := ctx.WaitForEvent("never", 20*time.Millisecond).Await(nil); !errors.Is(err, duro.ErrTimeout) {
						return nil, fmt.Errorf("want ErrTimeout, got %v", err)
					}
					return got, nil
				})
			})
			id, err := e.client.Start(context.Background(), "Collect", 20)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				if err := e.client.RaiseEvent(context.Background(), id, "num", i); err != nil {
					t.Fatal(err)
				}
			}
			wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			inst, err := e.client.Wait(wctx, id)
			if err != nil {
				t.Fatal(err)
			}
			got := mustOutput[[]int](t, inst)
			for i, v := range got {
				if v != i {
					t.Fatalf("events out of order: %v", got)
				}
			}
			if len(got) != 20 {
				t.Fatalf("got %d events", len(got))
			}
			if err := e.client.RaiseEvent(context.Background(), id, "num", 1); !errors.Is(err, duro.ErrInstanceFinished) {
				t.Fatalf("raise on finished instance: %v", err)
			}
			if err := e.client.RaiseEvent(context.Background(), "no-such-instance", "num", 1); !errors.Is(err, duro.ErrInstanceNotFound) {
				t.Fatalf("raise on unknown instance: %v", err)
			}
		}},
		{"SubOrchestrationsAndTypedFailures", func(t *testing.T, be *env) {
			e := newSDKEnv(t, be.b, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, amount int) (string, error) {
					if amount > 100 {
						return "", duro.NewNonRetryableError("CardDeclined", fmt.Sprintf("amount %d over limit", amount))
					}
					return fmt.Sprintf("charged %d", amount), nil
				})
				duro.RegisterOrchestration(r, "Child", func(ctx *duro.OrchestrationContext, amount int) (string, error) {
					var s string
					err := ctx.CallActivity("Charge", amount).Await(&s)
					return s, err
				})
				duro.RegisterOrchestration(r, "Parent", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
					var ok string
					if err := ctx.CallSubOrchestration("Child", 10).Await(&ok); err != nil {
						return "", err
					}
					err := ctx.CallSubOrchestration("Child", 500, duro.CallOptions{InstanceID: ctx.InstanceID() + "-big"}).Await(nil)
					var te *duro.TaskError
					if !errors.As(err, &te) {
						return "", fmt.Errorf("want TaskError, got %v", err)
					}
					if te.Kind != duro.KindSubOrchestration || te.TaskName != "Child" || te.Type != "CardDeclined" {
						return "", fmt.Errorf("unexpected task error %+v", te)
					}
					return ok + "; declined: " + te.Message, nil
				})
			})
			inst := e.run(t, "Parent", nil, duro.StartOptions{InstanceID: "p1"})
			got := mustOutput[string](t, inst)
			if !strings.HasPrefix(got, "charged 10; declined: ") || !strings.Contains(got, "over limit") {
				t.Fatalf("got %q", got)
			}
			child, err := e.client.Get(context.Background(), "p1-big")
			if err != nil {
				t.Fatal(err)
			}
			if child.Status != duro.StatusFailed || child.ParentInstanceID != "p1" || child.Failure.Type != "CardDeclined" {
				t.Fatalf("child: %+v failure %+v", child, child.Failure)
			}
		}},
		{"RetryPolicy", func(t *testing.T, be *env) {
			var calls atomic.Int32
			e := newSDKEnv(t, be.b, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Flaky", func(ctx duro.ActivityContext, _ any) (int, error) {
					n := calls.Add(1)
					if n < 3 {
						return 0, fmt.Errorf("transient failure %d", n)
					}
					return int(n), nil
				})
				duro.RegisterOrchestration(r, "Retry", func(ctx *duro.OrchestrationContext, _ any) (int, error) {
					var n int
					err := ctx.CallActivity("Flaky", nil, duro.CallOptions{RetryPolicy: &duro.RetryPolicy{
						MaxAttempts: 5, InitialInterval: 10 * time.Millisecond, BackoffCoefficient: 2,
					}}).Await(&n)
					return n, err
				})
			})
			if got := mustOutput[int](t, e.run(t, "Retry", nil)); got != 3 {
				t.Fatalf("got %d", got)
			}
			calls.Store(-100)
			inst := e.run(t, "Retry", nil)
			if inst.Status != duro.StatusFailed || !strings.Contains(inst.Failure.Message, "transient failure") {
				t.Fatalf("want failure after 5 attempts, got %s %+v", inst.Status, inst.Failure)
			}
			if calls.Load() != -95 {
				t.Fatalf("calls after exhausted retries = %d, want 5 attempts", calls.Load()+100)
			}
		}},
		{"ContinueAsNew", func(t *testing.T, be *env) {
			e := newSDKEnv(t, be.b, func(r *duro.Registry) {
				duro.RegisterOrchestration(r, "Count", func(ctx *duro.OrchestrationContext, n int) (int, error) {
					if n < 5 {
						return 0, ctx.ContinueAsNew(n + 1)
					}
					return n, nil
				})
			})
			inst := e.run(t, "Count", 0)
			if got := mustOutput[int](t, inst); got != 5 {
				t.Fatalf("got %d", got)
			}
			h, err := e.client.History(context.Background(), inst.ID)
			if err != nil {
				t.Fatal(err)
			}
			if h[0].Type != backend.EventOrchestratorStarted || h[1].Type != backend.EventExecutionStarted || string(h[1].Input) != "5" {
				t.Fatalf("history of the last execution: %+v", h[:2])
			}
		}},
		{"PanicsAndNotRegistered", func(t *testing.T, be *env) {
			e := newSDKEnvOpts(t, be.b, &duro.WorkerOptions{MaxStepDeliveries: 2}, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Boom", func(ctx duro.ActivityContext, _ any) (any, error) { panic("kaboom") })
				duro.RegisterOrchestration(r, "CallBoom", func(ctx *duro.OrchestrationContext, _ any) (any, error) {
					err := ctx.CallActivity("Boom", nil).Await(nil)
					var te *duro.TaskError
					if !errors.As(err, &te) || te.Type != "Panic" {
						return nil, fmt.Errorf("want panic TaskError, got %v", err)
					}
					// An activity no worker registers is not claimed: it
					// waits for a worker that has it (Fleet tests).
					panic("orchestration panic")
				})
			})
			inst := e.run(t, "CallBoom", nil)
			if inst.Status != duro.StatusFailed || inst.Failure.Type != "Panic" || !strings.Contains(inst.Failure.Message, "orchestration panic") {
				t.Fatalf("got %s %+v", inst.Status, inst.Failure)
			}
			// An orchestration no worker knows is not failed: its step is handed
			// back until it is poisoned, then the instance is suspended with its
			// messages kept.
			id, err := e.client.Start(context.Background(), "NoSuchOrchestration", nil)
			if err != nil {
				t.Fatal(err)
			}
			waitStatus(t, e.client, id, duro.StatusSuspended)
			got, err := e.client.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Suspension == nil || !got.Suspension.Poisoned || !strings.Contains(got.Suspension.Reason, "poisoned") {
				t.Fatalf("suspension %+v", got.Suspension)
			}
			if e.worker.Stats().StepsPoisoned != 1 {
				t.Fatalf("stats %+v", e.worker.Stats())
			}
		}},
		{"PayloadErrors", func(t *testing.T, be *env) {
			e := newSDKEnv(t, be.b, func(r *duro.Registry) {
				duro.RegisterActivity(r, "WantsInt", func(ctx duro.ActivityContext, n int) (int, error) { return n, nil })
				duro.RegisterOrchestration(r, "BadInput", func(ctx *duro.OrchestrationContext, _ any) (any, error) {
					err := ctx.CallActivity("WantsInt", "not a number").Await(nil)
					var te *duro.TaskError
					if !errors.As(err, &te) || !strings.Contains(te.Message, "does not decode") {
						return nil, fmt.Errorf("want decode failure, got %v", err)
					}
					big := strings.Repeat("x", duro.DefaultMaxPayloadBytes+1)
					if err := ctx.CallActivity("WantsInt", big).Await(nil); !errors.Is(err, duro.ErrPayloadTooLarge) {
						return nil, fmt.Errorf("want ErrPayloadTooLarge, got %v", err)
					}
					return "ok", nil
				})
			})
			mustOutput[string](t, e.run(t, "BadInput", nil))
			_, err := e.client.Start(context.Background(), "BadInput", strings.Repeat("y", duro.DefaultMaxPayloadBytes+1))
			var pe *duro.PayloadTooLargeError
			if !errors.As(err, &pe) || pe.Limit != duro.DefaultMaxPayloadBytes {
				t.Fatalf("start with big input: %v", err)
			}
			inst := e.run(t, "BadInput", 1)
			var s []string
			if err := inst.Output(&s); !errors.Is(err, duro.ErrPayloadDecode) {
				t.Fatalf("decode string into []string: %v", err)
			}
		}},
		{"TerminateAndPurge", func(t *testing.T, be *env) {
			e := newSDKEnv(t, be.b, func(r *duro.Registry) {
				duro.RegisterOrchestration(r, "Wait", func(ctx *duro.OrchestrationContext, _ any) (any, error) {
					return nil, ctx.WaitForEvent("go", -1).Await(nil)
				})
				duro.RegisterOrchestration(r, "Parent", func(ctx *duro.OrchestrationContext, _ any) (any, error) {
					return nil, ctx.CallSubOrchestration("Wait", nil, duro.CallOptions{InstanceID: "child-of-t1"}).Await(nil)
				})
			})
			bg := context.Background()
			id, err := e.client.Start(bg, "Parent", nil, duro.StartOptions{InstanceID: "t1"})
			if err != nil {
				t.Fatal(err)
			}
			waitStatus(t, e.client, "child-of-t1", duro.StatusRunning)
			if err := e.client.Purge(bg, id); !errors.Is(err, duro.ErrInstanceNotFinished) {
				t.Fatalf("purge running: %v", err)
			}
			if err := e.client.Terminate(bg, id, "operator says stop"); err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(bg, 30*time.Second)
			defer cancel()
			inst, err := e.client.Wait(wctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if inst.Status != duro.StatusTerminated {
				t.Fatalf("status %s", inst.Status)
			}
			child, err := e.client.Wait(wctx, "child-of-t1")
			if err != nil || child.Status != duro.StatusTerminated {
				t.Fatalf("child: %v %v", child, err)
			}
			if err := e.client.Terminate(bg, id, "again"); !errors.Is(err, duro.ErrInstanceFinished) {
				t.Fatalf("terminate finished: %v", err)
			}
			if _, err := e.client.Start(bg, "Parent", nil, duro.StartOptions{InstanceID: "t1"}); !errors.Is(err, duro.ErrInstanceExists) {
				t.Fatalf("start duplicate: %v", err)
			}
			if err := e.client.Purge(bg, id); err != nil {
				t.Fatal(err)
			}
			if _, err := e.client.Get(bg, id); !errors.Is(err, duro.ErrInstanceNotFound) {
				t.Fatalf("get purged: %v", err)
			}
		}},
		{"ActivityAttemptVisible", func(t *testing.T, be *env) {
			var mu sync.Mutex
			var seen []int
			e := newSDKEnv(t, be.b, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Info", func(ctx duro.ActivityContext, _ any) (string, error) {
					mu.Lock()
					seen = append(seen, ctx.Attempt())
					mu.Unlock()
					return fmt.Sprintf("%s/%d/%v", ctx.InstanceID(), ctx.TaskID(), ctx.IsFirstAttempt()), nil
				})
				duro.RegisterOrchestration(r, "Info", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
					var s string
					err := ctx.CallActivity("Info", nil).Await(&s)
					return s, err
				})
			})
			got := mustOutput[string](t, e.run(t, "Info", nil, duro.StartOptions{InstanceID: "info-1"}))
			if got != "info-1/0/true" {
				t.Fatalf("got %q", got)
			}
			if len(seen) != 1 || seen[0] != 1 {
				t.Fatalf("attempts seen %v", seen)
			}
		}},
	}
}

// waitStatus polls until the instance reaches status.
func waitStatus(t *testing.T, c *duro.Client, id string, status duro.Status) {
	t.Helper()
	if !poll(30*time.Second, func() bool {
		inst, err := c.Get(context.Background(), id)
		return err == nil && inst.Status == status
	}) {
		t.Fatalf("instance %s never reached %s", id, status)
	}
}
