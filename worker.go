package duro

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/dispatch"
	"github.com/durohq/duro/internal/fault"
	"github.com/durohq/duro/internal/replay"
	"github.com/durohq/duro/internal/telemetry"
)

// WorkerOptions configure a Worker. The zero value is usable: every field has
// a documented default.
type WorkerOptions struct {
	// Name identifies the worker in leases and logs. Default: host:pid.
	Name string
	// OrchestrationConcurrency is how many orchestration steps run at once.
	// Steps spend most of their time waiting for the store, and concurrent
	// steps share its commits (group commit): the more are in flight, the
	// more each commit carries. Default: DefaultConcurrency.
	OrchestrationConcurrency int
	// ActivityConcurrency is how many activities run at once. Activities
	// that wait on the network want many; lower it for activities that
	// burn CPU or memory. Default: DefaultConcurrency.
	ActivityConcurrency int
	// OrchestrationLeaseDuration is how long a claimed step is held before
	// another worker may claim it again; the worker renews it every third
	// of its length while the step (or entity batch) runs. Default: 30s.
	OrchestrationLeaseDuration time.Duration
	// ActivityLeaseDuration is the default lease of an activity delivery; the
	// worker renews it every third of its length while the code runs, so it
	// bounds how soon a dead worker's task is redelivered. Default: 1m.
	ActivityLeaseDuration time.Duration
	// DisableEagerActivities turns off eager activity dispatch. By default,
	// when the backend can (backend.StepActivityClaimer: SQLite, PostgreSQL)
	// and this worker has free activity slots, the commit of an
	// orchestration step also claims the activities the step schedules for
	// this worker, which runs them at once: no separate claim, no wait for
	// a wake-up. The claims are ordinary ones (attempt numbers, leases,
	// fencing); only the order changes, since such tasks start before older
	// tasks waiting in the store.
	DisableEagerActivities bool
	// DisableFusedSteps turns off fused activity→step commits. By default,
	// when the backend can (backend.ActivityStepClaimer: SQLite,
	// PostgreSQL) and this worker runs orchestrations and has a free
	// orchestration slot, the completion of an activity also claims, in
	// the same transaction, the next step of the instance the result goes
	// to, and the worker runs that step at once: no separate claim, no
	// wait for a wake-up. The claim is an ordinary one (attempt number,
	// lease, fencing); it is made only if no other delivery holds the
	// instance and the instance has no other activity task in flight (a
	// fan-out's results collect for one step), and such a step runs
	// before older steps waiting in the store. A stopping worker claims
	// none. When the backend can also commit the step with the completion
	// (backend.ActivityStepCommitter: PostgreSQL), the worker runs the
	// step inside the completion's transaction and the two commit
	// together: one commit per activity result (see docs/backends.md,
	// "Fused commits").
	DisableFusedSteps bool
	// PollInterval is the longest an idle worker waits before looking for
	// work again. Backends that signal new work wake it sooner. It also
	// bounds how late a durable timer fires. Default: 100ms.
	PollInterval time.Duration
	// Codec encodes payloads. Default: JSONCodec.
	Codec Codec
	// MaxPayloadBytes limits one encoded payload (activity results,
	// orchestration outputs). Default: DefaultMaxPayloadBytes; negative means
	// no limit.
	MaxPayloadBytes int
	// MaxStepDeliveries is how many times one orchestration step may be
	// delivered without committing (the worker crashed during it, the engine
	// panicked, the orchestration is not registered) before the instance is
	// suspended as poisoned, its messages kept. Default: DefaultMaxDeliveries.
	MaxStepDeliveries int
	// MaxDeliveries is the default delivery limit of activities: the
	// delivery after the last one fails the task as poisoned (ErrPoisoned)
	// instead of running it again. Default: DefaultMaxDeliveries.
	MaxDeliveries int
	// EntityDedupWindow is how many processed request IDs each entity keeps
	// to drop duplicates. Default: DefaultEntityDedupWindow.
	EntityDedupWindow int
	// EntityDedupAge is how long each entity keeps a processed request ID.
	// Default: DefaultEntityDedupAge, longer than the default retry horizon
	// of an activity (MaxDeliveries leases plus backoffs).
	EntityDedupAge time.Duration
	// EntityQueueLimit is how many requests may wait for an entity held in
	// a critical section by another orchestration; the queue is stored
	// with the entity's state. A request beyond it is refused, and nothing
	// else is lost: a call or LockEntities from an orchestration fails
	// with an *EntityQueueFullError (ErrEntityQueueFull), a signal is
	// dropped, logged and counted (WorkerStats.EntityRequestsRejected).
	// Default: DefaultEntityQueueLimit.
	EntityQueueLimit int
	// Logger receives the worker's logs. Default: slog.Default().
	Logger *slog.Logger
	// HeartbeatInterval is how often the worker records its heartbeat in
	// the store (when it keeps them, backend.WorkerRegistry): its name,
	// host, registrations and busy slots, for 'duro workers', the API and
	// the dashboard, and to flag instances no live worker can run. A
	// worker counts as gone three intervals after its last heartbeat, or
	// at once after Stop. Negative turns heartbeats off (the worker is then
	// invisible to operators). Default: DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// Tracer receives a span for each orchestration step and each activity
	// delivery, all of an execution's spans in one trace (see
	// docs/server.md). Default: a no-op provider.
	Tracer trace.TracerProvider
	// StickyOrchestrations bounds the sticky executor cache by count: how
	// many orchestrations the worker keeps live between their steps, so
	// that the next step applies only its new events instead of replaying
	// the whole history (a step's cost stays flat as history grows). The
	// cached executor of an instance is its code's goroutine, parked where
	// it waits, and its replayed state. A step uses it only when it sits
	// exactly at the end of the claimed history (same execution, same
	// length, the same events where it last stepped, a newer delivery);
	// anything else (another worker's step, a continue-as-new, a purge and
	// re-creation, a rewind, a suspension, termination, an error, a lost
	// lease or a commit that did not succeed) replays from the start as
	// without the cache, and drops it. The least recently used are evicted
	// first; eviction, and Stop, end their goroutines (the code's deferred
	// calls run then, as they do at the end of every step without the
	// cache). Negative disables the cache. Default:
	// DefaultStickyOrchestrations.
	StickyOrchestrations int
	// StickyCacheBytes bounds the sticky executor cache by the approximate
	// bytes its executors retain (the events they applied, with their
	// payloads, and a fixed cost per executor for its goroutine). Negative
	// disables the cache. Default: DefaultStickyCacheBytes.
	StickyCacheBytes int64
}

