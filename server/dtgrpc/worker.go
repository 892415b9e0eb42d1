package dtgrpc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/remoteentity"
	"github.com/durohq/duro/internal/replay"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

// The worker side: GetWorkItems streams the store's orchestration steps
// and activity deliveries to an SDK, and the SDK's completions commit
// them. The SDK never renews a lease, so the server renews those of the
// items it handed out while their stream lives, and releases them when
// the stream ends.

type itemKind byte

const (
	kindStep     itemKind = 'o'
	kindActivity itemKind = 'a'
	kindEntity   itemKind = 'e'
)

// item is a work item handed out on a stream.
type item struct {
	token string
	kind  itemKind
	ws    *workStream
	// for steps
	wi   *backend.OrchestrationWorkItem
	step *replay.RemoteStep
	// for entity batches (wi too)
	batch remoteentity.Batch
	// for activities
	awi *backend.ActivityWorkItem
	// enforced are the options the delivery enforced, when they differ
	// from the scheduled ones (a server policy made it at most once).
	enforced *backend.ActivityOptions
	// sent is set once the item was handed to the stream.
	sent bool
	// reconcile is set on a delivery whose request asks the SDK to run
	// the task's reconcile activity (see reconcile.go).
	reconcile bool
}

// onInstance reports whether the item is an instance's step (an
// orchestration step or an entity batch).
func (it *item) onInstance() bool { return it.kind == kindStep || it.kind == kindEntity }

func (it *item) id() string {
	if it.onInstance() {
		return it.wi.Instance.ID
	}
	return it.awi.Task.ID
}

func (it *item) attempt() int64 {
	if it.onInstance() {
		return it.wi.Attempt
	}
	return int64(it.awi.Attempt)
}

// newToken makes a completion token. It names the delivery it fences
// (kind, ID, attempt) so that an activity's result can still be offered
// to the store after its stream ended; the store's fencing decides.
func newToken(kind itemKind, id string, attempt int64) string {
	var nonce [9]byte
	_, _ = rand.Read(nonce[:])
	raw := string(kind) + "|" + strconv.FormatInt(attempt, 10) + "|" + base64.RawURLEncoding.EncodeToString(nonce[:]) + "|" + id
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func parseToken(tok string) (kind itemKind, id string, attempt int64, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, "", 0, false
	}
	parts := strings.SplitN(string(b), "|", 4)
	if len(parts) != 4 || len(parts[0]) != 1 {
		return 0, "", 0, false
	}
	n, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || n < 1 {
		return 0, "", 0, false
	}
	return itemKind(parts[0][0]), parts[3], n, true
}

// workStream is one SDK's GetWorkItems stream.
type workStream struct {
	s         *Server
	owner     string
	maxSteps  int
	maxActs   int
	orchNames map[string]bool // nil: all
	actNames  []string        // nil: all
	maxEnts   int
	entNames  map[string]bool // nil: all
	// freed is signalled when a completion frees a slot.
	freed chan struct{}
	// ctx and ss are the stream's; sendMu serializes its sends (the
	// stream's loop and a reconciled completion both send).
	ctx    context.Context
	ss     grpc.ServerStreamingServer[dtpb.WorkItem]
	sendMu sync.Mutex
}

// send sends a work item on the stream.
func (ws *workStream) send(wi *dtpb.WorkItem) error {
	ws.sendMu.Lock()
	defer ws.sendMu.Unlock()
	return ws.ss.Send(wi)
}

