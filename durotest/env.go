package durotest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/memory"
	"github.com/durohq/duro/internal/testhook"
)

// DefaultTimeout is how long, in real time, one call that runs the
// environment (Wait, Run, WaitSuspended, Advance) may take before it fails
// the test; see WithTimeout.
const DefaultTimeout = 30 * time.Second

// workerName is the environment's worker, the owner of its leases.
const workerName = "durotest"

// Option configures an Env.
type Option func(*config)

type config struct {
	start   time.Time
	timeout time.Duration
	logger  *slog.Logger
	reg     *duro.Registry
	opts    duro.WorkerOptions
}

// WithStartTime sets the virtual clock's time when the environment is
// created. Default: the real time then, to the millisecond.
func WithStartTime(t time.Time) Option { return func(c *config) { c.start = t } }

// WithTimeout bounds, in real time, each call that runs the environment.
// Default: DefaultTimeout.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithLogger sends the worker's logs to l. Default: they are discarded
// (an injected crash, for one, makes the worker log a lost lease).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithRegistry runs the code registered in reg instead of a new
// Registry: the application's own registration function can fill it.
func WithRegistry(reg *duro.Registry) Option { return func(c *config) { c.reg = reg } }

// WithWorkerOptions sets the worker's options: lease durations (the time
// a crashed delivery holds its task), MaxDeliveries, Codec and so on.
// Name, Logger and Tracer are the environment's.
func WithWorkerOptions(o duro.WorkerOptions) Option { return func(c *config) { c.opts = o } }

// Env is a test environment: one worker and one client on a private
// in-memory store whose clock is virtual. The clock stands still while
// anything can run, and jumps to the next due time (a timer, a retry's
// backoff, an event's timeout, a lapsed lease) when nothing can: only
// while a call such as Wait or Advance runs the environment, so that the
// test's own calls between them happen at a known time. Create it with New;
// the test's Cleanup closes it. An Env's methods fail the test they were
// created with (t.Fatalf) and must be called from its goroutine.
type Env struct {
	t      testing.TB
	cfg    config
	reg    *duro.Registry
	st     *state
	store  *store
	client *duro.Client
	worker *duro.Worker

	mu      sync.Mutex
	started bool
	closed  bool
	// actions are the functions scheduled at virtual times (AfterFunc),
	// in order of time, then of scheduling.
	actions []action
}

type action struct {
	at time.Time
	fn func()
}

// New returns an environment for the test t, closed by t's Cleanup.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	cfg := config{start: time.Now().UTC().Truncate(time.Millisecond), timeout: DefaultTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.reg == nil {
		cfg.reg = duro.NewRegistry()
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	e := &Env{t: t, cfg: cfg, reg: cfg.reg, st: newState(cfg.reg, workerName, cfg.start)}
	inner, err := memory.Open(&memory.Options{Clock: e.st.clock.Now, Logger: cfg.logger})
	if err != nil {
		t.Fatalf("durotest: open the in-memory store: %v", err)
	}
	e.store = &store{inner: inner, s: e.st}
	wo := cfg.opts
	wo.Name, wo.Logger, wo.Tracer = workerName, cfg.logger, nil
	e.worker, err = duro.NewWorker(e.store, e.reg, &wo)
	if err != nil {
		_ = inner.Close()
		t.Fatalf("durotest: %v", err)
	}
	testhook.SetWorkerClock(e.worker, e.st.clock.Now)
	e.client = duro.NewClient(e.store, &duro.ClientOptions{Codec: wo.Codec, MaxPayloadBytes: wo.MaxPayloadBytes})
	testhook.SetClientClock(e.client, e.st.clock.Now)
	t.Cleanup(e.Close)
	return e
}

// Registry is where the test registers the orchestrations and activities
// the environment runs. Register them before the first Start.
func (e *Env) Registry() *duro.Registry { return e.reg }

// Client is the environment's client, on the virtual clock, for what the
// Env has no helper for (Suspend, Terminate, Rewind, entities, ...). The
// environment runs only inside its own calls: after a client call, run it
// with Wait or Advance.
func (e *Env) Client() *duro.Client { return e.client }