// DefaultConcurrency is the default of WorkerOptions.OrchestrationConcurrency
// and ActivityConcurrency. On the 2-core benchmark machine, throughput grew
// with concurrency up to about 256 and was flat beyond (docs/benchmarks.md).
const DefaultConcurrency = 256

// Defaults of an entity's window of processed request IDs.
const (
	DefaultEntityDedupWindow = 5000
	DefaultEntityDedupAge    = 7 * 24 * time.Hour
)

// DefaultEntityQueueLimit is the default of WorkerOptions.EntityQueueLimit.
const DefaultEntityQueueLimit = 1000

// WithDefaults returns a copy of o with zero fields set to their defaults.
func (o WorkerOptions) WithDefaults() WorkerOptions {
	if o.Name == "" {
		host, _ := os.Hostname()
		o.Name = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if o.OrchestrationConcurrency == 0 {
		o.OrchestrationConcurrency = DefaultConcurrency
	}
	if o.ActivityConcurrency == 0 {
		o.ActivityConcurrency = DefaultConcurrency
	}
	if o.OrchestrationLeaseDuration == 0 {
		o.OrchestrationLeaseDuration = 30 * time.Second
	}
	if o.ActivityLeaseDuration == 0 {
		o.ActivityLeaseDuration = time.Minute
	}
	if o.PollInterval == 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.Codec == nil {
		o.Codec = JSONCodec{}
	}
	if o.MaxPayloadBytes == 0 {
		o.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if o.MaxDeliveries == 0 {
		o.MaxDeliveries = DefaultMaxDeliveries
	}
	if o.MaxStepDeliveries == 0 {
		o.MaxStepDeliveries = DefaultMaxDeliveries
	}
	if o.EntityDedupWindow == 0 {
		o.EntityDedupWindow = DefaultEntityDedupWindow
	}
	if o.EntityDedupAge == 0 {
		o.EntityDedupAge = DefaultEntityDedupAge
	}
	if o.EntityQueueLimit == 0 {
		o.EntityQueueLimit = DefaultEntityQueueLimit
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	if o.StickyOrchestrations == 0 {
		o.StickyOrchestrations = DefaultStickyOrchestrations
	}
	if o.StickyCacheBytes == 0 {
		o.StickyCacheBytes = DefaultStickyCacheBytes
	}
	return o
}

func (o WorkerOptions) validate() error {
	switch {
	case o.OrchestrationConcurrency < 0:
		return fmt.Errorf("duro: WorkerOptions.OrchestrationConcurrency is %d; want > 0", o.OrchestrationConcurrency)
	case o.ActivityConcurrency < 0:
		return fmt.Errorf("duro: WorkerOptions.ActivityConcurrency is %d; want > 0", o.ActivityConcurrency)
	case o.OrchestrationLeaseDuration < 10*time.Millisecond:
		return fmt.Errorf("duro: WorkerOptions.OrchestrationLeaseDuration is %v; want >= 10ms", o.OrchestrationLeaseDuration)
	case o.ActivityLeaseDuration < 10*time.Millisecond:
		return fmt.Errorf("duro: WorkerOptions.ActivityLeaseDuration is %v; want >= 10ms", o.ActivityLeaseDuration)
	case o.PollInterval < 0:
		return fmt.Errorf("duro: WorkerOptions.PollInterval is %v; want > 0", o.PollInterval)
	case o.MaxDeliveries < 0:
		return fmt.Errorf("duro: WorkerOptions.MaxDeliveries is %d; want > 0", o.MaxDeliveries)
	case o.EntityDedupWindow < 0 || o.EntityDedupAge < 0:
		return fmt.Errorf("duro: WorkerOptions.EntityDedupWindow (%d) and EntityDedupAge (%v) must not be negative", o.EntityDedupWindow, o.EntityDedupAge)
	case o.EntityQueueLimit < 0:
		return fmt.Errorf("duro: WorkerOptions.EntityQueueLimit is %d; want > 0", o.EntityQueueLimit)
	case o.HeartbeatInterval > 0 && o.HeartbeatInterval < 10*time.Millisecond:
		return fmt.Errorf("duro: WorkerOptions.HeartbeatInterval is %v; want >= 10ms (or negative: off)", o.HeartbeatInterval)
	case o.MaxStepDeliveries < 0:
		return fmt.Errorf("duro: WorkerOptions.MaxStepDeliveries is %d; want > 0", o.MaxStepDeliveries)
	}
	return nil
}

// Worker runs the orchestrations and activities of a Registry against a
// backend. Any number of workers may share a backend that supports it
// (PostgreSQL); leases make sure each work item runs in one place at a time.
type Worker struct {
	be   backend.Backend
	reg  *Registry
	opts WorkerOptions
	p    payloads
	log  *slog.Logger
	tr   trace.Tracer
	// lookupFn and failureFn are w.lookup and the worker's conversion of
	// errors into failures, made once rather than on every step.
	lookupFn  func(name string) (replay.Orchestrator, bool)
	failureFn func(err error) *backend.Failure

	stats workerStats
	// sticky keeps orchestrations' live executors between steps; nil when
	// disabled.
	sticky *stickyCache
	// now is the worker's clock: the time of its steps (in history, in
	// OrchestrationContext.Now, the base of durable timers) and of the
	// results it records. time.Now, unless package durotest set its
	// virtual clock (internal/testhook).
	now func() time.Time

	// eager is the backend's StepActivityClaimer when eager activity
	// dispatch is on; act is the activity loop that runs what it claims,
	// and actClaim its claim parameters.
	eager    backend.StepActivityClaimer
	act      *dispatch.Loop[*backend.ActivityWorkItem]
	actClaim backend.ClaimParams
	// fused is the backend's ActivityStepClaimer when fused steps are on;
	// orch is the orchestration loop that runs what it claims, and
	// orchClaim its claim parameters.
	fused     backend.ActivityStepClaimer
	orch      *dispatch.Loop[*backend.OrchestrationWorkItem]
	orchClaim backend.ClaimParams
	// committer is the backend's ActivityStepCommitter when fused steps
	// are on: the fused step then runs in the completion's transaction
	// and commits with it.
	committer backend.ActivityStepCommitter
	// unregistered holds the activities this worker's steps called
	// without registering them, each logged once.
	unregistered sync.Map

	mu          sync.Mutex
	started     bool
	stopped     bool
	cancelClaim context.CancelFunc
	cancelWork  context.CancelFunc
	done        chan struct{}
	// stopping is closed when Stop is called: deliveries claimed but not
	// started by then are released unstarted.
	stopping chan struct{}
}

// NewWorker returns a worker for be running the code in reg. opts may be nil.
func NewWorker(be backend.Backend, reg *Registry, opts *WorkerOptions) (*Worker, error) {
	if be == nil || reg == nil {
		return nil, errors.New("duro: NewWorker needs a backend and a registry")
	}
	var o WorkerOptions
	if opts != nil {
		o = *opts
	}
	o = o.WithDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	limit := o.MaxPayloadBytes
	if limit < 0 {
		limit = 0
	}
	w := &Worker{be: be, reg: reg, opts: o, p: payloads{codec: o.Codec, limit: limit},
		log: o.Logger.With("worker", o.Name), tr: o.Tracer.Tracer(telemetry.ScopeName), now: time.Now}
	w.sticky = newStickyCache(o.StickyOrchestrations, o.StickyCacheBytes, &w.stats)
	w.lookupFn = w.lookup
	w.failureFn = func(err error) *backend.Failure { return failureFromError(w.p.codec, err) }
	return w, nil
}

// Start launches the worker's loops and returns. They run until Stop.
func (w *Worker) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return errors.New("duro: worker already started")
	}
	w.started = true
	claimCtx, cancelClaim := context.WithCancel(context.Background())
	workCtx, cancelWork := context.WithCancel(context.Background())
	w.cancelClaim, w.cancelWork = cancelClaim, cancelWork
	w.done = make(chan struct{})
	w.stopping = make(chan struct{})

	var orchWake, actWake func() <-chan struct{}
	if n, ok := w.be.(backend.WorkNotifier); ok {
		orchWake, actWake = n.WorkAvailable, n.WorkAvailable
	}
	// A backend that tells the kinds of work apart wakes each loop only for
	// its own (the SQLite backend does): an activity result does not send
	// the activity loop to claim in vain, nor a scheduled activity the
	// orchestration loop.
	if n, ok := w.be.(backend.KindNotifier); ok {
		orchWake, actWake = n.OrchestrationWorkAvailable, n.ActivityWorkAvailable
	}
	orchClaim := &backend.ClaimParams{Owner: w.opts.Name, LeaseDuration: w.opts.OrchestrationLeaseDuration}
	actClaim := &backend.ClaimParams{Owner: w.opts.Name, LeaseDuration: w.opts.ActivityLeaseDuration}
	orch := &dispatch.Loop[*backend.OrchestrationWorkItem]{
		Name: "orchestration", Concurrency: w.opts.OrchestrationConcurrency, PollInterval: w.opts.PollInterval,
		Wake: orchWake, Logger: w.log,
		Claim: func(ctx context.Context) (*backend.OrchestrationWorkItem, bool, error) {
			if !w.reg.runsSteps() {
				return nil, false, nil
			}
			p := *orchClaim
			wi, err := w.be.ClaimOrchestrationStep(ctx, &p)
			return wi, wi != nil, err
		},
		Handle: w.runStep,
	}
	// The activity loop claims only the activities this worker registers
	// (a split fleet, a rolling deploy): a task it cannot run waits for a
	// worker that can, with its attempt number unspent.
	act := &dispatch.Loop[*backend.ActivityWorkItem]{
		Name: "activity", Concurrency: w.opts.ActivityConcurrency, PollInterval: w.opts.PollInterval,
		Wake: actWake, Logger: w.log,
		Claim: func(ctx context.Context) (*backend.ActivityWorkItem, bool, error) {
			p := *actClaim
			if p.ActivityNames = w.reg.activityNames(); len(p.ActivityNames) == 0 {
				return nil, false, nil
			}
			wi, err := w.be.ClaimActivity(ctx, &p)
			return wi, wi != nil, err
		},
		Handle: w.runActivity,
	}
	// A backend that claims several work items in one commit fills every
	// free slot at once.
	if bc, ok := w.be.(backend.BatchClaimer); ok {
		orch.ClaimBatch = func(ctx context.Context, max int) ([]*backend.OrchestrationWorkItem, error) {
			if !w.reg.runsSteps() {
				return nil, nil
			}
			p := *orchClaim
			return bc.ClaimOrchestrationSteps(ctx, &p, max)
		}
		act.ClaimBatch = func(ctx context.Context, max int) ([]*backend.ActivityWorkItem, error) {
			p := *actClaim
			if p.ActivityNames = w.reg.activityNames(); len(p.ActivityNames) == 0 {
				return nil, nil
			}
			return bc.ClaimActivities(ctx, &p, max)
		}
	}
	w.act, w.actClaim = act, *actClaim
	if ec, ok := w.be.(backend.StepActivityClaimer); ok && !w.opts.DisableEagerActivities {
		w.eager = ec
	}
	w.orch, w.orchClaim = orch, *orchClaim
	if fc, ok := w.be.(backend.ActivityStepClaimer); ok && !w.opts.DisableFusedSteps {
		w.fused = fc
		if sc, ok := w.be.(backend.ActivityStepCommitter); ok {
			w.committer = sc
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); orch.Run(claimCtx, workCtx) }()
	go func() { defer wg.Done(); act.Run(claimCtx, workCtx) }()
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	beats := w.startHeartbeat(claimCtx, drained, orch, act)
	go func() { <-beats; close(w.done) }()
	w.log.Debug("duro: worker started")
	return nil
}

// Stop stops claiming work and waits for in-flight work to finish: a
// graceful scale-in. Activity deliveries claimed but not started when Stop
// is called (an eager claim, a claim made as Stop began) are released
// unstarted, so the next delivery is not a possible duplicate on their
// account; code that runs keeps its lease renewed until it returns. When
// ctx is done first, the running activities' contexts are cancelled and
// their deliveries handed back once the code returns, so another worker
// redelivers them (with the next attempt number; an at-most-once one as a
// possible duplicate, since its code had started). Stop returns ctx's
// error in that case, after every goroutine has exited.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	if !w.started || w.stopped {
		w.mu.Unlock()
		return nil
	}
	w.stopped = true
	w.mu.Unlock()
	close(w.stopping)
	w.cancelClaim()
	// No step runs once the loops have drained: the cached executors'
	// goroutines end with them.
	defer w.sticky.close()
	select {
	case <-w.done:
		w.cancelWork()
		return nil
	case <-ctx.Done():
		w.cancelWork()
		<-w.done
		return ctx.Err()
	}
}