// GetWorkItems streams work items to an SDK worker until the worker goes
// away. The request's concurrency limits bound the items it holds at once
// (default 10 of each kind); its work item filters, if any, restrict the
// orchestrations and activities it gets.
func (s *Server) GetWorkItems(r *dtpb.GetWorkItemsRequest, ss grpc.ServerStreamingServer[dtpb.WorkItem]) error {
	ctx := ss.Context()
	host, _ := os.Hostname()
	s.mu.Lock()
	s.streams++
	n := s.streams
	s.mu.Unlock()
	ws := &workStream{s: s, owner: fmt.Sprintf("dtgrpc/%s/%d/%d", host, os.Getpid(), n),
		maxSteps: int(r.GetMaxConcurrentOrchestrationWorkItems()), maxActs: int(r.GetMaxConcurrentActivityWorkItems()),
		freed: make(chan struct{}, 1), ctx: ctx, ss: ss}
	if ws.maxSteps <= 0 {
		ws.maxSteps = 10
	}
	if ws.maxActs <= 0 {
		ws.maxActs = 10
	}
	ws.setEntityLimits(r)
	if f := r.GetWorkItemFilters(); f != nil {
		if len(f.GetOrchestrations()) > 0 {
			ws.orchNames = map[string]bool{}
			for _, o := range f.GetOrchestrations() {
				ws.orchNames[o.GetName()] = true
			}
		}
		if len(f.GetActivities()) > 0 {
			ws.actNames = []string{}
			for _, a := range f.GetActivities() {
				ws.actNames = append(ws.actNames, a.GetName())
			}
		}
	}
	s.log.Info("duro: Durable Task worker connected", "owner", ws.owner)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ws.renewLoop(ctx)
	}()
	defer func() {
		wg.Wait()
		ws.release()
		s.log.Info("duro: Durable Task worker disconnected; its work items released", "owner", ws.owner)
	}()
	return ws.run(ctx, ss)
}

func (ws *workStream) run(ctx context.Context, ss grpc.ServerStreamingServer[dtpb.WorkItem]) error {
	s := ws.s
	var wake func() <-chan struct{}
	if wn, ok := s.be.(backend.WorkNotifier); ok {
		wake = wn.WorkAvailable
	}
	claim := &backend.ClaimParams{Owner: ws.owner, LeaseDuration: s.opts.LeaseDuration, ActivityNames: ws.actNames}
	for {
		var woke <-chan struct{}
		if wake != nil {
			woke = wake()
		}
		progressed := false
		steps, acts := ws.held()
		// A claim may return a step or an entity batch: claim only when
		// there is room for either.
		if steps < ws.maxSteps && ws.heldEntities() < ws.maxEnts {
			wi, err := s.be.ClaimOrchestrationStep(ctx, claim)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("duro: claim orchestration step", "err", err)
			}
			if wi != nil {
				progressed = true
				if err := ws.handleStep(ctx, ss, wi); err != nil {
					return err
				}
			}
		}
		if acts < ws.maxActs {
			awi, err := s.be.ClaimActivity(ctx, claim)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("duro: claim activity", "err", err)
			}
			if awi != nil {
				progressed = true
				if err := ws.handleActivity(ctx, ss, awi); err != nil {
					return err
				}
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			continue
		}
		t := time.NewTimer(s.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-woke:
		case <-ws.freed:
		case <-t.C:
		}
		t.Stop()
	}
}

// held counts the stream's items of each kind.
func (ws *workStream) held() (steps, acts int) {
	ws.s.mu.Lock()
	defer ws.s.mu.Unlock()
	for _, it := range ws.s.items {
		if it.ws != ws {
			continue
		}
		switch it.kind {
		case kindStep:
			steps++
		case kindActivity:
			acts++
		}
	}
	return steps, acts
}

func (ws *workStream) mine() []*item {
	ws.s.mu.Lock()
	defer ws.s.mu.Unlock()
	var out []*item
	for _, it := range ws.s.items {
		if it.ws == ws {
			out = append(out, it)
		}
	}
	return out
}

func (s *Server) put(it *item) {
	s.mu.Lock()
	s.items[it.token] = it
	s.mu.Unlock()
}

// take removes and returns the item of token, or of the match function
// for SDKs that send no token.
func (s *Server) take(token string, match func(*item) bool) *item {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token != "" {
		it := s.items[token]
		delete(s.items, token)
		return it
	}
	for tok, it := range s.items {
		if match(it) {
			delete(s.items, tok)
			return it
		}
	}
	return nil
}

func (ws *workStream) signalFreed() {
	select {
	case ws.freed <- struct{}{}:
	default:
	}
}

// renewLoop renews the stream's leases every third of their length.
func (ws *workStream) renewLoop(ctx context.Context) {
	s := ws.s
	t := time.NewTicker(s.opts.LeaseDuration / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, it := range ws.mine() {
			p := &backend.RenewLeaseParams{ID: it.id(), Attempt: it.attempt(), LeaseDuration: s.opts.LeaseDuration}
			var err error
			if it.onInstance() {
				p.ExecutionID = it.wi.Instance.ExecutionID
				err = s.be.RenewOrchestrationLease(ctx, p)
			} else {
				err = s.be.RenewActivityLease(ctx, p)
			}
			if errors.Is(err, backend.ErrLeaseLost) {
				s.log.Warn("duro: lease of a handed-out work item lost", "id", it.id(), "attempt", it.attempt())
				s.take(it.token, nil)
			} else if err != nil && ctx.Err() == nil {
				s.log.Warn("duro: renew lease", "id", it.id(), "err", err)
			}
		}
	}
}

// release hands back the items of a stream that ended: steps at once,
// activities too, unstarted if they were never sent.
func (ws *workStream) release() {
	s := ws.s
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, it := range ws.mine() {
		if s.take(it.token, nil) == nil {
			continue // completed meanwhile
		}
		var err error
		if it.onInstance() {
			err = s.be.AbandonOrchestrationStep(ctx, &backend.AbandonParams{ID: it.id(), Attempt: it.attempt(),
				ExecutionID: it.wi.Instance.ExecutionID})
		} else {
			err = s.be.AbandonActivity(ctx, &backend.AbandonParams{ID: it.id(), Attempt: it.attempt(), Unstarted: !it.sent})
		}
		if err != nil && !errors.Is(err, backend.ErrLeaseLost) {
			s.log.Warn("duro: release work item", "id", it.id(), "err", err)
		}
	}
}

// handleStep prepares a claimed step: it commits at once a step that
// runs no code, and sends the others to the SDK.
func (ws *workStream) handleStep(ctx context.Context, ss grpc.ServerStreamingServer[dtpb.WorkItem], wi *backend.OrchestrationWorkItem) error {
	s := ws.s
	inst := wi.Instance
	if replay.EntityName(inst.ID) != "" {
		return ws.handleEntity(ctx, ss, wi)
	}
	if ws.orchNames != nil && !ws.orchNames[inst.Name] && !inst.Status.IsTerminal() {
		err := s.be.AbandonOrchestrationStep(ctx, &backend.AbandonParams{ID: inst.ID, Attempt: wi.Attempt,
			ExecutionID: inst.ExecutionID, RetryAfter: 4 * s.opts.PollInterval})
		if err != nil && ctx.Err() == nil {
			s.log.Warn("duro: hand back step", "instance", inst.ID, "err", err)
		}
		return nil
	}
	step := replay.PrepareRemote(wi, time.Now(), s.log)
	if step.Done != nil {
		if err := s.be.CompleteOrchestrationStep(ctx, step.Done); err != nil && ctx.Err() == nil {
			s.log.Warn("duro: commit step", "instance", inst.ID, "err", err)
		}
		return nil
	}
	req := &dtpb.OrchestratorRequest{InstanceId: inst.ID, ExecutionId: strOf(inst.ExecutionID)}
	hc := newHistoryConverter(inst, step.Past, step.New)
	for _, ev := range step.Past {
		if pe, ok := hc.convert(ev); ok {
			req.PastEvents = append(req.PastEvents, pe)
		}
	}
	for _, ev := range step.New {
		if pe, ok := hc.convert(ev); ok {
			req.NewEvents = append(req.NewEvents, pe)
		}
	}
	it := &item{token: newToken(kindStep, inst.ID, wi.Attempt), kind: kindStep, ws: ws, wi: wi, step: step, sent: true}
	s.put(it)
	return ws.send(&dtpb.WorkItem{Request: &dtpb.WorkItem_OrchestratorRequest{OrchestratorRequest: req}, CompletionToken: it.token})
}

// inForce is the options a delivery enforces: the task's, made at most
// once by a server policy, whose OnDuplicate then wins (as a Go worker's
// registration does).
func (s *Server) inForce(task *backend.ActivityTask) backend.ActivityOptions {
	o := task.Options
	if p, ok := s.opts.Policies[task.Name]; ok {
		o.AtMostOnce = true
		o.OnDuplicate = string(p.OnDuplicate)
		if p.OnDuplicate == duro.OnDuplicateReconcile {
			o.ReconcileActivity = p.ReconcileActivity
		}
	}
	if o.AtMostOnce && o.OnDuplicate == "" {
		o.OnDuplicate = string(duro.OnDuplicateFail)
	}
	return o
}

// handleActivity applies the task's guarantee to a claimed delivery: a
// poisoned task or a possible duplicate of an at-most-once one is settled
// here; a delivery that may run is marked started (at most once) and sent.
func (ws *workStream) handleActivity(ctx context.Context, ss grpc.ServerStreamingServer[dtpb.WorkItem], awi *backend.ActivityWorkItem) error {
	s := ws.s
	task := awi.Task
	opts := s.inForce(task)
	var enforced *backend.ActivityOptions
	if opts != task.Options {
		enforced = &opts
	}
	maxDeliveries := task.Options.MaxDeliveries
	if maxDeliveries <= 0 {
		maxDeliveries = s.opts.MaxDeliveries
	}
	deliveries := awi.Attempt - task.PriorAttempts - awi.Released
	if deliveries > maxDeliveries && awi.Attempt != task.Options.ApprovedAttempt {
		perr := &duro.PoisonedError{Deliveries: deliveries, MaxDeliveries: maxDeliveries}
		s.log.Error("duro: activity poisoned: too many deliveries", "instance", task.InstanceID, "activity", task.Name,
			"deliveries", deliveries)
		s.completeActivity(ctx, task, awi.Attempt, &backend.Event{Type: backend.EventTaskFailed, TaskID: task.TaskID,
			Failure: engineFailure(duro.FailureTypePoisoned, task.Name, perr), Attempt: awi.Attempt, Activity: enforced})
		return nil
	}
	if opts.AtMostOnce {
		dup := awi.StartedAttempt > 0 || (!task.Options.AtMostOnce && awi.Attempt-1-task.PriorAttempts-awi.Released > 0)
		if dup && awi.Attempt != opts.ApprovedAttempt {
			if duro.OnDuplicate(opts.OnDuplicate) == duro.OnDuplicateReconcile {
				if opts.ReconcileActivity != "" {
					return ws.sendReconcile(awi, opts, enforced)
				}
				s.log.Warn("duro: OnDuplicate Reconcile without a reconcile activity; failing the task as a possible duplicate",
					"instance", task.InstanceID, "activity", task.Name)
			}
			if duro.OnDuplicate(opts.OnDuplicate) == duro.OnDuplicateSuspend {
				s.log.Warn("duro: at-most-once activity not run again: possible duplicate; suspending the instance for a decision",
					"instance", task.InstanceID, "activity", task.Name, "attempt", awi.Attempt)
				s.completeActivity(ctx, task, awi.Attempt, &backend.Event{Type: backend.EventTaskDuplicate, TaskID: task.TaskID,
					Name: task.Name, Attempt: awi.Attempt, FireAt: awi.PreviousDeliveryAt, Activity: enforced})
				return nil
			}
			s.log.Warn("duro: at-most-once activity not run again: possible duplicate",
				"instance", task.InstanceID, "activity", task.Name, "attempt", awi.Attempt)
			derr := &duro.PossibleDuplicateError{Attempt: awi.Attempt, PreviousDeliveryAt: awi.PreviousDeliveryAt}
			s.completeActivity(ctx, task, awi.Attempt, &backend.Event{Type: backend.EventTaskFailed, TaskID: task.TaskID,
				Failure: engineFailure(duro.FailureTypePossibleDuplicate, task.Name, derr), Attempt: awi.Attempt, Activity: enforced})
			return nil
		}
		// Handed to the SDK, the delivery counts as started: mark it
		// first, durably, so that a later delivery knows.
		err := s.be.StartActivity(ctx, &backend.StartParams{ID: task.ID, Attempt: int64(awi.Attempt)})
		if errors.Is(err, backend.ErrLeaseLost) {
			return nil
		}
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("duro: mark at-most-once activity started; handing it back", "activity", task.Name, "err", err)
			}
			aerr := s.be.AbandonActivity(context.WithoutCancel(ctx), &backend.AbandonParams{ID: task.ID, Attempt: int64(awi.Attempt),
				Unstarted: true, RetryAfter: 4 * s.opts.PollInterval})
			if aerr != nil {
				s.log.Warn("duro: hand back activity", "activity", task.Name, "err", aerr)
			}
			return nil
		}
	}
	return ws.sendActivity(awi, opts, enforced)
}

// sendActivity hands a delivery that may run to the SDK.
func (ws *workStream) sendActivity(awi *backend.ActivityWorkItem, opts backend.ActivityOptions, enforced *backend.ActivityOptions) error {
	task := awi.Task
	tags := map[string]string{TagAttempt: strconv.Itoa(awi.Attempt)}
	for k, v := range optionTags(&opts) {
		tags[k] = v
	}
	req := &dtpb.ActivityRequest{Name: task.Name, Input: str(task.Input), TaskId: int32(task.TaskID), Tags: tags,
		OrchestrationInstance: &dtpb.OrchestrationInstance{InstanceId: task.InstanceID, ExecutionId: strOf(task.ExecutionID)}}
	it := &item{token: newToken(kindActivity, task.ID, int64(awi.Attempt)), kind: kindActivity, ws: ws, awi: awi,
		enforced: enforced, sent: true}
	ws.s.put(it)
	return ws.send(&dtpb.WorkItem{Request: &dtpb.WorkItem_ActivityRequest{ActivityRequest: req}, CompletionToken: it.token})
}

func engineFailure(errType, taskName string, err error) *backend.Failure {
	details, _ := json.Marshal(err)
	return &backend.Failure{Message: err.Error(), Type: errType, TaskName: taskName, NonRetryable: true, Details: details}
}

// completeActivity commits a delivery's outcome decided by the server.
func (s *Server) completeActivity(ctx context.Context, task *backend.ActivityTask, attempt int, ev *backend.Event) {
	ev.Timestamp = time.Now().UTC()
	err := s.be.CompleteActivity(context.WithoutCancel(ctx), &backend.CompleteActivityParams{TaskID: task.ID, Attempt: attempt, Result: ev})
	if err != nil && !errors.Is(err, backend.ErrInstanceFinished) {
		s.log.Warn("duro: complete activity", "activity", task.Name, "err", err)
	}
}

var errStale = status.Error(codes.FailedPrecondition,
	"stale or unknown completion token: the work item was completed, released (its stream ended) or claimed again")

// CompleteActivityTask commits an activity's result or failure, fenced by
// the delivery's attempt number: a stale delivery gets FAILED_PRECONDITION.
func (s *Server) CompleteActivityTask(ctx context.Context, r *dtpb.ActivityResponse) (*dtpb.CompleteTaskResponse, error) {
	it := s.take(r.GetCompletionToken(), func(it *item) bool {
		return it.kind == kindActivity && it.awi.Task.InstanceID == r.GetInstanceId() && it.awi.Task.TaskID == int(r.GetTaskId())
	})
	var taskID, name string
	var attempt, tid int
	var enforced *backend.ActivityOptions
	if it != nil && it.reconcile {
		return it.ws.reconciled(ctx, it, r)
	}
	if it != nil {
		defer it.ws.signalFreed()
		taskID, name, attempt, tid, enforced = it.awi.Task.ID, it.awi.Task.Name, it.awi.Attempt, it.awi.Task.TaskID, it.enforced
	} else {
		// The stream ended and released the delivery: offer the result
		// to the store anyway, which accepts it if nobody claimed the
		// task since.
		kind, id, att, ok := parseToken(r.GetCompletionToken())
		if !ok || kind != kindActivity {
			return nil, errStale // a reconcile's delivery is settled only while its stream lives
		}
		taskID, attempt, tid = id, int(att), int(r.GetTaskId())
	}
	res := payload(r.GetResult())
	if err := checkPayload("activity result", res); err != nil {
		return nil, grpcError("complete activity", err)
	}
	ev := &backend.Event{Type: backend.EventTaskCompleted, TaskID: tid, Result: res, Attempt: attempt,
		Timestamp: time.Now().UTC(), Activity: enforced}
	if fd := r.GetFailureDetails(); fd != nil {
		ev = &backend.Event{Type: backend.EventTaskFailed, TaskID: tid, Failure: failureFromPB(fd, name), Attempt: attempt,
			Timestamp: ev.Timestamp, Activity: enforced}
	}
	err := s.be.CompleteActivity(ctx, &backend.CompleteActivityParams{TaskID: taskID, Attempt: attempt, Result: ev})
	switch {
	case errors.Is(err, backend.ErrLeaseLost):
		return nil, status.Errorf(codes.FailedPrecondition, "complete activity: stale delivery (attempt %d): %v", attempt, err)
	case errors.Is(err, backend.ErrInstanceFinished):
		s.log.Warn("duro: activity finished after its instance ended; its outcome is kept in the instance's history",
			"task", taskID)
	case err != nil:
		return nil, grpcError("complete activity", err)
	}
	return &dtpb.CompleteTaskResponse{}, nil
}

// CompleteOrchestratorTask turns the SDK's actions into the step's
// effects and commits them in one fenced transaction.
func (s *Server) CompleteOrchestratorTask(ctx context.Context, r *dtpb.OrchestratorResponse) (*dtpb.CompleteTaskResponse, error) {
	it := s.take(r.GetCompletionToken(), func(it *item) bool {
		return it.kind == kindStep && it.wi.Instance.ID == r.GetInstanceId()
	})
	if it == nil || it.kind != kindStep {
		return nil, errStale
	}
	defer it.ws.signalFreed()
	inst := it.wi.Instance
	if r.GetInstanceId() != "" && r.GetInstanceId() != inst.ID {
		s.put(it)
		return nil, grpcError("complete orchestration step", invalid("the token is of instance %q, not %q", inst.ID, r.GetInstanceId()))
	}
	actions, err := remoteActions(r.GetActions())
	cs := r.GetCustomStatus()
	var p *backend.CompleteOrchestrationStepParams
	if err == nil {
		p, err = it.step.Finish(actions, payload(cs), cs != nil)
	}
	if err != nil {
		// The SDK asked for what duro cannot do: the orchestration fails,
		// visibly, rather than loop on a step that cannot commit.
		s.log.Warn("duro: orchestration failed: its actions cannot be applied", "instance", inst.ID, "err", err)
		p, err = it.step.Finish([]replay.RemoteAction{{Kind: replay.RemoteComplete, Status: backend.StatusFailed,
			Failure: &backend.Failure{Message: err.Error(), Type: "UnsupportedAction", NonRetryable: true}}}, payload(cs), cs != nil)
		if err != nil {
			return nil, grpcError("complete orchestration step", err)
		}
	}
	if err := s.be.CompleteOrchestrationStep(ctx, p); err != nil {
		if errors.Is(err, backend.ErrLeaseLost) {
			return nil, status.Errorf(codes.FailedPrecondition, "complete orchestration step: stale delivery: %v", err)
		}
		return nil, grpcError("complete orchestration step", err)
	}
	return &dtpb.CompleteTaskResponse{}, nil
}

// AbandonTaskOrchestratorWorkItem hands a step back.
func (s *Server) AbandonTaskOrchestratorWorkItem(ctx context.Context, r *dtpb.AbandonOrchestrationTaskRequest) (*dtpb.AbandonOrchestrationTaskResponse, error) {
	it := s.take(r.GetCompletionToken(), func(*item) bool { return false })
	if it == nil || it.kind != kindStep {
		return nil, errStale
	}
	defer it.ws.signalFreed()
	err := s.be.AbandonOrchestrationStep(ctx, &backend.AbandonParams{ID: it.id(), Attempt: it.attempt(),
		ExecutionID: it.wi.Instance.ExecutionID, RetryAfter: s.opts.PollInterval})
	if err != nil {
		return nil, grpcError("abandon orchestration step", err)
	}
	return &dtpb.AbandonOrchestrationTaskResponse{}, nil
}

// AbandonTaskActivityWorkItem hands an activity delivery back; it counts
// as started (the SDK had it).
func (s *Server) AbandonTaskActivityWorkItem(ctx context.Context, r *dtpb.AbandonActivityTaskRequest) (*dtpb.AbandonActivityTaskResponse, error) {
	it := s.take(r.GetCompletionToken(), func(*item) bool { return false })
	if it == nil || it.kind != kindActivity {
		return nil, errStale
	}
	defer it.ws.signalFreed()
	err := s.be.AbandonActivity(ctx, &backend.AbandonParams{ID: it.id(), Attempt: it.attempt(), RetryAfter: s.opts.PollInterval})
	if err != nil {
		return nil, grpcError("abandon activity", err)
	}
	return &dtpb.AbandonActivityTaskResponse{}, nil
}

// remoteActions converts the SDK's actions.
func remoteActions(in []*dtpb.OrchestratorAction) ([]replay.RemoteAction, error) {
	out := make([]replay.RemoteAction, 0, len(in))
	for _, a := range in {
		ra := replay.RemoteAction{ID: int(a.GetId())}
		switch t := a.GetOrchestratorActionType().(type) {
		case *dtpb.OrchestratorAction_ScheduleTask:
			ra.Kind, ra.Name, ra.Input = replay.RemoteActivity, t.ScheduleTask.GetName(), payload(t.ScheduleTask.GetInput())
			opts, err := tagOptions(t.ScheduleTask.GetTags())
			if err != nil {
				return nil, fmt.Errorf("activity %q: %w", ra.Name, err)
			}
			ra.Activity = opts
		case *dtpb.OrchestratorAction_CreateSubOrchestration:
			c := t.CreateSubOrchestration
			ra.Kind, ra.Name, ra.InstanceID, ra.Input = replay.RemoteSubOrchestration, c.GetName(), c.GetInstanceId(), payload(c.GetInput())
			if strings.HasPrefix(ra.InstanceID, "@") {
				return nil, fmt.Errorf("sub-orchestration ID %q: IDs starting with @ are entities'", ra.InstanceID)
			}
		case *dtpb.OrchestratorAction_CreateTimer:
			ra.Kind, ra.FireAt = replay.RemoteTimer, fromTS(t.CreateTimer.GetFireAt())
		case *dtpb.OrchestratorAction_SendEvent:
			e := t.SendEvent
			ra.Kind, ra.Name, ra.InstanceID, ra.Input = replay.RemoteSendEvent, e.GetName(), e.GetInstance().GetInstanceId(), payload(e.GetData())
			if ra.Name == replay.TerminateSentName {
				return nil, fmt.Errorf("event name %q is reserved by duro", ra.Name)
			}
		case *dtpb.OrchestratorAction_CompleteOrchestration:
			c := t.CompleteOrchestration
			ra.Kind, ra.Result = replay.RemoteComplete, payload(c.GetResult())
			switch c.GetOrchestrationStatus() {
			case dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_COMPLETED:
				ra.Status = backend.StatusCompleted
			case dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_CONTINUED_AS_NEW:
				ra.Status = backend.StatusContinuedAsNew
				carry, err := carryoverEvents(c.GetCarryoverEvents())
				if err != nil {
					return nil, err
				}
				ra.Carryover = carry
			case dtpb.OrchestrationStatus_ORCHESTRATION_STATUS_FAILED:
				ra.Status, ra.Result = backend.StatusFailed, nil
				ra.Failure = failureFromPB(c.GetFailureDetails(), "")
			default:
				return nil, fmt.Errorf("the orchestration cannot complete with status %s", c.GetOrchestrationStatus())
			}
		case *dtpb.OrchestratorAction_TerminateOrchestration:
			tr := t.TerminateOrchestration
			ra.Kind, ra.InstanceID, ra.Reason, ra.NonRecursive = replay.RemoteTerminate, tr.GetInstanceId(), tr.GetReason().GetValue(), !tr.GetRecurse()
			if strings.HasPrefix(ra.InstanceID, "@") {
				return nil, fmt.Errorf("terminate %q: IDs starting with @ are entities', which do not terminate", ra.InstanceID)
			}
		case *dtpb.OrchestratorAction_RewindOrchestration:
			// An SDK rewinds when its new events hold an ExecutionRewound
			// and its past a completion; duro rewinds in the engine and
			// never hands an SDK either.
			return nil, errors.New("a rewind action: duro rewinds instances itself (RewindInstance) and never asks an SDK to")
		case *dtpb.OrchestratorAction_SendEntityMessage:
			var err error
			if ra, err = entityAction(ra, t.SendEntityMessage); err != nil {
				return nil, fmt.Errorf("entity action %d: %w", ra.ID, err)
			}
		default:
			return nil, fmt.Errorf("action %d of an unknown kind", a.GetId())
		}
		out = append(out, ra)
	}
	return out, nil
}

// carryoverEvents converts the external events a continue-as-new carries
// over; other kinds of event do not carry over.
func carryoverEvents(in []*dtpb.HistoryEvent) ([]*backend.Event, error) {
	var out []*backend.Event
	for i, h := range in {
		er := h.GetEventRaised()
		if er == nil || er.GetName() == "" {
			return nil, fmt.Errorf("continue-as-new: carried-over event %d is not a named external event (eventRaised)", i)
		}
		out = append(out, &backend.Event{Type: backend.EventEventRaised, Name: er.GetName(), Input: payload(er.GetInput())})
	}
	return out, nil
}

// tagOptions reads the at-most-once tags of a scheduled activity.
func tagOptions(tags map[string]string) (backend.ActivityOptions, error) {
	var o backend.ActivityOptions
	if g, ok := tags[TagGuarantee]; ok {
		switch {
		case strings.EqualFold(g, "AtMostOnce"):
			o.AtMostOnce = true
		case strings.EqualFold(g, "AtLeastOnce"):
		default:
			return o, fmt.Errorf("tag %s=%q: want AtMostOnce or AtLeastOnce", TagGuarantee, g)
		}
	}
	policies := []duro.OnDuplicate{duro.OnDuplicateFail, duro.OnDuplicateSuspend, duro.OnDuplicateReconcile}
	if od, ok := tags[TagOnDuplicate]; ok {
		i := slices.IndexFunc(policies, func(p duro.OnDuplicate) bool { return strings.EqualFold(od, string(p)) })
		if i < 0 {
			return o, fmt.Errorf("tag %s=%q: want Fail, Suspend or Reconcile", TagOnDuplicate, od)
		}
		o.OnDuplicate = string(policies[i])
	}
	o.ReconcileActivity = tags[TagReconcile]
	switch {
	case o.OnDuplicate == string(duro.OnDuplicateReconcile) && o.ReconcileActivity == "":
		return o, fmt.Errorf("tag %s=Reconcile needs the reconcile activity's name in tag %s", TagOnDuplicate, TagReconcile)
	case o.OnDuplicate != string(duro.OnDuplicateReconcile) && o.ReconcileActivity != "":
		return o, fmt.Errorf("tag %s names a reconcile activity, but %s is not Reconcile", TagReconcile, TagOnDuplicate)
	}
	return o, nil
}
