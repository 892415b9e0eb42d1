package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/durohq/duro/backend"
)

// Backend returns be wrapped so that the claims made through it are
// counted (duro_work_items_claimed_total, duro_step_redeliveries_total) and
// their latency observed (duro_claim_latency_seconds). Give the wrapped
// backend to the workers, and the plain one to clients. The wrapper keeps
// be's WorkNotifier and BatchClaimer capabilities, and is always a
// backend.StepActivityClaimer: it counts the activities a step's commit
// claims, and claims none when be cannot; and a backend.ActivityStepClaimer
// likewise for the steps an activity's completion claims. It forwards
// backend.RequestWindow.
func (m *Metrics) Backend(be backend.Backend) backend.Backend {
	mb := &meteredBackend{Backend: be, m: m}
	n, notifies := be.(backend.WorkNotifier)
	bc, batches := be.(backend.BatchClaimer)
	switch {
	case notifies && batches:
		return &meteredBoth{meteredBatch: &meteredBatch{meteredBackend: mb, bc: bc}, WorkNotifier: n}
	case notifies:
		return &meteredNotify{meteredBackend: mb, WorkNotifier: n}
	case batches:
		return &meteredBatch{meteredBackend: mb, bc: bc}
	}
	return mb
}

type meteredBackend struct {
	backend.Backend
	m *Metrics
}

type meteredNotify struct {
	*meteredBackend
	backend.WorkNotifier
}

type meteredBatch struct {
	*meteredBackend
	bc backend.BatchClaimer
}

type meteredBoth struct {
	*meteredBatch
	backend.WorkNotifier
}

// The wrappers keep a KindNotifier's separate wake-ups; for a plain
// WorkNotifier both are its WorkAvailable.

func kindWake(n backend.WorkNotifier) (orch, act func() <-chan struct{}) {
	if k, ok := n.(backend.KindNotifier); ok {
		return k.OrchestrationWorkAvailable, k.ActivityWorkAvailable
	}
	return n.WorkAvailable, n.WorkAvailable
}

func (b *meteredNotify) OrchestrationWorkAvailable() <-chan struct{} {
	o, _ := kindWake(b.WorkNotifier)
	return o()
}

func (b *meteredNotify) ActivityWorkAvailable() <-chan struct{} {
	_, a := kindWake(b.WorkNotifier)
	return a()
}

func (b *meteredBoth) OrchestrationWorkAvailable() <-chan struct{} {
	o, _ := kindWake(b.WorkNotifier)
	return o()
}

func (b *meteredBoth) ActivityWorkAvailable() <-chan struct{} {
	_, a := kindWake(b.WorkNotifier)
	return a()
}

var (
	_ backend.WorkNotifier = (*meteredBoth)(nil)
	_ backend.BatchClaimer = (*meteredBoth)(nil)
	_ backend.WorkNotifier = (*meteredNotify)(nil)
	_ backend.KindNotifier = (*meteredNotify)(nil)
	_ backend.KindNotifier = (*meteredBoth)(nil)
	_ backend.BatchClaimer = (*meteredBatch)(nil)
)

func (b *meteredBackend) ClaimOrchestrationStep(ctx context.Context, p *backend.ClaimParams) (*backend.OrchestrationWorkItem, error) {
	wi, err := b.Backend.ClaimOrchestrationStep(ctx, p)
	if wi != nil {
		b.m.observeStep(wi, claimTime(p))
	}
	return wi, err
}

func (b *meteredBackend) ClaimActivity(ctx context.Context, p *backend.ClaimParams) (*backend.ActivityWorkItem, error) {
	wi, err := b.Backend.ClaimActivity(ctx, p)
	if wi != nil {
		b.m.observeActivity(wi, claimTime(p))
	}
	return wi, err
}

func (b *meteredBatch) ClaimOrchestrationSteps(ctx context.Context, p *backend.ClaimParams, max int) ([]*backend.OrchestrationWorkItem, error) {
	wis, err := b.bc.ClaimOrchestrationSteps(ctx, p, max)
	now := claimTime(p)
	for _, wi := range wis {
		b.m.observeStep(wi, now)
	}
	return wis, err
}

func (b *meteredBatch) ClaimActivities(ctx context.Context, p *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	wis, err := b.bc.ClaimActivities(ctx, p, max)
	now := claimTime(p)
	for _, wi := range wis {
		b.m.observeActivity(wi, now)
	}
	return wis, err
}

// CompleteOrchestrationStepClaim implements backend.StepActivityClaimer.
func (b *meteredBackend) CompleteOrchestrationStepClaim(ctx context.Context, p *backend.CompleteOrchestrationStepParams,
	claim *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	ec, ok := b.Backend.(backend.StepActivityClaimer)
	if !ok {
		return nil, b.Backend.CompleteOrchestrationStep(ctx, p)
	}
	wis, err := ec.CompleteOrchestrationStepClaim(ctx, p, claim, max)
	now := claimTime(claim)
	for _, wi := range wis {
		b.m.observeActivity(wi, now)
	}
	return wis, err
}

