package duro

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/google/uuid"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/replay"
)

// entityEnvelope is an entity's persisted state, kept in its instance's
// custom status and replaced, atomically, by every batch: the user's state,
// the lock of a critical section and the requests waiting for it (at most
// WorkerOptions.EntityQueueLimit). The window of request IDs already
// processed is kept by the backend as rows of their own
// (backend.RequestWindow), written in the same commit, so that a batch
// writes the IDs it adds rather than the whole window; only with a backend
// without that capability does the envelope carry it.
type entityEnvelope struct {
	State  []byte `json:"state,omitempty"`
	Exists bool   `json:"exists"`
	// Window holds the IDs of processed requests, oldest first, bounded by
	// count and age, for a backend without backend.RequestWindow (and in
	// envelopes written before the window moved to the backend: the next
	// batch moves it there).
	Window []seenRequest `json:"window,omitempty"`
	// Latest is when the newest ID of the backend's window was processed.
	Latest time.Time `json:"latest,omitzero"`
	// Lock is the critical section holding the entity.
	Lock *entityLock `json:"lock,omitempty"`
	// Queue holds requests that arrived while another owner held the lock.
	Queue []*backend.Message `json:"queue,omitempty"`
	// Released holds lock requests released before they reached the entity,
	// so that they are ignored when they arrive.
	Released []seenRequest `json:"released,omitempty"`
	// Pending is the request of an at-most-once operation that waits for an
	// operator's decision while the entity is suspended.
	Pending *backend.Message `json:"pending,omitempty"`
	// Consumed counts messages consumed since the entity's execution began;
	// past a bound the entity continues as new to bound the backend's record
	// of consumed message IDs (the window keeps deduplicating).
	Consumed int `json:"consumed,omitempty"`
	// Rejected counts requests refused because the queue was full.
	Rejected int       `json:"rejected,omitempty"`
	Modified time.Time `json:"modified,omitzero"`
}

type seenRequest struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

type entityLock struct {
	Owner  string             `json:"owner"`
	Caller *backend.ParentRef `json:"caller"`
	Since  time.Time          `json:"since"`
}

func lockKey(ref *backend.ParentRef) string {
	if ref == nil {
		return ""
	}
	return backend.TaskMessageID(ref.InstanceID, ref.ExecutionID, ref.TaskID)
}

func decodeEnvelope(b []byte) (*entityEnvelope, error) {
	env := &entityEnvelope{}
	if len(b) == 0 {
		return env, nil
	}
	if err := json.Unmarshal(b, env); err != nil {
		return nil, fmt.Errorf("entity envelope: %w", err)
	}
	return env, nil
}

// An entity continues as new (which clears the store's record of the
// messages its execution consumed) once it has consumed as many messages as
// its dedup window holds, so that the window, which keeps the latest IDs,
// always covers what the cleared record covered: deduplication by count has
// no gap.

// entityStep runs one batch of an entity's requests.
type entityStep struct {
	w    *Worker
	ctx  context.Context
	wi   *backend.OrchestrationWorkItem
	id   EntityID
	reg  *registeredEntity
	env  *entityEnvelope
	now  time.Time
	out  *backend.CompleteOrchestrationStepParams
	log  *slog.Logger
	seen map[string]bool
	// remove is set by a clean request to an empty entity.
	remove bool
	// suspended is set when an at-most-once operation waits for a decision.
	suspended bool
	// rows is the backend's window of processed request IDs (nil: the
	// envelope holds it); added are the IDs this batch adds to it, and
	// latest is the envelope's Latest before the batch.
	rows   backend.RequestWindow
	added  []backend.ProcessedRequest
	latest time.Time
	// replaying is set while requests that waited in the queue are handled
	// again: they were accepted already, so the queue limit does not apply.
	replaying bool
	// resumes are the outcomes of the batch's resume requests.
	resumes []*backend.ResumeOutcome
	// started is set once the batch has marked itself started
	// (backend.Backend.StartOrchestrationStep), before its first
	// at-most-once operation runs; startErr is set if that failed, and
	// then the batch is handed back with nothing applied.
	started  bool
	startErr error
	// remote, for an entity whose code runs outside this process, collects
	// the operations the batch must run instead of running them.
	remote *remoteBatch
}

