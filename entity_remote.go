package duro

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/remoteentity"
	"github.com/durohq/duro/internal/replay"
)

// Entities whose code runs outside this process (a Durable Task SDK's
// entity worker behind server/dtgrpc) go through the same entity step as
// Go entities: the step applies locks, releases, queues and the dedup
// window, and where a Go entity's operation would run, it records the
// operation instead (and reserves the place of the caller's response
// among the step's messages). The remote code's outcomes then fill the
// responses in, its final state replaces the entity's, and the step
// finishes as a Go batch does.

func init() { remoteentity.Register(prepareRemoteBatch) }

// remoteBatch implements remoteentity.Batch.
type remoteBatch struct {
	s       *entityStep
	ops     []remoteentity.Operation
	waiting []remoteWaiter
	state   []byte
	exists  bool
	done    bool
}

// remoteWaiter is who waits for an operation's outcome: the caller, and
// the index of its response in the step's messages (for a call).
type remoteWaiter struct {
	caller *backend.ParentRef
	slot   int
	name   string
	reqID  string
}

func prepareRemoteBatch(ctx context.Context, be backend.Backend, wi *backend.OrchestrationWorkItem, o remoteentity.Options) (remoteentity.Batch, error) {
	id, err := ParseEntityID(wi.Instance.ID)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{be: be, log: log, now: time.Now, opts: WorkerOptions{EntityDedupWindow: o.DedupWindow, EntityDedupAge: o.DedupAge,
		EntityQueueLimit: o.QueueLimit}.WithDefaults()}
	s, err := w.newEntityStep(ctx, wi, id, nil, log.With("entity", id.String()))
	if err != nil {
		return nil, err
	}
	b := &remoteBatch{s: s, state: s.env.State, exists: s.env.Exists}
	s.remote = b
	if err := s.process(); err != nil {
		return nil, err
	}
	return b, nil
}

// add records an operation for the remote code.
func (b *remoteBatch) add(m *backend.Message, ev *backend.Event, req *backend.EntityRequest) {
	s := b.s
	b.ops = append(b.ops, remoteentity.Operation{RequestID: m.ID, Name: ev.Name, Input: ev.Input})
	w := remoteWaiter{caller: req.Caller, slot: -1, name: ev.Name, reqID: m.ID}
	if req.Caller != nil {
		w.slot = len(s.out.Messages)
		s.out.Messages = append(s.out.Messages, nil) // the response, once known
	}
	b.waiting = append(b.waiting, w)
}

func (b *remoteBatch) Operations() []remoteentity.Operation { return b.ops }

func (b *remoteBatch) State() ([]byte, bool) { return b.state, b.exists }

func (b *remoteBatch) Finish(r *remoteentity.Result) (*backend.CompleteOrchestrationStepParams, error) {
	if b.done {
		return nil, errors.New("entity batch finished twice")
	}
	s := b.s
	if len(r.Outcomes) != len(b.ops) {
		return nil, fmt.Errorf("entity %s: %d outcomes for a batch of %d operations", s.id, len(r.Outcomes), len(b.ops))
	}
	for _, sig := range r.Signals {
		if _, err := ParseEntityID(sig.EntityID); err != nil {
			return nil, fmt.Errorf("entity %s: signal %d: %w", s.id, sig.Seq, err)
		}
		if sig.Operation == "" {
			return nil, fmt.Errorf("entity %s: signal %d to %s without an operation", s.id, sig.Seq, sig.EntityID)
		}
	}
	for _, st := range r.Starts {
		if st.Name == "" {
			return nil, fmt.Errorf("entity %s: orchestration start %d without a name", s.id, st.Seq)
		}
		if err := validateInstanceID(st.InstanceID); err != nil {
			return nil, fmt.Errorf("entity %s: orchestration start %d: %w", s.id, st.Seq, err)
		}
	}
	b.done = true
	for i, o := range r.Outcomes {
		w := b.waiting[i]
		ev := &backend.Event{Type: backend.EventEntityResponse, TaskID: taskIDOf(w.caller), Result: o.Output, Timestamp: s.now}
		if o.Failure != nil {
			f := *o.Failure
			if f.TaskName == "" {
				f.TaskName = w.name
			}
			ev.Result, ev.Failure = nil, &f
			if w.caller == nil {
				s.log.Warn("duro: entity operation failed; the signal is dropped", "operation", w.name, "request", w.reqID, "err", f.Message)
			}
		}
		if w.slot >= 0 {
			s.out.Messages[w.slot] = response(w.caller, ev)
		}
	}
	if len(b.ops) > 0 {
		s.env.State, s.env.Exists = r.State, r.Exists
		if !r.Exists {
			s.env.State = nil
		}
	}
	// The batch's messages are named after its first operation, which no
	// other committed batch of the entity ran.
	var key string
	if len(b.ops) > 0 {
		key = b.ops[0].RequestID
	}
	self := s.id.String()
	for _, sig := range r.Signals {
		s.out.StartInstances = append(s.out.StartInstances, replay.EntityCreation(sig.EntityID))
		m := &backend.Message{
			ID: fmt.Sprintf("sig/%s/%s/batch/%d", self, key, sig.Seq), InstanceID: sig.EntityID,
			Event: &backend.Event{Type: backend.EventEntityRequest, Name: sig.Operation, Input: sig.Input,
				Entity: &backend.EntityRequest{}, Timestamp: s.now},
		}
		if sig.At.After(s.now) {
			m.VisibleAt = sig.At.UTC()
		}
		s.out.Messages = append(s.out.Messages, m)
	}
	for _, st := range r.Starts {
		p := &backend.CreateInstanceParams{
			ID: st.InstanceID, Name: st.Name, Input: st.Input, Now: s.now,
			ExecutionID: uuid.NewSHA1(uuid.NameSpaceOID, []byte("start/"+st.InstanceID+"/"+key)).String(),
		}
		if st.At.After(s.now) {
			p.StartAt = st.At.UTC()
		}
		s.out.StartInstances = append(s.out.StartInstances, p)
	}
	kept := s.out.Messages[:0]
	for _, m := range s.out.Messages {
		if m != nil {
			kept = append(kept, m)
		}
	}
	s.out.Messages = kept
	return s.finalize()
}

var _ remoteentity.Batch = (*remoteBatch)(nil)