// CompleteActivityClaim implements backend.ActivityStepClaimer: it
// forwards to be, counting the step it claims like any claim, and claims
// nothing (CompleteActivity alone) when be cannot.
func (b *meteredBackend) CompleteActivityClaim(ctx context.Context, p *backend.CompleteActivityParams,
	claim *backend.ClaimParams) (*backend.OrchestrationWorkItem, error) {
	fc, ok := b.Backend.(backend.ActivityStepClaimer)
	if !ok {
		return nil, b.Backend.CompleteActivity(ctx, p)
	}
	wi, err := fc.CompleteActivityClaim(ctx, p, claim)
	if wi != nil {
		b.m.observeStep(wi, claimTime(claim))
	}
	return wi, err
}

// CompleteActivityStep implements backend.ActivityStepCommitter: it
// forwards to be, counting the step it claims and the activities the
// committed step claims like any claims; when be cannot, it is
// CompleteActivityClaim, committing no step.
func (b *meteredBackend) CompleteActivityStep(ctx context.Context, p *backend.CompleteActivityParams, claim *backend.ClaimParams,
	run func(wi *backend.OrchestrationWorkItem) *backend.StepCommit) (*backend.ActivityStep, error) {
	sc, ok := b.Backend.(backend.ActivityStepCommitter)
	if !ok {
		wi, err := b.CompleteActivityClaim(ctx, p, claim)
		if err != nil {
			return nil, err
		}
		return &backend.ActivityStep{Step: wi}, nil
	}
	metered, observe := b.meterFused(claim, run)
	out, err := sc.CompleteActivityStep(ctx, p, claim, metered)
	observe(out)
	return out, err
}

// CreateInstanceStep implements backend.StartStepCommitter: it forwards
// to be, counting the first step it claims and the activities the
// committed step claims like any claims; when be cannot, it is
// CreateInstance, claiming nothing.
func (b *meteredBackend) CreateInstanceStep(ctx context.Context, p *backend.CreateInstanceParams, claim *backend.ClaimParams,
	run func(wi *backend.OrchestrationWorkItem) *backend.StepCommit) (*backend.ActivityStep, error) {
	sc, ok := b.Backend.(backend.StartStepCommitter)
	if !ok {
		if err := b.Backend.CreateInstance(ctx, p); err != nil {
			return nil, err
		}
		return &backend.ActivityStep{}, nil
	}
	metered, observe := b.meterFused(claim, run)
	out, err := sc.CreateInstanceStep(ctx, p, claim, metered)
	observe(out)
	return out, err
}

// meterFused wraps the run of a fused transaction (CompleteActivityStep,
// CreateInstanceStep) to see the eager claim the step asks for, and
// returns with it the function that counts what the transaction claimed:
// its step, and the activities its committed step claimed.
func (b *meteredBackend) meterFused(claim *backend.ClaimParams, run func(wi *backend.OrchestrationWorkItem) *backend.StepCommit) (
	metered func(wi *backend.OrchestrationWorkItem) *backend.StepCommit, observe func(out *backend.ActivityStep)) {
	var eager *backend.ClaimParams
	metered = func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
		c := run(wi)
		if c != nil {
			eager = c.ActivityClaim
		}
		return c
	}
	observe = func(out *backend.ActivityStep) {
		if out == nil || out.Step == nil {
			return
		}
		b.m.observeStep(out.Step, claimTime(claim))
		if out.Committed && eager != nil {
			now := claimTime(eager)
			for _, wi := range out.Activities {
				b.m.observeActivity(wi, now)
			}
		}
	}
	return metered, observe
}

// ProcessedRequests implements backend.RequestWindow: it forwards to be,
// and returns errors.ErrUnsupported when be keeps no window (entities then
// keep theirs in their custom status).
func (b *meteredBackend) ProcessedRequests(ctx context.Context, instanceID string, ids []string) ([]backend.ProcessedRequest, error) {
	if rw, ok := b.Backend.(backend.RequestWindow); ok {
		return rw.ProcessedRequests(ctx, instanceID, ids)
	}
	return nil, fmt.Errorf("server: the wrapped backend keeps no request window: %w", errors.ErrUnsupported)
}

// errNotForwarded is what a forwarded capability returns when the wrapped
// backend lacks it.
func errNotForwarded(what string) error {
	return fmt.Errorf("server: the wrapped backend has no %s: %w", what, errors.ErrUnsupported)
}