// start marks the batch started before an at-most-once operation runs, so
// that the batch's next delivery knows an earlier one may have run it.
// It reports whether the operation may run.
func (s *entityStep) start() bool {
	if s.started {
		return true
	}
	if s.startErr != nil {
		return false
	}
	err := s.w.be.StartOrchestrationStep(s.ctx, &backend.StartParams{
		ID: s.wi.Instance.ID, ExecutionID: s.wi.Instance.ExecutionID, Attempt: s.wi.Attempt})
	if err != nil {
		s.startErr = fmt.Errorf("entity %s: mark the batch started before an at-most-once operation: %w", s.id, err)
		return false
	}
	s.started = true
	return true
}

// mayBeDuplicate reports whether an earlier delivery of the batch may have
// run its operations: for at-most-once operations, whether one marked
// itself started; for the others (which do not mark), whether there was
// an earlier delivery since the last committed batch at all.
func (s *entityStep) mayBeDuplicate(op *entityOp) bool {
	if op.opts.Guarantee == AtMostOnce {
		return s.wi.StartedAttempt > 0
	}
	return s.wi.StartedAttempt > 0 || s.wi.Deliveries > 1
}

// control applies the control messages a suspended entity receives: a
// resume (with the decision for its pending request) or a terminate request
// (ignored: entities are removed with CleanEntities).
func (s *entityStep) control(wi *backend.OrchestrationWorkItem) {
	s.out.Status = backend.StatusSuspended
	s.out.Suspension = wi.Instance.Suspension
	for _, m := range wi.Messages {
		s.out.ConsumedMessageIDs = append(s.out.ConsumedMessageIDs, m.ID)
		if m.Event == nil || m.Event.Type != backend.EventExecutionResumed {
			continue
		}
		if s.out.Status != backend.StatusSuspended {
			s.resumes = append(s.resumes, replay.ResumeNotSuspended(m.ID, m.Event, s.now))
			continue
		}
		p := s.env.Pending
		if p == nil {
			s.out.Status, s.out.Suspension = backend.StatusRunning, nil
			s.resumes = append(s.resumes, replay.ResumeApplied(m.ID, m.Event, func(int) int { return 0 }, s.now))
			continue
		}
		var d *backend.Decision
		for _, x := range m.Event.Decisions {
			if x.TaskID == 0 {
				d = x
			}
		}
		if d == nil {
			s.log.Warn("duro: entity resume without a decision for its pending request; it stays suspended")
			s.resumes = append(s.resumes, replay.ResumeRefused(m.ID, m.Event,
				"task 0 (the pending operation) awaits one decision", map[int]bool{0: true}, s.now))
			continue
		}
		s.resumes = append(s.resumes, replay.ResumeApplied(m.ID, m.Event, func(int) int {
			if susp := wi.Instance.Suspension; susp != nil && len(susp.Pending) > 0 {
				return susp.Pending[0].Attempt + 1
			}
			return 0
		}, s.now))
		s.out.Status, s.out.Suspension, s.env.Pending = backend.StatusRunning, nil, nil
		req := p.Event.Entity
		if req == nil {
			req = &backend.EntityRequest{}
		}
		s.remember(p.ID)
		switch d.Action {
		case backend.DecisionRetry:
			if s.remote != nil {
				s.remote.add(p, p.Event, req)
				break
			}
			op := s.reg.ops[p.Event.Name]
			// The operator approved one more run: it is the attempt after the
			// delivery that found the possible duplicate.
			attempt := s.wi.Deliveries
			if susp := wi.Instance.Suspension; susp != nil && len(susp.Pending) > 0 {
				attempt = susp.Pending[0].Attempt + 1
			}
			ctx := &entityContext{Context: s.ctx, id: s.id, op: p.Event.Name, attempt: attempt, p: s.w.p, reqID: p.ID,
				now: s.now, logger: s.log.With("operation", p.Event.Name), maybeDup: true}
			s.run(p, p.Event, req, op, ctx, func(f *backend.Failure) {
				s.respond(req.Caller, &backend.Event{Type: backend.EventEntityResponse, TaskID: taskIDOf(req.Caller), Failure: f, Timestamp: s.now})
			})
		case backend.DecisionResult:
			s.respond(req.Caller, &backend.Event{Type: backend.EventEntityResponse, TaskID: taskIDOf(req.Caller), Result: d.Result, Timestamp: s.now})
		default:
			s.respond(req.Caller, &backend.Event{Type: backend.EventEntityResponse, TaskID: taskIDOf(req.Caller), Timestamp: s.now,
				Failure: &backend.Failure{Message: d.Message, Type: "OperatorFailed", TaskName: p.Event.Name, NonRetryable: true}})
		}
		if s.env.Lock == nil {
			// Requests that waited behind the decision, in order.
			s.replayQueue()
		}
	}
}