// lookup adapts registered orchestrations to the replay engine.
func (w *Worker) lookup(name string) (replay.Orchestrator, bool) {
	fn, ok := w.reg.orchestration(name)
	if !ok {
		return nil, false
	}
	return func(c *replay.Context, input []byte) ([]byte, error) {
		octx := &OrchestrationContext{c: c, p: w.p, reg: w.reg, w: w}
		out, err := fn(octx, input)
		if err != nil {
			return nil, err
		}
		if isNil(out) {
			return nil, nil
		}
		return w.p.encodeAs(func() string { return fmt.Sprintf("output of orchestration %q", name) }, out)
	}, true
}

func (w *Worker) runStep(ctx context.Context, wi *backend.OrchestrationWorkItem) {
	r := w.startRun(ctx, wi)
	defer r.end()
	inst := wi.Instance
	// The lease is renewed while the step runs; entity operations run
	// under lease.ctx, cancelled if the lease is lost.
	lease := w.keepStepLease(r.ctx, wi, r.log)
	var err error
	if wi.Deliveries > w.opts.MaxStepDeliveries {
		reason := fmt.Sprintf("step delivered %d times without committing (limit %d)", wi.Deliveries, w.opts.MaxStepDeliveries)
		if cause := w.notRegistered(inst); cause != "" {
			reason += "; on worker " + w.opts.Name + ": " + cause
		}
		r.log().Error("duro: orchestration step poisoned; suspending the instance with its messages kept", "deliveries", wi.Deliveries)
		w.stats.stepsPoisoned.Add(1)
		r.outcome = telemetry.OutcomePoisoned
		r.params = replay.PoisonStep(wi, reason, w.now())
		w.sticky.take(inst.ID).Close()
	} else if replay.EntityName(inst.ID) != "" {
		select {
		case <-w.stopping:
			// Claimed as Stop began: hand the batch back before any of
			// its operations runs (nothing marked it started).
			lease.stop()
			r.outcome = telemetry.OutcomeHandedBack
			w.abandonStep(wi, 0)
			return
		default:
		}
		r.params, err = w.executeEntity(lease.ctx, wi, r.log())
	} else {
		r.params, r.ex, err = w.execute(wi, r.log)
	}
	if lost := lease.stop(); lost != nil {
		// Another delivery holds the instance: never commit (the commit
		// would be fenced anyway), nor hand back what is not ours.
		w.stats.staleRejected.Add(1)
		r.outcome, r.err = telemetry.OutcomeLeaseLost, lost
		r.log().Warn("duro: orchestration step lost its lease while running; its result is discarded", "err", lost)
		return
	}
	if err != nil {
		// Hand the step back; after MaxStepDeliveries it is poisoned.
		r.log().Warn("duro: orchestration step handed back", "err", err, "deliveries", wi.Deliveries)
		r.outcome, r.err = telemetry.OutcomeHandedBack, err
		w.abandonStep(wi, 10*w.opts.PollInterval)
		return
	}
	fault.Point(fault.StepBeforeCommit)
	w.commitRun(r)
}

