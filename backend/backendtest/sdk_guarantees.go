package backendtest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// interruptedCharge registers, for the first worker of a redelivery test, a
// "Charge" activity that records a heartbeat, signals that it runs, and then
// blocks until its worker stops: the delivery is abandoned with its attempt
// recorded, as after a crash, and the next worker gets attempt 2.
func interruptedCharge(running chan<- struct{}) func(r *duro.Registry) {
	return func(r *duro.Registry) {
		duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
			if err := ctx.Heartbeat(map[string]int{"progress": 5}); err != nil {
				return "", err
			}
			running <- struct{}{}
			<-ctx.Done()
			return "", ctx.Err()
		})
		registerPay(r)
	}
}

// registerPay registers "Pay": one Charge call with the guarantee in its
// input, reporting the outcome as a string.
func registerPay(r *duro.Registry) {
	duro.RegisterOrchestration(r, "Pay", func(ctx *duro.OrchestrationContext, opts duro.CallOptions) (string, error) {
		var out string
		err := ctx.CallActivity("Charge", 42, opts).Await(&out)
		var dup *duro.PossibleDuplicateError
		var te *duro.TaskError
		switch {
		case errors.As(err, &dup):
			if dup.PreviousDeliveryAt.IsZero() || !errors.Is(err, duro.ErrPossibleDuplicate) {
				return "", fmt.Errorf("duplicate error without its fields: %+v", dup)
			}
			return fmt.Sprintf("duplicate attempt=%d", dup.Attempt), nil
		case errors.Is(err, duro.ErrPoisoned):
			return "poisoned", nil
		case errors.As(err, &te):
			return "failed " + te.Type + ": " + te.Message, nil
		}
		return out, err
	})
}

// redeliver runs Pay with opts on a first worker until Charge is running,
// stops that worker, and finishes the instance on a second worker built by
// second. It returns the instance and the second worker. The first worker's
// store is gated (claimGate), so the second worker's first delivery of
// Charge is attempt 2.
func redeliver(t *testing.T, be backend.Backend, opts duro.CallOptions, second func(r *duro.Registry)) (*duro.Instance, *duro.Worker) {
	t.Helper()
	running := make(chan struct{}, 1)
	gate := &claimGate{Backend: be}
	first := newSDKEnv(t, gate, interruptedCharge(running))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := first.client.Start(ctx, "Pay", opts)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-running:
	case <-ctx.Done():
		t.Fatal("Charge never ran on the first worker")
	}
	stopAbandoning(ctx, first, gate) // abandons the running delivery
	next := newSDKEnv(t, be, second)
	inst, err := next.client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return inst, next.worker
}