// suspendFor suspends the entity with m waiting for an operator's decision.
func (s *entityStep) suspendFor(m *backend.Message, attempt int) {
	s.w.stats.duplicatesSuspended.Add(1)
	s.suspended = true
	s.env.Pending = m
	s.out.Status = backend.StatusSuspended
	s.out.Suspension = &backend.Suspension{
		Reason: fmt.Sprintf("possible duplicate: operation %q of entity %s in a batch delivered %d times", m.Event.Name, s.id, attempt),
		Since:  s.now,
		Pending: []*backend.PendingDecision{{TaskID: 0, Name: m.Event.Name, Input: m.Event.Input, Attempt: attempt,
			PreviousDeliveryAt: s.wi.Instance.UpdatedAt, Options: backend.ActivityOptions{AtMostOnce: true, OnDuplicate: string(OnDuplicateSuspend)}}},
	}
}

// runEntityBatch computes the effects of one batch of an entity.
func (w *Worker) runEntityBatch(ctx context.Context, wi *backend.OrchestrationWorkItem, log *slog.Logger) (*backend.CompleteOrchestrationStepParams, error) {
	id, err := ParseEntityID(wi.Instance.ID)
	if err != nil {
		return nil, err
	}
	reg, ok := w.reg.entity(id.Name)
	if !ok {
		return nil, fmt.Errorf("entity %q: %w", id.Name, ErrNotRegistered)
	}
	s, err := w.newEntityStep(ctx, wi, id, reg, log)
	if err != nil {
		return nil, err
	}
	if err := s.process(); err != nil {
		return nil, err
	}
	return s.finalize()
}