// stepRun is one delivery of a step on its way through the worker: its
// logger and span, the step its code computed, and the outcome the span
// ends with.
type stepRun struct {
	wi  *backend.OrchestrationWorkItem
	ctx context.Context
	// log returns the step's logger, built (into logger) only when
	// something is logged: most steps log nothing, and With allocates.
	log    func() *slog.Logger
	logger *slog.Logger
	span   trace.Span
	params *backend.CompleteOrchestrationStepParams
	// ex is the step's live executor, kept once the step commits; any
	// other way out of the step closes it (Close of nil does nothing).
	ex *replay.Executor
	// outcome and err are what the span ends with; ended is set once it
	// has.
	outcome string
	err     error
	ended   bool
}

// startRun starts the span and the lazy logger of a delivery of wi.
func (w *Worker) startRun(ctx context.Context, wi *backend.OrchestrationWorkItem) *stepRun {
	r := &stepRun{wi: wi, outcome: telemetry.OutcomeCommitted}
	r.log = func() *slog.Logger {
		if r.logger == nil {
			r.logger = w.log.With("instance", wi.Instance.ID, "orchestration", wi.Instance.Name, "step_attempt", wi.Attempt)
		}
		return r.logger
	}
	r.ctx, r.span = telemetry.StartStep(ctx, w.tr, wi)
	return r
}