// Backend is the environment's store (the in-memory backend, seen through
// the layer that counts the work in flight). Use it for reading; writes
// through it count like the client's.
func (e *Env) Backend() backend.Backend { return e.store }

// Now is the virtual clock's time.
func (e *Env) Now() time.Time { return e.st.clock.Now() }

// Close stops the worker and closes the store. The test's Cleanup calls
// it; calling it again does nothing.
func (e *Env) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	started := e.started
	e.mu.Unlock()
	if started {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.worker.Stop(ctx); err != nil {
			e.t.Errorf("durotest: stop the worker: %v (an activity ignored its context's cancellation)", err)
		}
	}
	if err := e.store.Close(); err != nil {
		e.t.Errorf("durotest: close the store: %v", err)
	}
}

// ensureStarted starts the worker on first use.
func (e *Env) ensureStarted() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		e.t.Fatalf("durotest: the environment is closed")
	}
	if e.started {
		return
	}
	if err := e.worker.Start(context.Background()); err != nil {
		e.t.Fatalf("durotest: start the worker: %v", err)
	}
	e.started = true
}

// Start starts an instance of orchestration name with input and returns
// its ID. It does not wait: Wait (or Run) runs it.
func (e *Env) Start(name string, input any, opts ...duro.StartOptions) string {
	e.t.Helper()
	e.ensureStarted()
	id, err := e.client.Start(context.Background(), name, input, opts...)
	if err != nil {
		e.t.Fatalf("durotest: start %q: %v", name, err)
	}
	return id
}

// Run starts an instance of orchestration name with input and waits for
// it to finish (see Wait).
func (e *Env) Run(name string, input any, opts ...duro.StartOptions) *duro.Instance {
	e.t.Helper()
	return e.Wait(e.Start(name, input, opts...))
}

// Wait runs the environment, skipping time whenever nothing can run,
// until instance id has finished (Completed, Failed or Terminated), and
// returns it. It fails the test if the instance cannot finish: nothing
// can run and nothing is due (the instance is suspended for a decision,
// waits for an event nobody raises, calls an activity nobody registers),
// or the environment's timeout passes.
func (e *Env) Wait(id string) *duro.Instance {
	e.t.Helper()
	return e.waitStatus(id, "finished", func(s duro.Status) bool { return s.IsTerminal() })
}

// WaitSuspended runs the environment until instance id is Suspended (an
// at-most-once activity's possible duplicate under OnDuplicateSuspend, a
// poisoned step, a Suspend request) and returns it; the pending decisions
// are in its Suspension.
func (e *Env) WaitSuspended(id string) *duro.Instance {
	e.t.Helper()
	return e.waitStatus(id, "suspended", func(s duro.Status) bool { return s == duro.StatusSuspended })
}

func (e *Env) waitStatus(id, what string, ok func(duro.Status) bool) *duro.Instance {
	e.t.Helper()
	e.ensureStarted()
	var inst *duro.Instance
	err := e.run(func() (bool, error) {
		var err error
		inst, err = e.client.Get(context.Background(), id)
		if err != nil {
			return false, err
		}
		return ok(inst.Status), nil
	}, false, time.Time{}, func() string {
		return fmt.Sprintf("instance %q is not %s: %s", id, what, e.describe(id))
	})
	if err != nil {
		e.t.Fatalf("durotest: wait for %q: %v", id, err)
	}
	return inst
}

// Advance runs the environment for d of virtual time: it returns when the
// clock has reached Now()+d and nothing more can run then.
func (e *Env) Advance(d time.Duration) {
	e.t.Helper()
	e.ensureStarted()
	target := e.Now().Add(d)
	err := e.run(func() (bool, error) { return !e.Now().Before(target), nil }, true, target, nil)
	if err != nil {
		e.t.Fatalf("durotest: advance %v: %v", d, err)
	}
}

// AfterFunc schedules fn to run when the virtual clock reaches Now()+d,
// inside the call that runs the environment then (Wait, Advance), on its
// goroutine, once what is due at that instant has run. A timer that fires
// at the same instant is processed first.
func (e *Env) AfterFunc(d time.Duration, fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := action{at: e.Now().Add(d), fn: fn}
	i := sort.Search(len(e.actions), func(i int) bool { return e.actions[i].at.After(a.at) })
	e.actions = append(e.actions, action{})
	copy(e.actions[i+1:], e.actions[i:])
	e.actions[i] = a
}

// RaiseEvent delivers event name with data to instance id now.
func (e *Env) RaiseEvent(id, name string, data any) {
	e.t.Helper()
	if err := e.client.RaiseEvent(context.Background(), id, name, data); err != nil {
		e.t.Fatalf("durotest: %v", err)
	}
}

// RaiseEventAfter delivers event name with data to instance id when the
// virtual clock reaches Now()+d (see AfterFunc): to test what an
// orchestration does with an event that comes before, or after, its
// WaitForEvent timeout.
func (e *Env) RaiseEventAfter(d time.Duration, id, name string, data any) {
	e.AfterFunc(d, func() { e.RaiseEvent(id, name, data) })
}

// Resume resumes suspended instance id with one decision per task
// waiting for one (duro.CompleteTask, duro.RetryTask, duro.FailTask); run
// the environment afterwards (Wait) to apply it.
func (e *Env) Resume(id string, decisions ...duro.Decision) {
	e.t.Helper()
	if err := e.client.Resume(context.Background(), id, "durotest", decisions...); err != nil {
		e.t.Fatalf("durotest: resume %q: %v", id, err)
	}
}

// PendingDecisions returns the at-most-once tasks of instance id waiting
// for a decision (none unless it is Suspended for one).
func (e *Env) PendingDecisions(id string) []*duro.PendingDecision {
	e.t.Helper()
	inst, err := e.client.Get(context.Background(), id)
	if err != nil {
		e.t.Fatalf("durotest: %v", err)
	}
	if inst.Suspension == nil {
		return nil
	}
	return inst.Suspension.Pending
}

// CrashAfterStart makes the next delivery of activity name vanish once it
// has started, as a worker that died then would: for an at-most-once
// activity, after it marked itself started in the store and before its code
// runs; for an at-least-once activity, after its claim. Its lease lapses
// (ActivityLeaseDuration of virtual time), and the next delivery is a
// possible duplicate (ActivityContext.MayBeDuplicate), which an
// at-most-once activity handles by its OnDuplicate policy. Each call arms
// one crash.
func (e *Env) CrashAfterStart(name string) { e.st.armCrash(crashAfterStart, name) }

// CrashAfterRun makes the next delivery of activity name whose code
// returns vanish before its result reaches the store: the code ran, and the
// task is delivered again once the lease lapses, a duplicate delivery. Each
// call arms one crash.
func (e *Env) CrashAfterRun(name string) { e.st.armCrash(crashAfterRun, name) }

var (
	activityContextType = reflect.TypeFor[duro.ActivityContext]()
	errorType           = reflect.TypeFor[error]()
)

// OnActivity replaces the code of activity name with fn, a
// func(duro.ActivityContext, I) (O, error) as RegisterActivity takes,
// keeping the options it was registered with (its guarantee, policy,
// reconciler, retry policy). An activity not registered is registered
// with fn and the default options. The input is decoded into I, so I
// must match what the orchestration passes.
func (e *Env) OnActivity(name string, fn any) {
	e.t.Helper()
	v := reflect.ValueOf(fn)
	if v.Kind() != reflect.Func || !activityShape(v.Type()) {
		e.t.Fatalf("durotest: OnActivity(%q): fn is %T; want func(duro.ActivityContext, I) (O, error)", name, fn)
	}
	in := v.Type().In(1)
	testhook.ReplaceActivity(e.reg, name, func(actx any, decode func(ptr any) error) (any, error) {
		arg := reflect.New(in)
		if err := decode(arg.Interface()); err != nil {
			return nil, err
		}
		out := v.Call([]reflect.Value{reflect.ValueOf(actx), arg.Elem()})
		if err, _ := out[1].Interface().(error); err != nil {
			return nil, err
		}
		return out[0].Interface(), nil
	})
}

// activityShape reports whether ft is func(duro.ActivityContext, I) (O, error).
func activityShape(ft reflect.Type) bool {
	return ft.NumIn() == 2 && ft.In(0) == activityContextType && !ft.IsVariadic() &&
		ft.NumOut() == 2 && ft.Out(1) == errorType
}

// run runs the environment until done reports true, skipping time
// whenever nothing can run. done is asked after every change, or only
// when nothing can run if idle is set. target, if set, is a time the
// clock stops at. stuck describes why done cannot become true when
// nothing can run and nothing is due (nil: it cannot happen).
func (e *Env) run(done func() (bool, error), idle bool, target time.Time, stuck func() string) error {
	deadline := time.NewTimer(e.cfg.timeout)
	defer deadline.Stop()
	for {
		snap := e.st.snapshot()
		if snap.idle || !idle {
			ok, err := done()
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
		}
		if snap.idle {
			if fn := e.dueAction(); fn != nil {
				fn()
				continue
			}
			next, err := e.nextDue(target)
			if err != nil {
				return err
			}
			if next.IsZero() {
				return errors.New(stuck())
			}
			e.st.advance(snap.gen, next)
			continue
		}
		select {
		case <-snap.changed:
		case <-deadline.C:
			return fmt.Errorf("still running after %v of real time (at virtual %s): %s",
				e.cfg.timeout, e.Now().Format(time.RFC3339Nano), e.st.busy())
		}
	}
}

// dueAction removes and returns the first scheduled function due now.
func (e *Env) dueAction() func() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.actions) == 0 || e.actions[0].at.After(e.Now()) {
		return nil
	}
	fn := e.actions[0].fn
	e.actions = e.actions[1:]
	return fn
}

// nextDue returns the earliest time after Now at which something becomes
// due: a message (a timer, a delayed start), a step or task handed back
// with a delay, a lease that lapses, a scheduled function, or target.
// Zero means none.
func (e *Env) nextDue(target time.Time) (time.Time, error) {
	now := e.Now()
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	consider(target)
	e.mu.Lock()
	if len(e.actions) > 0 {
		consider(e.actions[0].at)
	}
	e.mu.Unlock()
	ctx := context.Background()
	p := &backend.ListInstancesParams{PageSize: 1000, OmitPayloads: true, Statuses: []backend.Status{
		backend.StatusPending, backend.StatusRunning, backend.StatusSuspended, backend.StatusContinuedAsNew}}
	for {
		page, err := e.store.inner.ListInstances(ctx, p)
		if err != nil {
			return time.Time{}, err
		}
		for _, inst := range page.Instances {
			f, err := e.store.inner.InFlight(ctx, inst.ID)
			if errors.Is(err, backend.ErrInstanceNotFound) {
				continue
			}
			if err != nil {
				return time.Time{}, err
			}
			consider(f.Step.ExpiresAt)
			consider(f.NextMessageAt)
			for _, t := range f.Tasks {
				if !t.Parked {
					consider(t.ExpiresAt)
					consider(t.VisibleAt)
				}
			}
		}
		if page.NextPageToken == "" {
			return next, nil
		}
		p.PageToken = page.NextPageToken
	}
}

// describe says why instance id cannot go on, for a stuck Wait.
func (e *Env) describe(id string) string {
	ctx := context.Background()
	inst, err := e.client.Get(ctx, id)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "it is %s and nothing is due", inst.Status)
	if s := inst.Suspension; s != nil {
		fmt.Fprintf(&b, " (%s)", s.Reason)
		for _, pd := range s.Pending {
			fmt.Fprintf(&b, "; task %d (%s, attempt %d) waits for a decision: env.Resume(id, duro.CompleteTask(%d, result)) or RetryTask or FailTask",
				pd.TaskID, pd.Name, pd.Attempt, pd.TaskID)
		}
		return b.String()
	}
	if inst.Status == duro.StatusPending {
		fmt.Fprintf(&b, "; no step of it ran: is orchestration %q registered?", inst.Name)
	}
	if f, err := e.store.inner.InFlight(ctx, id); err == nil {
		for _, t := range f.Tasks {
			if t.Owner == "" && !t.Parked {
				fmt.Fprintf(&b, "; activity %q (task %d) waits for a worker that registers it", t.Name, t.TaskID)
			}
		}
	}
	if inst.Status == duro.StatusRunning {
		b.WriteString("; it may wait for an event (RaiseEvent) or another instance")
	}
	return b.String()
}