// guaranteeTests check attempt numbers, at-most-once policies, poison,
// heartbeats and fencing through the SDK.
func guaranteeTests() []test {
	amo := func(on duro.OnDuplicate) duro.CallOptions {
		return duro.CallOptions{Guarantee: duro.AtMostOnce, OnDuplicate: on}
	}
	return []test{
		{"AtLeastOnceRunsAgainWithAttempt2AndHeartbeat", func(t *testing.T, e *env) {
			inst, w := redeliver(t, e.b, duro.CallOptions{}, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
					var hb map[string]int
					ok, err := ctx.HeartbeatDetails(&hb)
					if err != nil || !ok || hb["progress"] != 5 {
						return "", fmt.Errorf("heartbeat details %v %v %v", ok, hb, err)
					}
					if ctx.IsFirstAttempt() || ctx.PreviousDeliveryAt().IsZero() {
						return "", fmt.Errorf("attempt %d previous %v", ctx.Attempt(), ctx.PreviousDeliveryAt())
					}
					if ctx.Name() != "Charge" || ctx.TaskID() != 0 || ctx.InstanceID() == "" {
						return "", fmt.Errorf("delivery of %q task %d of %q", ctx.Name(), ctx.TaskID(), ctx.InstanceID())
					}
					return fmt.Sprintf("charged on attempt %d", ctx.Attempt()), nil
				})
				registerPay(r)
			})
			if got := mustOutput[string](t, inst); got != "charged on attempt 2" {
				t.Fatalf("got %q", got)
			}
			if s := w.Stats(); s.Redeliveries != 1 {
				t.Fatalf("stats %+v", s)
			}
		}},
		{"AtMostOnceFailDoesNotRunAgain", func(t *testing.T, e *env) {
			var calls atomic.Int32
			inst, w := redeliver(t, e.b, amo(duro.OnDuplicateFail), func(r *duro.Registry) {
				duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
					calls.Add(1)
					return "charged twice", nil
				})
				registerPay(r)
			})
			if got := mustOutput[string](t, inst); got != "duplicate attempt=2" {
				t.Fatalf("got %q", got)
			}
			if calls.Load() != 0 || w.Stats().DuplicatesFailed != 1 {
				t.Fatalf("calls %d stats %+v", calls.Load(), w.Stats())
			}
			h, err := e.b.GetHistory(context.Background(), inst.ID)
			if err != nil {
				t.Fatal(err)
			}
			var sched *backend.Event
			for _, ev := range h {
				if ev.Type == backend.EventTaskScheduled {
					sched = ev
				}
			}
			if sched == nil || sched.Activity == nil || !sched.Activity.AtMostOnce || sched.Activity.OnDuplicate != "Fail" {
				t.Fatalf("policy not recorded in history: %+v", sched)
			}
		}},
		{"AtMostOnceRegisteredPolicy", func(t *testing.T, e *env) {
			var calls atomic.Int32
			inst, _ := redeliver(t, e.b, duro.CallOptions{}, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
					calls.Add(1)
					return "charged twice", nil
				}, duro.ActivityOptions{Guarantee: duro.AtMostOnce})
				registerPay(r)
			})
			// The first worker scheduled Charge at least once (its
			// registration has no guarantee); the second registers it
			// AtMostOnce, and the executing worker's registration is in
			// force (mixed versions): not run again.
			if got := mustOutput[string](t, inst); got != "duplicate attempt=2" || calls.Load() != 0 {
				t.Fatalf("got %q after %d calls", got, calls.Load())
			}
		}},
		{"ReconcileDecisions", func(t *testing.T, e *env) {
			for _, tc := range []struct {
				name     string
				decide   func(n int32) (duro.ReconcileDecision, error)
				want     string
				runs     int32
				attempts int32
			}{
				{"retry", func(int32) (duro.ReconcileDecision, error) { return duro.ReconcileRetry(), nil }, "charged on attempt 2", 1, 1},
				{"result", func(int32) (duro.ReconcileDecision, error) { return duro.ReconcileResult("found PAY-1"), nil }, "found PAY-1", 0, 1},
				{"fail", func(int32) (duro.ReconcileDecision, error) { return duro.ReconcileFail("charge state unknown"), nil },
					"failed ReconciledFailure: charge state unknown", 0, 1},
				{"error then result", func(n int32) (duro.ReconcileDecision, error) {
					if n == 1 {
						return duro.ReconcileDecision{}, errors.New("provider unreachable")
					}
					return duro.ReconcileResult("found PAY-1"), nil
				}, "found PAY-1", 0, 2},
			} {
				t.Run(tc.name, func(t *testing.T) {
					be := e.b
					if tc.name != "retry" {
						be = e.fresh(t)
					}
					var runs, reconciles atomic.Int32
					inst, w := redeliver(t, be, amo(duro.OnDuplicateReconcile), func(r *duro.Registry) {
						duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
							runs.Add(1)
							return fmt.Sprintf("charged on attempt %d", ctx.Attempt()), nil
						}, duro.ActivityOptions{Reconcile: func(ctx duro.ActivityContext, in *duro.Payload) (duro.ReconcileDecision, error) {
							var amount int
							if err := in.Decode(&amount); err != nil || amount != 42 {
								return duro.ReconcileDecision{}, fmt.Errorf("input %d %v", amount, err)
							}
							// The reconciler sees how far the earlier delivery got.
							var hb map[string]int
							if ok, err := ctx.HeartbeatDetails(&hb); !ok || err != nil || hb["progress"] != 5 {
								return duro.ReconcileFail(fmt.Sprintf("heartbeat details %v %v %v", ok, hb, err)), nil
							}
							return tc.decide(reconciles.Add(1))
						}})
						registerPay(r)
					})
					if got := mustOutput[string](t, inst); got != tc.want {
						t.Fatalf("got %q, want %q", got, tc.want)
					}
					if runs.Load() != tc.runs || reconciles.Load() != tc.attempts || w.Stats().DuplicatesReconciled != int64(tc.attempts) {
						t.Fatalf("runs %d reconciles %d stats %+v", runs.Load(), reconciles.Load(), w.Stats())
					}
				})
			}
		}},
		{"PoisonAfterMaxDeliveries", func(t *testing.T, e *env) {
			var calls atomic.Int32
			inst, w := redeliver(t, e.b, duro.CallOptions{MaxDeliveries: 1}, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
					calls.Add(1)
					return "ran", nil
				})
				registerPay(r)
			})
			if got := mustOutput[string](t, inst); got != "poisoned" || calls.Load() != 0 || w.Stats().ActivitiesPoisoned != 1 {
				t.Fatalf("got %q, calls %d, stats %+v", got, calls.Load(), w.Stats())
			}
		}},
		{"LostLeaseCancelsCodeAndFencesResult", func(t *testing.T, e *env) {
			running := make(chan struct{}, 1)
			causes := make(chan error, 1)
			env := newSDKEnvOpts(t, e.b, &duro.WorkerOptions{ActivityLeaseDuration: 150 * time.Millisecond}, func(r *duro.Registry) {
				duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
					// Non-blocking sends: under load the short lease can lapse
					// and the task be delivered again; later deliveries must
					// not hang the worker's Stop.
					select {
					case running <- struct{}{}:
					default:
					}
					<-ctx.Done()
					select {
					case causes <- context.Cause(ctx):
					default:
					}
					return "stale result", nil
				})
				registerPay(r)
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			id, wi := takeOverCharge(ctx, t, e, env, running, time.Now().Add(time.Hour))
			select {
			case cause := <-causes:
				if !errors.Is(cause, duro.ErrLeaseLost) {
					t.Fatalf("activity context cause %v, want ErrLeaseLost", cause)
				}
			case <-ctx.Done():
				t.Fatal("the running code was not cancelled after losing its lease")
			}
			err := e.b.CompleteActivity(ctx, &backend.CompleteActivityParams{TaskID: wi.Task.ID, Attempt: wi.Attempt,
				Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: wi.Task.TaskID, Result: []byte(`"thief's result"`), Attempt: 2}})
			if err != nil {
				t.Fatal(err)
			}
			inst, err := env.client.Wait(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustOutput[string](t, inst); got != "thief's result" {
				t.Fatalf("got %q", got)
			}
			waitUntil(t, func() bool { return env.worker.Stats().StaleCompletionsRejected == 1 })
		}},
		{"StaleHeartbeatRefused", testStaleHeartbeatRefused},
	}
}