// end ends the run's span and closes its executor unless the cache kept
// it.
func (r *stepRun) end() {
	if r.ended {
		return
	}
	r.ended = true
	r.ex.Close()
	r.ex = nil
	telemetry.End(r.span, r.outcome, r.err)
}

// commitRun commits the step r computed (its code ran and it holds the
// lease) and records the outcome.
func (w *Worker) commitRun(r *stepRun) {
	// A computed step is worth committing even while the worker stops.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 30*time.Second)
	defer cancel()
	err := w.commitStep(cctx, r.params, r.log)
	switch {
	case err == nil:
		w.committedRun(r)
	case errors.Is(err, backend.ErrLeaseLost):
		w.stats.staleRejected.Add(1)
		r.outcome, r.err = telemetry.OutcomeLeaseLost, err
		r.log().Warn("duro: stale orchestration step rejected; a newer delivery holds the instance", "err", err)
	default:
		r.log().Error("duro: orchestration step not committed; it will be delivered again", "err", err)
		r.outcome, r.err = telemetry.OutcomeError, err
		w.abandonStep(r.wi, 0)
	}
}

// committedRun records that r's step committed, keeping its executor.
func (w *Worker) committedRun(r *stepRun) {
	w.stats.stepsCompleted.Add(1)
	if r.ex != nil {
		r.ex.Committed()
		w.sticky.put(r.ex)
		r.ex = nil
	}
	if r.span.IsRecording() {
		r.span.SetAttributes(telemetry.AttrStatus.String(string(r.params.Status)))
	}
	fault.Point(fault.StepAfterCommit)
	if (r.params.Status.IsTerminal() || r.params.Status == backend.StatusSuspended) && w.log.Enabled(context.Background(), slog.LevelDebug) {
		r.log().Debug("duro: orchestration step committed", "status", r.params.Status)
	}
}

