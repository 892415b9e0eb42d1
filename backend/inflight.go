package backend

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The optional capabilities operators' views need: what an instance has in
// flight (InFlightReader), which workers are running (WorkerRegistry), and
// the claim of one instance's step, by which a client applies a
// termination that no worker would (InstanceClaimer). Wrappers of a
// backend must forward them.

// InFlightReader is an optional capability: a backend that shows operators
// the work an instance has in flight, as its rows say — the lease of its
// orchestration step, its inbox and its activity tasks with their attempts
// and leases — so that a worker that died holding a lease, or a task
// waiting to be delivered again, is visible while it happens.
type InFlightReader interface {
	// InFlight returns the instance's work in flight, read in one
	// transaction, or ErrInstanceNotFound.
	InFlight(ctx context.Context, instanceID string) (*InFlight, error)
}

// InFlight is an instance's work in flight, read by InFlightReader.
type InFlight struct {
	InstanceID string
	// Now is the store's clock when it was read: leases and visibility
	// times compare to it, not to the reader's clock.
	Now time.Time
	// Step is the lease of the instance's orchestration step.
	Step StepLease
	// Messages counts the messages in the inbox (visible or not);
	// NextMessageAt is when the earliest of them is (or became) visible,
	// zero for none or for one visible from the start.
	Messages      int
	NextMessageAt time.Time
	// Tasks are the instance's activity tasks (those not completed yet),
	// oldest first.
	Tasks []*TaskState
}

// StepLease is the state of an instance's orchestration step lease.
type StepLease struct {
	// Attempt is the number of the newest delivery of a step (A1); it
	// grows across the instance's steps.
	Attempt int64
	// Deliveries counts the deliveries since the last committed step: 0
	// when no delivery is outstanding, more than 1 when earlier ones
	// crashed or were handed back (the poison count).
	Deliveries int
	// Owner is the worker that holds the lease; empty when nobody does.
	Owner string
	// ExpiresAt is when Owner's lease lapses (zero when nobody holds it);
	// with no Owner, a time after Now is when a step handed back may be
	// claimed again.
	ExpiresAt time.Time
}

// TaskState is one activity task as it is stored: scheduled, delivered,
// or handed back to wait for its next delivery.
type TaskState struct {
	// ID is the task's message ID; TaskID its task ID in ExecutionID.
	ID          string
	ExecutionID string
	TaskID      int
	Name        string
	Options     ActivityOptions
	// Attempt is the newest delivery's number: PriorAttempts until the
	// first delivery since the task was enqueued.
	Attempt       int
	PriorAttempts int
	// Owner is the worker whose delivery holds the lease, until ExpiresAt
	// (a lease that lapsed is redelivered to the next claim). Empty when
	// no delivery holds it.
	Owner     string
	ExpiresAt time.Time
	// ClaimedAt is when the newest delivery was claimed (zero: never).
	ClaimedAt time.Time
	// StartedAttempt is the newest delivery that marked itself started
	// (Backend.StartActivity: its at-most-once code ran, or may have), 0
	// if none did.
	StartedAttempt int
	// VisibleAt is when the task may be claimed (again): zero for at once,
	// a later time for a task handed back with a delay.
	VisibleAt time.Time
	// Parked is set for a task whose instance finished while a delivery
	// held it: it is never delivered again, and waits for that delivery
	// to complete or hand it back.
	Parked bool
	// ScheduledAt is when the step that scheduled the task committed.
	ScheduledAt time.Time
}

// InstanceClaimer is an optional capability: a backend that can claim the
// step of one given instance. A client uses it to apply a termination at
// once when no worker holds the instance (none is running, or none has
// its code): the termination needs no orchestration code.
type InstanceClaimer interface {
	// ClaimInstanceStep claims the step of the instance p names exactly
	// as ClaimOrchestrationStep would if it picked that instance (A1: the
	// attempt number grows before the work item is returned; the messages
	// in the order they became visible; only control messages for a
	// Suspended instance). It returns nil, nil when the instance does
	// not exist, has no visible message, or has a live lease.
	ClaimInstanceStep(ctx context.Context, instanceID string, p *ClaimParams) (*OrchestrationWorkItem, error)
}