// InFlight implements backend.InFlightReader: it forwards to be, and
// returns errors.ErrUnsupported when be cannot.
func (b *meteredBackend) InFlight(ctx context.Context, instanceID string) (*backend.InFlight, error) {
	if r, ok := b.Backend.(backend.InFlightReader); ok {
		return r.InFlight(ctx, instanceID)
	}
	return nil, errNotForwarded("in-flight view")
}

// ClaimInstanceStep implements backend.InstanceClaimer: it forwards to be,
// and claims nothing when be cannot. The claim is counted like the others.
func (b *meteredBackend) ClaimInstanceStep(ctx context.Context, instanceID string, p *backend.ClaimParams) (*backend.OrchestrationWorkItem, error) {
	ic, ok := b.Backend.(backend.InstanceClaimer)
	if !ok {
		return nil, nil
	}
	wi, err := ic.ClaimInstanceStep(ctx, instanceID, p)
	if wi != nil {
		b.m.observeStep(wi, claimTime(p))
	}
	return wi, err
}

// UpsertWorker implements backend.WorkerRegistry: it forwards to be, and
// returns errors.ErrUnsupported when be keeps no heartbeats (workers then
// record none).
func (b *meteredBackend) UpsertWorker(ctx context.Context, p *backend.UpsertWorkerParams) error {
	if r, ok := b.Backend.(backend.WorkerRegistry); ok {
		return r.UpsertWorker(ctx, p)
	}
	return errNotForwarded("worker registry")
}

// ListWorkers implements backend.WorkerRegistry: it forwards to be.
func (b *meteredBackend) ListWorkers(ctx context.Context, p *backend.ListWorkersParams) (*backend.WorkerList, error) {
	if r, ok := b.Backend.(backend.WorkerRegistry); ok {
		return r.ListWorkers(ctx, p)
	}
	return nil, errNotForwarded("worker registry")
}

// PruneWorkers implements backend.WorkerRegistry: it forwards to be.
func (b *meteredBackend) PruneWorkers(ctx context.Context, p *backend.PruneWorkersParams) (int, error) {
	if r, ok := b.Backend.(backend.WorkerRegistry); ok {
		return r.PruneWorkers(ctx, p)
	}
	return 0, errNotForwarded("worker registry")
}

// WatchFinish implements backend.FinishNotifier: it forwards to be, and
// returns backend.NoFinishWatch (the waiter polls) when be cannot watch.
func (b *meteredBackend) WatchFinish(id string) (<-chan struct{}, func()) {
	return backend.WatchFinish(b.Backend, id)
}

var (
	_ backend.FinishNotifier        = (*meteredBackend)(nil)
	_ backend.StepActivityClaimer   = (*meteredBackend)(nil)
	_ backend.ActivityStepClaimer   = (*meteredBackend)(nil)
	_ backend.ActivityStepCommitter = (*meteredBackend)(nil)
	_ backend.StartStepCommitter    = (*meteredBackend)(nil)
	_ backend.RequestWindow         = (*meteredBackend)(nil)
	_ backend.InFlightReader        = (*meteredBackend)(nil)
	_ backend.InstanceClaimer       = (*meteredBackend)(nil)
	_ backend.WorkerRegistry        = (*meteredBackend)(nil)
)

func claimTime(p *backend.ClaimParams) time.Time {
	if p != nil && !p.Now.IsZero() {
		return p.Now
	}
	return time.Now()
}

// observeStep counts a claimed step and, on its first delivery, the time
// its oldest message waited.
func (m *Metrics) observeStep(wi *backend.OrchestrationWorkItem, now time.Time) {
	m.claimed.WithLabelValues(KindOrchestration).Inc()
	if wi.Deliveries > 1 {
		m.stepRedeliv.Inc()
		return
	}
	var oldest time.Time
	for _, msg := range wi.Messages {
		at := msg.VisibleAt
		if at.IsZero() && msg.Event != nil {
			at = msg.Event.Timestamp
			if msg.Event.Type == backend.EventTimerFired && !msg.Event.FireAt.IsZero() {
				at = msg.Event.FireAt
			}
		}
		if !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	if !oldest.IsZero() && !oldest.After(now) {
		m.claimLatency.WithLabelValues(KindOrchestration).Observe(now.Sub(oldest).Seconds())
	}
}

// observeActivity counts a claimed activity delivery and, on the first
// delivery of its task, the time since it was scheduled.
func (m *Metrics) observeActivity(wi *backend.ActivityWorkItem, now time.Time) {
	m.claimed.WithLabelValues(KindActivity).Inc()
	first := wi.PreviousDeliveryAt.IsZero() || wi.ScheduledAt.After(wi.PreviousDeliveryAt)
	if first && !wi.ScheduledAt.IsZero() && !wi.ScheduledAt.After(now) {
		m.claimLatency.WithLabelValues(KindActivity).Observe(now.Sub(wi.ScheduledAt).Seconds())
	}
}