// commitStep commits a step, retrying transient failures. With eager
// activity dispatch on and activity slots free, the commit also claims the
// step's activities for this worker, which starts them. A retry of a
// commit that did happen (its reply was lost) is recognised by the
// backend: it succeeds, with the claims the commit made.
func (w *Worker) commitStep(ctx context.Context, params *backend.CompleteOrchestrationStepParams, log func() *slog.Logger) (err error) {
	var first error // of the first try that failed
	note := func(err error) error {
		if err != nil && first == nil {
			first = err
		}
		return err
	}
	defer func() {
		if err == nil && first != nil {
			log().Info("duro: orchestration step committed after a retry", "first_err", first)
		}
	}()
	reserved := 0
	if w.eager != nil && len(params.ActivityTasks) > 0 {
		if n := w.runnableFirst(params); n > 0 {
			reserved = w.act.Reserve(n)
		}
	}
	if reserved == 0 {
		return dispatch.Retry(ctx, 5, isPermanent, func() error { return note(w.be.CompleteOrchestrationStep(ctx, params)) })
	}
	var items []*backend.ActivityWorkItem
	defer func() {
		w.stats.eagerActivities.Add(int64(len(items)))
		w.act.Hand(reserved, items)
	}()
	return dispatch.Retry(ctx, 5, isPermanent, func() error {
		claim := w.actClaim
		var err error
		items, err = w.eager.CompleteOrchestrationStepClaim(ctx, params, &claim, reserved)
		return note(err)
	})
}

// runnableFirst puts the step's activity tasks that this worker registers
// first (keeping the order within each part) and returns how many there
// are: the step's commit claims only from them, since a task this worker
// cannot run is left for one that can, with its attempt number unspent.
func (w *Worker) runnableFirst(params *backend.CompleteOrchestrationStepParams) int {
	tasks := params.ActivityTasks
	n := 0
	for _, a := range tasks {
		if _, ok := w.reg.activity(a.Name); ok {
			n++
		}
	}
	if n == 0 || n == len(tasks) {
		return n
	}
	sorted := make([]*backend.ActivityTask, 0, len(tasks))
	for _, runnable := range []bool{true, false} {
		for _, a := range tasks {
			if _, ok := w.reg.activity(a.Name); ok == runnable {
				sorted = append(sorted, a)
			}
		}
	}
	params.ActivityTasks = sorted
	return n
}

// noteUnregistered logs, once per name, that this worker's steps call an
// activity it does not register: the worker that executes it decides its
// guarantee from its own registration.
func (w *Worker) noteUnregistered(name string) {
	if w.log == nil {
		return // a Replayer's worker
	}
	if _, seen := w.unregistered.LoadOrStore(name, struct{}{}); !seen {
		w.log.Debug("duro: orchestration calls an activity this worker does not register; "+
			"the worker that runs it applies its own registration's guarantee", "activity", name)
	}
}

// executeEntity runs an entity's batch, turning a panic into an error.
func (w *Worker) executeEntity(ctx context.Context, wi *backend.OrchestrationWorkItem, log *slog.Logger) (params *backend.CompleteOrchestrationStepParams, err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("duro: entity batch panicked in the engine", "panic", r, "stack", string(debug.Stack()))
			params, err = nil, fmt.Errorf("engine panic: %v", r)
		}
	}()
	return w.runEntityBatch(ctx, wi, log)
}

// execute runs the step, turning a panic inside the engine into an error.
// log returns the step's logger. With the sticky cache on, the step
// continues the instance's cached executor when it can, and returns the
// executor it leaves (nil if none), for runStep to keep once the step
// commits.
func (w *Worker) execute(wi *backend.OrchestrationWorkItem, log func() *slog.Logger) (params *backend.CompleteOrchestrationStepParams, ex *replay.Executor, err error) {
	defer func() {
		if r := recover(); r != nil {
			log().Error("duro: orchestration step panicked in the engine", "panic", r, "stack", string(debug.Stack()))
			params, ex, err = nil, nil, fmt.Errorf("engine panic: %v", r)
		}
	}()
	p := &replay.Params{
		WorkItem: wi, Lookup: w.lookupFn, Now: w.now(), Logger: w.log, FailureFromError: w.failureFn,
	}
	if w.sticky == nil {
		params, err = replay.Execute(p)
		return params, nil, err
	}
	params, ex, how, err := replay.ExecuteSticky(p, w.sticky.take(wi.Instance.ID))
	switch how {
	case replay.StickyHit:
		w.stats.stickyHits.Add(1)
	case replay.StickyStale:
		w.stats.stickyStale.Add(1)
		w.stats.stickyMisses.Add(1)
	default:
		w.stats.stickyMisses.Add(1)
	}
	return params, ex, err
}

// notRegistered names the code this worker lacks to run the instance's
// steps ("" if it has it), which is why they were handed back until the
// instance was poisoned.
func (w *Worker) notRegistered(inst *backend.Instance) string {
	if name := replay.EntityName(inst.ID); name != "" {
		if _, ok := w.reg.entity(name); !ok {
			return fmt.Sprintf("entity not registered: %q", name)
		}
		return ""
	}
	if _, ok := w.lookupFn(inst.Name); !ok {
		return fmt.Sprintf("%v: %q", replay.ErrNotRegistered, inst.Name)
	}
	return ""
}

// abandonStep hands a step back, to be claimed again after retryAfter (by
// the store's clock, not this worker's).
func (w *Worker) abandonStep(wi *backend.OrchestrationWorkItem, retryAfter time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.be.AbandonOrchestrationStep(ctx, &backend.AbandonParams{ID: wi.Instance.ID, ExecutionID: wi.Instance.ExecutionID, Attempt: wi.Attempt, RetryAfter: retryAfter}); err != nil {
		w.log.Warn("duro: abandon orchestration step", "instance", wi.Instance.ID, "err", err)
	}
}

// isPermanent reports errors that retrying a commit cannot fix.
func isPermanent(err error) bool {
	return errors.Is(err, backend.ErrLeaseLost) || errors.Is(err, backend.ErrClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