// newEntityStep loads the batch's envelope and window of processed
// requests. reg is nil for an entity whose code runs remotely.
func (w *Worker) newEntityStep(ctx context.Context, wi *backend.OrchestrationWorkItem, id EntityID, reg *registeredEntity, log *slog.Logger) (*entityStep, error) {
	inst := wi.Instance
	env, err := decodeEnvelope(inst.CustomStatus)
	if err != nil {
		return nil, err
	}
	now := w.now().UTC()
	s := &entityStep{w: w, ctx: ctx, wi: wi, id: id, reg: reg, env: env, now: now, log: log, seen: map[string]bool{}}
	s.out = &backend.CompleteOrchestrationStepParams{
		InstanceID: inst.ID, ExecutionID: inst.ExecutionID, Attempt: wi.Attempt,
		Status: backend.StatusRunning, Now: now,
	}
	s.pruneWindow()
	for _, r := range env.Window {
		s.seen[r.ID] = true
	}
	if rw, ok := w.be.(backend.RequestWindow); ok {
		s.rows = rw
		if err := s.loadWindow(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// process handles the batch's messages in order.
func (s *entityStep) process() error {
	wi, env, now := s.wi, s.env, s.now
	if wi.Instance.Status == backend.StatusSuspended {
		// Only control messages reach a suspended entity.
		s.control(wi)
	} else {
		for _, m := range wi.Messages {
			if s.suspended {
				break // the rest waits for the decision
			}
			s.out.ConsumedMessageIDs = append(s.out.ConsumedMessageIDs, m.ID)
			env.Consumed++
			if m.Event != nil && m.Event.Type == backend.EventEntityRequest {
				s.handle(m)
			}
			if m.Event != nil && m.Event.Type == backend.EventExecutionResumed {
				s.resumes = append(s.resumes, replay.ResumeNotSuspended(m.ID, m.Event, now))
			}
		}
	}
	return s.startErr
}

// finalize decides the entity's status and returns the batch's effects.
func (s *entityStep) finalize() (*backend.CompleteOrchestrationStepParams, error) {
	inst, env, now := s.wi.Instance, s.env, s.now
	env.Modified = now
	s.out.ResumeOutcomes = replay.KeepResumeOutcomes(inst.ResumeOutcomes, s.resumes)
	if s.out.Status == backend.StatusSuspended {
		// Nothing else changes while a decision is pending.
	} else if s.remove && !env.Exists && env.Lock == nil && len(env.Queue) == 0 && s.windowEmpty() {
		s.out.Status = backend.StatusCompleted
	} else if env.Consumed > s.w.opts.EntityDedupWindow {
		env.Consumed = 0
		s.out.ContinueAsNew = &backend.ContinueAsNew{NewExecutionID: uuid.NewString()}
	}
	if s.rows != nil {
		s.out.Window = &backend.WindowUpdate{Add: s.added, Keep: s.w.opts.EntityDedupWindow,
			Before: now.Add(-s.w.opts.EntityDedupAge)}
	}
	var err error
	if s.out.CustomStatus, err = json.Marshal(env); err != nil {
		return nil, err
	}
	return s.out, nil
}

// pruneWindow forgets processed IDs beyond the window's count and age.
func (s *entityStep) pruneWindow() {
	maxN, maxAge := s.w.opts.EntityDedupWindow, s.w.opts.EntityDedupAge
	prune := func(list []seenRequest) []seenRequest {
		i := 0
		for i < len(list) && (len(list)-i > maxN || s.now.Sub(list[i].At) > maxAge) {
			i++
		}
		return list[i:]
	}
	s.env.Window = prune(s.env.Window)
	s.env.Released = prune(s.env.Released)
}

// loadWindow reads, from the backend's window, which of the requests the
// batch may handle were processed already (within the window's age). An
// envelope that still carries a window (written by an earlier build) hands
// it over: its entries are added to the backend's window by this batch.
func (s *entityStep) loadWindow() error {
	env := s.env
	var ids []string
	add := func(m *backend.Message) {
		if m != nil && m.Event != nil && m.Event.Type == backend.EventEntityRequest {
			ids = append(ids, m.ID)
		}
	}
	add(env.Pending)
	for _, list := range [][]*backend.Message{s.wi.Messages, env.Queue} {
		for _, m := range list {
			add(m)
		}
	}
	seen, err := s.rows.ProcessedRequests(s.ctx, s.wi.Instance.ID, ids)
	if errors.Is(err, errors.ErrUnsupported) {
		// A wrapper whose backend keeps no window: the envelope keeps it.
		s.rows = nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("entity %s: read the window of processed requests: %w", s.id, err)
	}
	for _, r := range env.Window {
		s.added = append(s.added, backend.ProcessedRequest{ID: r.ID, At: r.At})
		if r.At.After(env.Latest) {
			env.Latest = r.At
		}
	}
	env.Window = nil
	s.latest = env.Latest
	for _, r := range seen {
		if s.now.Sub(r.At) <= s.w.opts.EntityDedupAge {
			s.seen[r.ID] = true
		}
	}
	return nil
}

// windowEmpty reports whether the window holds no processed request but
// (at most) the one this batch is removing the entity for.
func (s *entityStep) windowEmpty() bool {
	if s.rows == nil {
		return len(s.env.Window) <= 1
	}
	return len(s.added) <= 1 && (s.latest.IsZero() || s.now.Sub(s.latest) > s.w.opts.EntityDedupAge)
}

func (s *entityStep) remember(id string) {
	s.seen[id] = true
	if s.rows != nil {
		s.added = append(s.added, backend.ProcessedRequest{ID: id, At: s.now})
		s.env.Latest = s.now
		return
	}
	s.env.Window = append(s.env.Window, seenRequest{ID: id, At: s.now})
	if over := len(s.env.Window) - s.w.opts.EntityDedupWindow; over > 0 {
		s.env.Window = s.env.Window[over:]
	}
}

// replayQueue handles again, in order, the requests that waited in the
// queue.
func (s *entityStep) replayQueue() {
	queue := s.env.Queue
	s.env.Queue = nil
	was := s.replaying
	s.replaying = true
	for _, q := range queue {
		s.handle(q)
	}
	s.replaying = was
}

// enqueue makes a request wait for the lock, or refuses it when
// EntityQueueLimit requests already wait. A refused call or lock request
// gets an EntityQueueFull failure (and is remembered, like any answered
// request); a refused signal is dropped and logged, and not remembered,
// so that a retry with its ID may get in later.
func (s *entityStep) enqueue(m *backend.Message, req *backend.EntityRequest) {
	limit := s.w.opts.EntityQueueLimit
	if s.replaying || len(s.env.Queue) < limit {
		s.env.Queue = append(s.env.Queue, m)
		return
	}
	s.w.stats.entityRequestsRejected.Add(1)
	s.env.Rejected++
	qerr := &EntityQueueFullError{Entity: s.id.String(), LockedBy: s.env.Lock.Owner, Limit: limit}
	if req.Caller == nil {
		s.log.Error("duro: entity queue full; the signal is dropped", "operation", m.Event.Name, "request", m.ID,
			"locked_by", qerr.LockedBy, "limit", limit)
		return
	}
	s.remember(m.ID)
	name := m.Event.Name
	if len(req.Lock) > 0 {
		name = "lock"
	}
	f := engineFailure(FailureTypeEntityQueueFull, name, qerr)
	if len(req.Lock) == 0 {
		s.respond(req.Caller, &backend.Event{Type: backend.EventEntityResponse, TaskID: req.Caller.TaskID, Failure: f, Timestamp: s.now})
		return
	}
	// A lock request visits the entities in order: those before this one
	// hold their lock for it, and release it.
	self := s.id.String()
	for _, e := range req.Lock {
		if e == self {
			break
		}
		s.out.Messages = append(s.out.Messages, &backend.Message{
			ID: lockKey(req.Caller) + "/refused/" + e, InstanceID: e,
			Event: &backend.Event{Type: backend.EventEntityRequest, Timestamp: s.now,
				Entity: &backend.EntityRequest{Owner: req.Owner, Caller: req.Caller, Release: true, Lock: req.Lock}},
		})
	}
	s.respond(req.Caller, &backend.Event{Type: backend.EventEntityLockGranted, TaskID: req.Caller.TaskID, Failure: f, Timestamp: s.now})
}

// handle applies one request: deduplicated, deferred while another owner
// holds the lock, or processed.
func (s *entityStep) handle(m *backend.Message) {
	ev := m.Event
	req := ev.Entity
	if req == nil {
		req = &backend.EntityRequest{}
	}
	if s.seen[m.ID] {
		s.log.Debug("duro: entity request already processed; dropped", "request", m.ID)
		return
	}
	if s.suspended {
		s.env.Queue = append(s.env.Queue, m) // after the decision
		return
	}
	switch {
	case req.Release:
		s.release(m, req)
		return
	case s.env.Lock != nil && req.Owner != s.env.Lock.Owner:
		s.enqueue(m, req)
		return
	case len(req.Lock) > 0:
		s.lock(m, req)
		return
	}
	s.remember(m.ID)
	s.operate(m, ev, req)
}

func (s *entityStep) lock(m *backend.Message, req *backend.EntityRequest) {
	for _, r := range s.env.Released {
		if r.ID == lockKey(req.Caller) {
			s.remember(m.ID)
			return // released before it got here
		}
	}
	s.remember(m.ID)
	s.env.Lock = &entityLock{Owner: req.Owner, Caller: req.Caller, Since: s.now}
	self := s.id.String()
	next := ""
	for i, e := range req.Lock {
		if e == self && i+1 < len(req.Lock) {
			next = req.Lock[i+1]
		}
	}
	if next != "" {
		s.out.StartInstances = append(s.out.StartInstances, replay.EntityCreation(next))
		s.out.Messages = append(s.out.Messages, &backend.Message{
			ID: lockKey(req.Caller) + "/lock/" + next, InstanceID: next,
			Event: &backend.Event{Type: backend.EventEntityRequest, Entity: req, Timestamp: s.now},
		})
		return
	}
	s.respond(req.Caller, &backend.Event{Type: backend.EventEntityLockGranted, TaskID: req.Caller.TaskID, Timestamp: s.now})
}

func (s *entityStep) release(m *backend.Message, req *backend.EntityRequest) {
	s.remember(m.ID)
	if l := s.env.Lock; l != nil && l.Owner == req.Owner && lockKey(l.Caller) == lockKey(req.Caller) {
		s.env.Lock = nil
		s.replayQueue()
		return
	}
	// Not held (yet): drop a queued request of that section and remember
	// the release for a request still on its way.
	kept := s.env.Queue[:0]
	for _, q := range s.env.Queue {
		if q.Event.Entity != nil && len(q.Event.Entity.Lock) > 0 && lockKey(q.Event.Entity.Caller) == lockKey(req.Caller) {
			continue
		}
		kept = append(kept, q)
	}
	s.env.Queue = kept
	s.env.Released = append(s.env.Released, seenRequest{ID: lockKey(req.Caller), At: s.now})
}

// respond sends an event to the orchestration task that waits for it.
func (s *entityStep) respond(caller *backend.ParentRef, ev *backend.Event) {
	if caller == nil {
		return
	}
	s.out.Messages = append(s.out.Messages, response(caller, ev))
}

// response is the message that carries ev to the task caller.
func response(caller *backend.ParentRef, ev *backend.Event) *backend.Message {
	return &backend.Message{
		ID:         backend.ResultMessageID(backend.TaskMessageID(caller.InstanceID, caller.ExecutionID, caller.TaskID)),
		InstanceID: caller.InstanceID, ExecutionID: caller.ExecutionID, Event: ev,
	}
}

// operate runs one operation and records its outcome.
func (s *entityStep) operate(m *backend.Message, ev *backend.Event, req *backend.EntityRequest) {
	fail := func(f *backend.Failure) {
		if req.Caller == nil {
			s.log.Warn("duro: entity operation failed; the signal is dropped", "operation", ev.Name, "request", m.ID, "err", f.Message)
			return
		}
		s.respond(req.Caller, &backend.Event{Type: backend.EventEntityResponse, TaskID: req.Caller.TaskID, Failure: f, Timestamp: s.now})
	}
	if ev.Name == cleanOperation {
		if !s.env.Exists && s.env.Lock == nil && len(s.env.Queue) == 0 && s.windowEmpty() {
			s.remove = true
		}
		return
	}
	if s.remote != nil {
		s.remote.add(m, ev, req)
		return
	}
	op := s.reg.ops[ev.Name]
	if op == nil {
		fail(&backend.Failure{Message: fmt.Sprintf("entity %q has no operation %q", s.id.Name, ev.Name),
			Type: "UnknownOperation", TaskName: ev.Name, NonRetryable: true})
		return
	}
	ctx := &entityContext{Context: s.ctx, id: s.id, op: ev.Name, attempt: s.wi.Deliveries, p: s.w.p, reqID: m.ID, now: s.now,
		logger: s.log.With("operation", ev.Name), maybeDup: s.mayBeDuplicate(op)}
	// An at-most-once operation is a possible duplicate when an earlier
	// delivery of this batch marked itself started: a batch handed back
	// unstarted (by a worker without the entity, or one that stopped) or
	// lost before it started does not count.
	if op.opts.Guarantee == AtMostOnce && ctx.maybeDup {
		dup := &PossibleDuplicateError{Attempt: ctx.attempt, PreviousDeliveryAt: s.wi.Instance.UpdatedAt}
		switch op.opts.OnDuplicate {
		case OnDuplicateSuspend:
			s.suspendFor(m, ctx.attempt)
			return
		case OnDuplicateReconcile:
			if op.opts.Reconcile != nil {
				s.w.stats.duplicatesReconciled.Add(1)
				s.reconcile(m, ev, req, op, ctx, fail)
				return
			}
		}
		s.w.stats.duplicatesFailed.Add(1)
		fail(engineFailure(FailureTypePossibleDuplicate, ev.Name, dup))
		return
	}
	s.run(m, ev, req, op, ctx, fail)
}

func (s *entityStep) reconcile(m *backend.Message, ev *backend.Event, req *backend.EntityRequest, op *entityOp, ctx *entityContext, fail func(*backend.Failure)) {
	if s.leaseLost() {
		return
	}
	actx := &activityContext{Context: s.ctx, instanceID: s.id.String(), taskID: -1, name: ev.Name, attempt: ctx.attempt,
		previous: s.wi.Instance.UpdatedAt, logger: ctx.logger, p: s.w.p, heartbeat: func([]byte) error { return nil },
		maybeDup: true}
	d, err := func() (d ReconcileDecision, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("reconciler panicked: %v", r)
			}
		}()
		return op.opts.Reconcile(actx, &Payload{raw: ev.Input, p: s.w.p})
	}()
	switch {
	case err != nil:
		fail(&backend.Failure{Message: "reconcile: " + err.Error(), Type: FailureTypeReconciled, TaskName: ev.Name, NonRetryable: true})
	case d.kind == decideRetry:
		s.run(m, ev, req, op, ctx, fail)
	case d.kind == decideResult:
		b, err := s.w.p.encode("reconciled result", d.result)
		if err != nil {
			fail(failureFromError(s.w.p.codec, err))
			return
		}
		s.respond(req.Caller, &backend.Event{Type: backend.EventEntityResponse, TaskID: taskIDOf(req.Caller), Result: b, Timestamp: s.now})
	default:
		fail(&backend.Failure{Message: d.message, Type: FailureTypeReconciled, TaskName: ev.Name, NonRetryable: true})
	}
}

func taskIDOf(ref *backend.ParentRef) int {
	if ref == nil {
		return 0
	}
	return ref.TaskID
}

// run calls the operation; on success its state and messages are kept, on
// failure discarded.
func (s *entityStep) run(m *backend.Message, ev *backend.Event, req *backend.EntityRequest, op *entityOp, ctx *entityContext, fail func(*backend.Failure)) {
	if s.leaseLost() {
		return
	}
	if op.opts.Guarantee == AtMostOnce && !s.start() {
		return // the batch is handed back
	}
	state, exists, result, err := func() (state []byte, exists bool, result any, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = &panicError{value: r, stack: string(debug.Stack())}
			}
		}()
		var in []byte
		if s.env.Exists {
			in = s.env.State
		}
		return op.fn(ctx, s.w.p, in, ev.Input)
	}()
	if err != nil {
		f := failureFromError(s.w.p.codec, err)
		if pe, ok := err.(*panicError); ok {
			f = &backend.Failure{Message: fmt.Sprintf("panic: %v", pe.value), Type: "Panic", Stack: pe.stack}
		}
		f.TaskName = ev.Name
		fail(f)
		return
	}
	var res []byte
	if result != nil && !isNil(result) {
		if res, err = s.w.p.encodeAs(func() string { return fmt.Sprintf("result of operation %q", ev.Name) }, result); err != nil {
			fail(failureFromError(s.w.p.codec, err))
			return
		}
	}
	s.env.State, s.env.Exists = state, exists
	for i, sig := range ctx.signals {
		target := sig.id.String()
		s.out.StartInstances = append(s.out.StartInstances, replay.EntityCreation(target))
		s.out.Messages = append(s.out.Messages, &backend.Message{
			ID: fmt.Sprintf("sig/%s/%s/%d", s.id, m.ID, i), InstanceID: target,
			Event: &backend.Event{Type: backend.EventEntityRequest, Name: sig.op, Input: sig.input,
				Entity: &backend.EntityRequest{}, Timestamp: s.now},
		})
	}
	for _, st := range ctx.starts {
		s.out.StartInstances = append(s.out.StartInstances, &backend.CreateInstanceParams{
			ID: st.id, Name: st.name, Input: st.input, Now: s.now,
			ExecutionID: uuid.NewSHA1(uuid.NameSpaceOID, []byte("start/"+st.id+"/"+m.ID)).String(),
		})
	}
	s.respond(req.Caller, &backend.Event{Type: backend.EventEntityResponse, TaskID: taskIDOf(req.Caller), Result: res, Timestamp: s.now})
}

type panicError struct {
	value any
	stack string
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }
