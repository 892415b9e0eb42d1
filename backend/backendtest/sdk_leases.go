package backendtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/fault"
)

// leaseTests run workers on the backend with short step leases: steps and
// entity batches that outlast their lease keep it (the worker renews it),
// a batch whose lease is taken stops and tells its operations through their
// context, and a step whose commit reply is lost is recognised as committed.
func leaseTests() []test {
	return []test{
		{"EntityBatchLongerThanLease", testEntityBatchLongerThanLease},
		{"OrchestrationStepLongerThanLease", testStepLongerThanLease},
		{"LostLeaseCancelsEntityOperations", testLostLeaseCancelsEntityOperations},
		{"LostCommitReply", func(t *testing.T, e *env) { testLostCommitReply(t, e, false) }},
		{"LostCommitReplyEager", func(t *testing.T, e *env) { testLostCommitReply(t, e, true) }},
	}
}

// stepLease is the orchestration lease of the workers of these tests: a
// few times shorter than the steps they run, and long enough that a
// renewal (every third of it) is never late on a loaded 2-core machine
// running the race detector (400 ms was: seen under load 15).
const stepLease = 1500 * time.Millisecond

// concurrency tracks how many calls run at once and the most there were.
type concurrency struct{ now, max atomic.Int32 }

func (c *concurrency) enter() {
	n := c.now.Add(1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (c *concurrency) leave() { c.now.Add(-1) }

// twoWorkers starts two workers on be with the short step lease.
func twoWorkers(t *testing.T, be backend.Backend, register func(r *duro.Registry)) []*sdkEnv {
	var envs []*sdkEnv
	for i := range 2 {
		envs = append(envs, newSDKEnvOpts(t, be, &duro.WorkerOptions{
			Name: fmt.Sprintf("worker-%d", i+1), OrchestrationLeaseDuration: stepLease,
		}, register))
	}
	return envs
}

// wantNoStale fails if a worker discarded a step or a completion as stale.
func wantNoStale(t *testing.T, envs ...*sdkEnv) {
	t.Helper()
	for i, env := range envs {
		if s := env.worker.Stats(); s.StaleCompletionsRejected != 0 {
			t.Errorf("worker %d: StaleCompletionsRejected = %d, want 0 (stats %+v)", i+1, s.StaleCompletionsRejected, s)
		}
	}
}

func testEntityBatchLongerThanLease(t *testing.T, e *env) {
	const ops = 5
	const opTime = 600 * time.Millisecond // ops*opTime is twice the lease
	var conc concurrency
	var mu sync.Mutex
	runs := make([]int, ops)
	id := duro.EntityID{Name: "slow", Key: "k"}
	// All signals are queued before a worker runs, so the first batch
	// carries them all and lasts ops*opTime.
	client := duro.NewClient(e.b, nil)
	for n := range ops {
		if err := client.SignalEntity(bg(t), id, "work", n); err != nil {
			t.Fatal(err)
		}
	}
	envs := twoWorkers(t, e.b, func(r *duro.Registry) {
		duro.RegisterEntityOperation(r, "slow", "work", func(ctx duro.EntityContext, s *counter, n int) (int, error) {
			conc.enter()
			defer conc.leave()
			mu.Lock()
			runs[n]++
			mu.Unlock()
			select {
			case <-time.After(opTime):
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			}
			s.Value++
			return s.Value, nil
		})
	})
	if !poll(60*time.Second, func() bool { return entityValue(t, client, id) == ops }) {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("entity %s = %d, want %d; runs per operation %v, up to %d at once",
			id, entityValue(t, client, id), ops, runs, conc.max.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	for n, k := range runs {
		if k != 1 {
			t.Errorf("operation %d ran %d times, want once (runs per operation %v)", n, k, runs)
		}
	}
	if m := conc.max.Load(); m != 1 {
		t.Errorf("up to %d operations of one entity ran at once, want 1", m)
	}
	wantNoStale(t, envs...)
}

func testStepLongerThanLease(t *testing.T, e *env) {
	const stepTime = 3 * stepLease / 2
	var conc concurrency
	var runs atomic.Int32
	envs := twoWorkers(t, e.b, func(r *duro.Registry) {
		duro.RegisterOrchestration(r, "SlowStep", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			if !ctx.IsReplaying() {
				// The first step's code, slow: a long computation.
				conc.enter()
				runs.Add(1)
				time.Sleep(stepTime)
				conc.leave()
			}
			return "done", nil
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, err := envs[0].client.Start(ctx, "SlowStep", nil)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := envs[0].client.Wait(ctx, id)
	if err != nil {
		t.Fatalf("the instance did not finish (%v); the step's code ran %d times, up to %d at once", err, runs.Load(), conc.max.Load())
	}
	if got := mustOutput[string](t, inst); got != "done" {
		t.Fatalf("output %q", got)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the step's code ran %d times, want once", n)
	}
	if m := conc.max.Load(); m != 1 {
		t.Errorf("the step ran on %d workers at once, want 1", m)
	}
	wantNoStale(t, envs...)
}

// commitRecorder records the attempts of the step commits a worker asks for.
type commitRecorder struct {
	backend.Backend
	mu       sync.Mutex
	attempts map[string][]int64
}

func (r *commitRecorder) CompleteOrchestrationStep(ctx context.Context, p *backend.CompleteOrchestrationStepParams) error {
	r.mu.Lock()
	r.attempts[p.InstanceID] = append(r.attempts[p.InstanceID], p.Attempt)
	r.mu.Unlock()
	return r.Backend.CompleteOrchestrationStep(ctx, p)
}

func (r *commitRecorder) committed(id string) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts[id])
}

func testLostLeaseCancelsEntityOperations(t *testing.T, e *env) {
	rec := &commitRecorder{Backend: e.b, attempts: map[string][]int64{}}
	id := duro.EntityID{Name: "blocker", Key: "k"}
	var calls atomic.Int32
	started := make(chan struct{})
	cause := make(chan error, 1)
	// Both signals are queued before the worker runs: one batch.
	client := duro.NewClient(e.b, nil)
	for n := range 2 {
		if err := client.SignalEntity(bg(t), id, "wait", n); err != nil {
			t.Fatal(err)
		}
	}
	env := newSDKEnvOpts(t, rec, &duro.WorkerOptions{OrchestrationLeaseDuration: stepLease}, func(r *duro.Registry) {
		duro.RegisterEntityOperation(r, "blocker", "wait", func(ctx duro.EntityContext, s *counter, _ any) (int, error) {
			if calls.Add(1) > 1 {
				s.Value++
				return s.Value, nil
			}
			// The first run waits until its batch loses the lease.
			close(started)
			select {
			case <-ctx.Done():
				cause <- context.Cause(ctx)
				return 0, ctx.Err()
			case <-time.After(20 * time.Second):
				cause <- errors.New("the operation's context was never cancelled")
				return 0, errors.New("not cancelled")
			}
		})
	})
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the operation never started")
	}
	// Another delivery takes the batch: a claim from an hour ahead sees the
	// worker's lease as lapsed.
	thief, err := e.b.ClaimOrchestrationStep(bg(t), &backend.ClaimParams{Owner: "thief", LeaseDuration: time.Minute, Now: time.Now().Add(time.Hour)})
	if err != nil || thief == nil || thief.Instance.ID != id.String() {
		t.Fatalf("claim of the entity's batch by another delivery: %v, %v", thief, err)
	}
	select {
	case err := <-cause:
		if !errors.Is(err, backend.ErrLeaseLost) {
			t.Fatalf("the operation's context ended with cause %v, want ErrLeaseLost", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the operation's context was not cancelled after its batch lost the lease")
	}
	// The worker counts the lost batch and does not try to commit it.
	if !poll(30*time.Second, func() bool { return env.worker.Stats().StaleCompletionsRejected != 0 }) {
		t.Fatalf("the worker never counted its lost batch (stats %+v)", env.worker.Stats())
	}
	if got := rec.committed(id.String()); len(got) != 0 {
		t.Fatalf("the worker tried to commit the batch after it lost the lease (attempts %v)", got)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d operations ran in the lost batch; the second must not start once the lease is lost", n)
	}
	// The other delivery hands the batch back; the worker runs it again and
	// both operations apply once.
	if err := e.b.AbandonOrchestrationStep(bg(t), &backend.AbandonParams{ID: thief.Instance.ID, ExecutionID: thief.Instance.ExecutionID, Attempt: thief.Attempt}); err != nil {
		t.Fatal(err)
	}
	waitEntity(t, env.client, id, 2)
	got := rec.committed(id.String())
	if len(got) == 0 || slices.Min(got) <= thief.Attempt {
		t.Fatalf("committed attempts %v: want only deliveries after the other one (attempt %d)", got, thief.Attempt)
	}
}

// testLostCommitReply drops the reply of an instance's first step commit,
// which succeeded, so the worker retries the commit: the retry must be
// recognised as committed — not counted as a stale step — and, with eager
// dispatch, the activity the commit claimed must run at once, on its first
// attempt, rather than after its lease lapses.
func testLostCommitReply(t *testing.T, e *env, eager bool) {
	be, id := e.b, "lost-reply"
	if eager {
		// One claim at a time: a batch claim takes every free slot of
		// the activity loop while it runs, and the step's commit then
		// finds none to claim for.
		be, id = &singleClaims{Backend: e.b, ec: e.eager()}, id+"-eager"
	}
	disarm := fault.ArmFor(fault.StepReplyLost, id, 1)
	defer disarm()
	var mu sync.Mutex
	var attempts []int
	env := newSDKEnvOpts(t, be, &duro.WorkerOptions{DisableEagerActivities: !eager, ActivityLeaseDuration: 5 * time.Second}, func(r *duro.Registry) {
		duro.RegisterActivity(r, "Note", func(ctx duro.ActivityContext, _ any) (string, error) {
			mu.Lock()
			attempts = append(attempts, ctx.Attempt())
			mu.Unlock()
			return "noted", nil
		})
		duro.RegisterOrchestration(r, "LostReply", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
			var s string
			err := ctx.CallActivity("Note", nil).Await(&s)
			return s, err
		})
	})
	// A first instance, whose reply arrives, makes sure the activity loop
	// runs (a worker that just started may not dispatch eagerly yet).
	if got := mustOutput[string](t, env.run(t, "LostReply", nil, duro.StartOptions{InstanceID: id + "-warm-up"})); got != "noted" {
		t.Fatalf("output %q", got)
	}
	before := env.worker.Stats()
	mu.Lock()
	attempts = nil
	mu.Unlock()
	start := time.Now()
	if got := mustOutput[string](t, env.run(t, "LostReply", nil, duro.StartOptions{InstanceID: id})); got != "noted" {
		t.Fatalf("output %q", got)
	}
	if n := disarm(); n != 1 {
		t.Fatalf("the reply of %d step commits was dropped, want 1: the backend has no %s point", n, fault.StepReplyLost)
	}
	// The instance can finish while the worker still retries the first
	// commit (the commit did happen): stopping the worker waits for that.
	stop, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.worker.Stop(stop); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(attempts, []int{1}) {
		t.Errorf("the activity ran on attempts %v after %v, want once on attempt 1", attempts, time.Since(start).Round(time.Millisecond))
	}
	s := env.worker.Stats()
	if s.StaleCompletionsRejected != 0 {
		t.Errorf("StaleCompletionsRejected = %d: the worker took its own committed step for a stale one", s.StaleCompletionsRejected)
	}
	if n := s.EagerActivities - before.EagerActivities; eager && n != 1 {
		t.Errorf("EagerActivities grew by %d, want 1: the claim the commit made was not handed to the worker", n)
	}
}

// singleClaims is a backend with eager dispatch but without batch claims.
type singleClaims struct {
	backend.Backend
	ec backend.StepActivityClaimer
}

func (b *singleClaims) CompleteOrchestrationStepClaim(ctx context.Context, p *backend.CompleteOrchestrationStepParams,
	claim *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	return b.ec.CompleteOrchestrationStepClaim(ctx, p, claim, max)
}
