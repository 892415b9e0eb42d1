package duro

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/durohq/duro/backend"
)

// Status is an orchestration instance's runtime status.
type Status = backend.Status

// Instance statuses.
const (
	StatusPending        = backend.StatusPending
	StatusRunning        = backend.StatusRunning
	StatusSuspended      = backend.StatusSuspended
	StatusCompleted      = backend.StatusCompleted
	StatusFailed         = backend.StatusFailed
	StatusTerminated     = backend.StatusTerminated
	StatusContinuedAsNew = backend.StatusContinuedAsNew
)

// HistoryEvent is one entry of an instance's history.
type HistoryEvent = backend.Event

// ClientOptions configure a Client. The zero value is usable.
type ClientOptions struct {
	// Codec encodes payloads; it must match the workers'. Default: JSONCodec.
	Codec Codec
	// MaxPayloadBytes limits one encoded payload (start input, event data).
	// Default: DefaultMaxPayloadBytes; negative means no limit.
	MaxPayloadBytes int
	// WaitPollInterval is the longest Wait sleeps between looks at the
	// instance. On a backend that reports finishes
	// (backend.FinishNotifier), Wait returns on the report and looks
	// every WaitPollInterval only as a fallback, so this bounds how late
	// it sees a finish no report covers (another process's, on SQLite).
	// On other backends Wait polls at doubling intervals up to it.
	// Default: 200ms.
	WaitPollInterval time.Duration
	// Worker, if set, is a worker of this process on the same store. Start
	// then runs a new instance's first step on it inside the creation's
	// transaction: one commit for the creation and the step, no claim, and
	// the step's activities dispatched to the worker at once. That happens
	// when the worker's backend can (backend.StartStepCommitter:
	// PostgreSQL), the worker is running, registers the orchestration and
	// has a free orchestration slot, and the instance starts at once
	// (StartOptions without StartAt or ReplaceFinished). Otherwise, or
	// when Worker is nil, Start only creates the instance, for whichever
	// worker claims it. The guarantees are those of any claim: the step
	// runs with attempt 1 and a lease for this worker, and a step whose
	// code fails, or that writes other instances, is committed (or run
	// again) as after a claim; an instance whose first step could not be
	// written with its creation is created without it.
	Worker *Worker
}

// Client starts and manages orchestration instances. It is safe for
// concurrent use and needs no worker in the same process.
type Client struct {
	be   backend.Backend
	p    payloads
	poll time.Duration
	// worker is ClientOptions.Worker.
	worker *Worker
	// now is the clock of the events the client records (raised events,
	// control requests) and of the terminations it applies: time.Now,
	// unless package durotest set its virtual clock (internal/testhook).
	now func() time.Time
}

// NewClient returns a client for be. opts may be nil.
func NewClient(be backend.Backend, opts *ClientOptions) *Client {
	var o ClientOptions
	if opts != nil {
		o = *opts
	}
	if o.Codec == nil {
		o.Codec = JSONCodec{}
	}
	limit := o.MaxPayloadBytes
	if limit == 0 {
		limit = DefaultMaxPayloadBytes
	}
	if limit < 0 {
		limit = 0
	}
	if o.WaitPollInterval <= 0 {
		o.WaitPollInterval = 200 * time.Millisecond
	}
	return &Client{be: be, p: payloads{codec: o.Codec, limit: limit}, poll: o.WaitPollInterval, worker: o.Worker, now: time.Now}
}

// Backend returns the client's backend.
func (c *Client) Backend() backend.Backend { return c.be }

// StartOptions tune Client.Start.
type StartOptions struct {
	// InstanceID names the instance. Default: a random UUID.
	InstanceID string
	// StartAt delays the first step until this time.
	StartAt time.Time
	// ReplaceFinished lets Start reuse the ID of a finished instance (its
	// history is deleted). Starting over a live instance is always
	// ErrInstanceExists.
	ReplaceFinished bool
}