// WorkerRegistry is an optional capability: a backend that keeps the
// heartbeats of the workers running against it, so that operators see
// them, live and recently gone, and which orchestrations and activities
// some live worker can run. Heartbeat times come from the store's clock.
type WorkerRegistry interface {
	// UpsertWorker records a heartbeat of worker p.Info.ID: inserted the
	// first time, replaced after (StartedAt is kept from the first). Its
	// HeartbeatAt is the store's clock, unless p.Now is set, and it
	// counts as live until HeartbeatAt + p.TTL. p.Gone records that the
	// worker stopped: it is kept, gone, until pruned.
	UpsertWorker(ctx context.Context, p *UpsertWorkerParams) error
	// ListWorkers returns the workers recorded, newest heartbeat first,
	// with the store's clock.
	ListWorkers(ctx context.Context, p *ListWorkersParams) (*WorkerList, error)
	// PruneWorkers deletes the workers whose last heartbeat is older than
	// p.Before and returns how many it deleted.
	PruneWorkers(ctx context.Context, p *PruneWorkersParams) (int, error)
}

// WorkerInfo is a worker's heartbeat record.
type WorkerInfo struct {
	// ID identifies one run of a worker (Worker.Start); Name is
	// WorkerOptions.Name, the lease owner its claims record.
	ID   string
	Name string
	Host string
	PID  int
	// Version is the build of the program that runs the worker.
	Version string
	// Orchestrations, Activities and Entities are the names it registers,
	// sorted.
	Orchestrations []string
	Activities     []string
	Entities       []string
	// The worker's handler slots and how many were busy at the heartbeat.
	OrchestrationSlots int
	OrchestrationBusy  int
	ActivitySlots      int
	ActivityBusy       int
	// Stopping is set from the moment Stop is called until the worker's
	// in-flight work has finished.
	Stopping bool
	// Set by the backend: StartedAt (the first heartbeat), HeartbeatAt
	// (the last), ExpiresAt (HeartbeatAt plus its TTL: the worker is live
	// until then unless gone) and GoneAt (when it stopped; zero while it
	// runs).
	StartedAt   time.Time
	HeartbeatAt time.Time
	ExpiresAt   time.Time
	GoneAt      time.Time
}

// Live reports whether the worker is running at now: its last heartbeat
// has not expired and it has not stopped.
func (w *WorkerInfo) Live(now time.Time) bool {
	return w.GoneAt.IsZero() && w.ExpiresAt.After(now)
}

// UpsertWorkerParams are the arguments of WorkerRegistry.UpsertWorker.
type UpsertWorkerParams struct {
	Info *WorkerInfo
	// TTL is how long the heartbeat keeps the worker live.
	TTL time.Duration
	// Gone records that the worker has stopped.
	Gone bool
	// Now is the heartbeat's time; zero means the store's clock.
	Now time.Time
}

// Validate checks the params of UpsertWorker.
func (p *UpsertWorkerParams) Validate() error {
	switch {
	case p == nil || p.Info == nil:
		return errors.New("upsert worker: nil params or info")
	case p.Info.ID == "":
		return errors.New("upsert worker: empty worker ID")
	case len(p.Info.ID) > 512 || len(p.Info.Name) > 512 || len(p.Info.Host) > 512 || len(p.Info.Version) > 512:
		return fmt.Errorf("upsert worker %q: ID, name, host and version are limited to 512 bytes", truncate(p.Info.ID, 64))
	case p.TTL <= 0 && !p.Gone:
		return fmt.Errorf("upsert worker %q: TTL %v: must be positive", p.Info.ID, p.TTL)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ListWorkersParams are the arguments of WorkerRegistry.ListWorkers.
type ListWorkersParams struct {
	// Now is the time Live is judged at; zero means the store's clock.
	Now time.Time
}

// WorkerList is the answer of ListWorkers.
type WorkerList struct {
	Workers []*WorkerInfo
	// Now is the store's clock (or ListWorkersParams.Now) when read.
	Now time.Time
}

// PruneWorkersParams are the arguments of WorkerRegistry.PruneWorkers.
type PruneWorkersParams struct {
	// Before: workers whose last heartbeat is older are deleted; required.
	Before time.Time
}

// Validate checks that p names the time to prune before.
func (p *PruneWorkersParams) Validate() error {
	if p == nil || p.Before.IsZero() {
		return errors.New("PruneWorkersParams.Before is required")
	}
	return nil
}