// takeOverCharge starts Pay on env, waits until Charge runs, and claims
// the task as another worker whose clock reads now, as if the running
// delivery's lease had lapsed. It returns the instance ID and the takeover
// (attempt 2).
func takeOverCharge(ctx context.Context, t *testing.T, e *env, env *sdkEnv, running <-chan struct{}, now time.Time) (string, *backend.ActivityWorkItem) {
	t.Helper()
	id, err := env.client.Start(ctx, "Pay", duro.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-running:
	case <-ctx.Done():
		t.Fatal("Charge never ran")
	}
	wi, err := e.b.ClaimActivity(ctx, &backend.ClaimParams{Owner: "thief", LeaseDuration: time.Hour, Now: now})
	if err != nil || wi == nil || wi.Attempt != 2 {
		t.Fatalf("takeover claim: %+v %v", wi, err)
	}
	return id, wi
}

// testStaleHeartbeatRefused: a delivery that another one took over gets
// ErrLeaseLost from Heartbeat, its context is cancelled, and its details are
// not stored: the deliveries after it read the details it recorded while it
// was the newest.
func testStaleHeartbeatRefused(t *testing.T, e *env) {
	running, resume := make(chan struct{}), make(chan struct{})
	refused := make(chan error, 1)
	env := newSDKEnvOpts(t, e.b, &duro.WorkerOptions{ActivityLeaseDuration: time.Hour}, func(r *duro.Registry) {
		duro.RegisterActivity(r, "Charge", func(ctx duro.ActivityContext, _ int) (string, error) {
			if err := ctx.Heartbeat(map[string]int{"progress": 1}); err != nil {
				return "", err
			}
			close(running)
			<-resume
			err := ctx.Heartbeat(map[string]int{"progress": 2})
			if err != nil && context.Cause(ctx) != err {
				err = fmt.Errorf("%w (context cause %v)", err, context.Cause(ctx))
			}
			refused <- err
			return "stale result", nil
		})
		registerPay(r)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	later := time.Now().Add(2 * time.Hour)
	id, wi := takeOverCharge(ctx, t, e, env, running, later)
	if string(wi.HeartbeatDetails) != `{"progress":1}` {
		t.Fatalf("takeover reads details %q, want the first delivery's", wi.HeartbeatDetails)
	}
	close(resume)
	if err := <-refused; !errors.Is(err, duro.ErrLeaseLost) {
		t.Fatalf("stale Heartbeat returned %v, want ErrLeaseLost", err)
	}
	// The stale heartbeat stored nothing: hand the takeover back (visible
	// only by the test's clock, so the worker does not claim it) and claim
	// again.
	e.noErr("AbandonActivity", e.b.AbandonActivity(ctx, &backend.AbandonParams{ID: wi.Task.ID, Attempt: int64(wi.Attempt), RetryAt: later.Add(-time.Minute)}))
	third, err := e.b.ClaimActivity(ctx, &backend.ClaimParams{Owner: "thief", LeaseDuration: time.Hour, Now: later})
	if err != nil || third == nil || third.Attempt != 3 {
		t.Fatalf("third claim: %+v %v", third, err)
	}
	if string(third.HeartbeatDetails) != `{"progress":1}` {
		t.Fatalf("third delivery reads details %q, want the first delivery's (the stale one's refused)", third.HeartbeatDetails)
	}
	e.noErr("CompleteActivity", e.b.CompleteActivity(ctx, &backend.CompleteActivityParams{TaskID: third.Task.ID, Attempt: third.Attempt,
		Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: third.Task.TaskID, Result: []byte(`"thief's result"`), Attempt: 3}}))
	inst, err := env.client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustOutput[string](t, inst); got != "thief's result" {
		t.Fatalf("got %q", got)
	}
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	if !poll(10*time.Second, cond) {
		t.Fatal("condition not met within 10s")
	}
}