// Start creates an instance of the orchestration name with input and returns
// its ID. At most one StartOptions may be given.
func (c *Client) Start(ctx context.Context, name string, input any, opts ...StartOptions) (string, error) {
	var o StartOptions
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		return "", errors.New("duro: Start takes at most one StartOptions")
	}
	if name == "" {
		return "", errors.New("duro: start: empty orchestration name")
	}
	id := o.InstanceID
	if id == "" {
		id = uuid.NewString()
	}
	if err := validateInstanceID(id); err != nil {
		return "", fmt.Errorf("duro: start: %w", err)
	}
	in, err := c.p.encode(fmt.Sprintf("input of orchestration %q", name), input)
	if err != nil {
		return "", fmt.Errorf("duro: start %q: %w", id, err)
	}
	ifExists := backend.IfExistsFail
	if o.ReplaceFinished {
		ifExists = backend.IfExistsReplaceFinished
	}
	p := &backend.CreateInstanceParams{
		ID: id, Name: name, ExecutionID: uuid.NewString(), Input: in, StartAt: o.StartAt, IfExists: ifExists,
	}
	fused := false
	if c.worker != nil && o.StartAt.IsZero() && ifExists == backend.IfExistsFail {
		fused, err = c.worker.startWithStep(ctx, p)
	}
	if !fused {
		err = c.be.CreateInstance(ctx, p)
	}
	if err != nil {
		return "", fmt.Errorf("duro: start %q: %w", id, err)
	}
	return id, nil
}

func validateInstanceID(id string) error {
	if len(id) > 256 {
		return fmt.Errorf("instance ID is %d bytes; the limit is 256", len(id))
	}
	if strings.ContainsAny(id, "\x00\n\r") {
		return errors.New("instance ID contains a control character")
	}
	return nil
}

// Instance is a snapshot of an orchestration instance.
type Instance struct {
	ID          string
	Name        string
	ExecutionID string
	Status      Status
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// CompletedAt is set once the instance has finished.
	CompletedAt time.Time
	// Failure is set for a Failed instance.
	Failure *Failure
	// ParentInstanceID is set for sub-orchestrations.
	ParentInstanceID string
	// Suspension is set while the instance is Suspended: why, since when,
	// and which tasks wait for a decision.
	Suspension *Suspension
	// LastResume is the outcome of the last resume the instance's steps
	// applied or refused (nil if none); see Client.ResumeOutcome.
	LastResume *ResumeOutcome
	// RawInput, RawOutput and RawCustomStatus are the encoded payloads.
	RawInput        []byte
	RawOutput       []byte
	RawCustomStatus []byte
	// PayloadsOmitted is set on an instance listed with
	// ListOptions.OmitPayloads: RawInput and RawOutput are nil, and so are
	// RawCustomStatus when it is over 1 KiB and the inputs of the pending
	// decisions; Get returns them whole.
	PayloadsOmitted bool
	// InputSize, OutputSize and CustomStatusSize are the sizes of the
	// encoded payloads in bytes, omitted or not.
	InputSize, OutputSize, CustomStatusSize int

	p payloads
}

func (c *Client) instance(bi *backend.Instance) *Instance {
	i := &Instance{
		ID: bi.ID, Name: bi.Name, ExecutionID: bi.ExecutionID, Status: bi.Status,
		CreatedAt: bi.CreatedAt, UpdatedAt: bi.UpdatedAt, CompletedAt: bi.CompletedAt, Failure: bi.Failure,
		RawInput: bi.Input, RawOutput: bi.Output, RawCustomStatus: bi.CustomStatus, p: c.p,
		Suspension: bi.Suspension, PayloadsOmitted: bi.Omitted,
		InputSize: len(bi.Input), OutputSize: len(bi.Output), CustomStatusSize: len(bi.CustomStatus),
	}
	if bi.Omitted {
		i.InputSize, i.OutputSize, i.CustomStatusSize = bi.InputSize, bi.OutputSize, bi.CustomStatusSize
		i.Suspension = withoutInputs(bi.Suspension)
	}
	if bi.Parent != nil {
		i.ParentInstanceID = bi.Parent.InstanceID
	}
	if n := len(bi.ResumeOutcomes); n > 0 {
		i.LastResume = bi.ResumeOutcomes[n-1]
	}
	return i
}

// withoutInputs returns a copy of s without the inputs of its pending
// decisions (nil for nil).
func withoutInputs(s *Suspension) *Suspension {
	if s == nil || len(s.Pending) == 0 {
		return s
	}
	out := *s
	out.Pending = make([]*PendingDecision, len(s.Pending))
	for k, pd := range s.Pending {
		c := *pd
		c.Input = nil
		out.Pending[k] = &c
	}
	return &out
}

// Input decodes the instance's input into v.
func (i *Instance) Input(v any) error { return i.p.decode("instance input", i.RawInput, v) }

// Output decodes the output of a Completed instance into v.
func (i *Instance) Output(v any) error { return i.p.decode("instance output", i.RawOutput, v) }

// CustomStatus decodes the custom status into v.
func (i *Instance) CustomStatus(v any) error {
	return i.p.decode("custom status", i.RawCustomStatus, v)
}

// Err returns nil unless the instance Failed or was Terminated, in which case
// it returns an *InstanceError.
func (i *Instance) Err() error {
	if i.Status != StatusFailed && i.Status != StatusTerminated {
		return nil
	}
	return &InstanceError{InstanceID: i.ID, Status: i.Status, Failure: i.Failure}
}

// InstanceError says why an instance did not complete.
type InstanceError struct {
	InstanceID string
	Status     Status
	Failure    *Failure
}

// Error implements error.
func (e *InstanceError) Error() string {
	if e.Failure != nil {
		return fmt.Sprintf("instance %q %s: %s", e.InstanceID, strings.ToLower(string(e.Status)), e.Failure.Error())
	}
	return fmt.Sprintf("instance %q %s", e.InstanceID, strings.ToLower(string(e.Status)))
}

// Get returns a snapshot of the instance, or ErrInstanceNotFound.
func (c *Client) Get(ctx context.Context, id string) (*Instance, error) {
	bi, err := c.be.GetInstance(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("duro: get %q: %w", id, err)
	}
	return c.instance(bi), nil
}

// Wait waits until the instance has finished (Completed, Failed or
// Terminated) and returns it. Bound it with ctx.
//
// When the backend is a backend.FinishNotifier (memory, SQLite and
// PostgreSQL are), Wait watches the instance and returns as soon as the
// step that finishes it commits: in this process, or, on PostgreSQL, in
// any process (through the hub's notification). It also looks at the
// instance every ClientOptions.WaitPollInterval, which bounds how late it
// sees a finish no notification reports: one committed by another process
// on the same SQLite file, or while PostgreSQL's notification connection
// is down. Otherwise it polls, first after 2ms, then at doubling
// intervals up to WaitPollInterval. Either way, returning (ctx done
// included) releases everything Wait held.
func (c *Client) Wait(ctx context.Context, id string) (*Instance, error) {
	fn, _ := c.be.(backend.FinishNotifier)
	d := 2 * time.Millisecond
	var fired <-chan struct{}
	stop := func() {}
	defer func() { stop() }()
	for {
		if fired == nil && fn != nil {
			// Watch before reading, so that a finish committed in between
			// still fires the channel.
			fired, stop = fn.WatchFinish(id)
			if fired == nil {
				fn = nil // a wrapper over a backend that cannot watch
			}
		}
		inst, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if inst.Status.IsTerminal() {
			return inst, nil
		}
		wait := d
		if fired != nil {
			wait = c.poll
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("duro: wait for %q: %w", id, ctx.Err())
		case <-fired:
			// The watch is spent; the next turn watches again.
			t.Stop()
			stop()
			fired, stop = nil, func() {}
		case <-t.C:
			// The fallback poll (the watch, if any, stays).
		}
		if d *= 2; d > c.poll {
			d = c.poll
		}
	}
}

// RaiseEvent delivers an external event to the instance, where
// WaitForEvent(name) receives it. Events are processed in the order they are
// raised. It returns ErrInstanceNotFound or ErrInstanceFinished.
func (c *Client) RaiseEvent(ctx context.Context, id, name string, data any) error {
	if name == "" {
		return errors.New("duro: raise event: empty event name")
	}
	b, err := c.p.encode(fmt.Sprintf("data of event %q", name), data)
	if err != nil {
		return fmt.Errorf("duro: raise %q on %q: %w", name, id, err)
	}
	err = c.be.EnqueueMessage(ctx, &backend.Message{
		ID: "event/" + uuid.NewString(), InstanceID: id,
		Event: &backend.Event{Type: backend.EventEventRaised, Name: name, Input: b, Timestamp: c.now().UTC()},
	})
	if err != nil {
		return fmt.Errorf("duro: raise %q on %q: %w", name, id, err)
	}
	return nil
}

// Terminate asks the instance to stop. The next orchestration step records
// the termination, terminates its running sub-orchestrations and tells its
// parent; no more orchestration code runs. When no worker holds the
// instance's step (none is running, or none registers its orchestration:
// a Pending instance nobody can start) and the store can claim one
// instance's step (backend.InstanceClaimer), the client runs that step
// itself, so the instance is Terminated when Terminate returns; otherwise
// the worker that holds it records the termination. It returns
// ErrInstanceNotFound or ErrInstanceFinished.
func (c *Client) Terminate(ctx context.Context, id, reason string) error {
	msgID := "terminate/" + uuid.NewString()
	err := c.be.EnqueueMessage(ctx, &backend.Message{
		ID: msgID, InstanceID: id,
		Event: &backend.Event{Type: backend.EventExecutionTerminated, Reason: reason, Timestamp: c.now().UTC()},
	})
	if err != nil {
		return fmt.Errorf("duro: terminate %q: %w", id, err)
	}
	c.terminateNow(ctx, id, msgID)
	return nil
}

// Purge deletes a finished instance and its history. It returns
// ErrInstanceNotFound or ErrInstanceNotFinished.
func (c *Client) Purge(ctx context.Context, id string) error {
	if err := c.be.PurgeInstance(ctx, id); err != nil {
		return fmt.Errorf("duro: purge %q: %w", id, err)
	}
	return nil
}

// PurgeFilter selects finished instances for PurgeWhere. At least one field
// must be set.
type PurgeFilter struct {
	// Statuses limits the purge to these (terminal) statuses.
	Statuses []Status
	// Name matches the orchestration name.
	Name string
	// CreatedFrom (inclusive) and CreatedTo (exclusive) bound creation time.
	CreatedFrom time.Time
	CreatedTo   time.Time
}

// PurgeWhere deletes the finished instances that match f and returns how
// many it deleted.
func (c *Client) PurgeWhere(ctx context.Context, f PurgeFilter) (int, error) {
	n, err := c.be.PurgeInstances(ctx, &backend.PurgeInstancesParams{
		Statuses: f.Statuses, Name: f.Name, CreatedFrom: f.CreatedFrom, CreatedTo: f.CreatedTo,
	})
	if err != nil {
		return n, fmt.Errorf("duro: purge: %w", err)
	}
	return n, nil
}

// ListOptions filter and page Client.List. Zero fields do not filter.
type ListOptions struct {
	Statuses []Status
	// Name matches the orchestration name exactly.
	Name string
	// IDPrefix matches the instance IDs that start with it.
	IDPrefix string
	// CustomStatus matches the instances whose encoded custom status
	// contains it (case-sensitive).
	CustomStatus string
	// CreatedFrom (inclusive) and CreatedTo (exclusive) bound creation time.
	CreatedFrom time.Time
	CreatedTo   time.Time
	// PageSize defaults to 100.
	PageSize int
	// PageToken continues from a previous page's NextPageToken.
	PageToken string
	// OmitPayloads lists the instances without their inputs and outputs
	// (and custom statuses over 1 KiB), with their sizes instead: see
	// Instance.PayloadsOmitted. For lists shown to people.
	OmitPayloads bool
}

// InstancePage is one page of Client.List, newest first.
type InstancePage struct {
	Instances []*Instance
	// NextPageToken is empty on the last page.
	NextPageToken string
}

// List returns one page of instances, newest first.
func (c *Client) List(ctx context.Context, o ListOptions) (*InstancePage, error) {
	page, err := c.be.ListInstances(ctx, &backend.ListInstancesParams{
		Statuses: o.Statuses, Name: o.Name, IDPrefix: o.IDPrefix, CustomStatus: o.CustomStatus,
		CreatedFrom: o.CreatedFrom, CreatedTo: o.CreatedTo, PageSize: o.PageSize, PageToken: o.PageToken,
		OmitPayloads: o.OmitPayloads,
	})
	if err != nil {
		return nil, fmt.Errorf("duro: list: %w", err)
	}
	out := &InstancePage{NextPageToken: page.NextPageToken}
	for _, bi := range page.Instances {
		out.Instances = append(out.Instances, c.instance(bi))
	}
	return out, nil
}

// History returns the current execution's history, oldest first.
func (c *Client) History(ctx context.Context, id string) ([]*HistoryEvent, error) {
	h, err := c.be.GetHistory(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("duro: history of %q: %w", id, err)
	}
	return h, nil
}
