package duro

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ActivityContext is what activity code receives: a context.Context that is
// cancelled when the worker stops or the delivery loses its lease, plus what
// the delivery knows about itself.
type ActivityContext interface {
	context.Context
	// InstanceID is the orchestration instance that scheduled the activity.
	InstanceID() string
	// TaskID is the task's position in that orchestration's history.
	TaskID() int
	// Name is the activity's registered name.
	Name() string
	// Attempt is this delivery's number, starting at 1. It is durably
	// recorded before the code runs and no two deliveries of the same task
	// share it, across crashes, lease expiry and concurrent workers. Every
	// claim takes a number, including claims whose code never ran (a
	// worker that stopped, or that lacked the activity, handed the task
	// back), so a value above 1 alone does not mean the code ran before:
	// MayBeDuplicate says that.
	Attempt() int
	// IsFirstAttempt reports Attempt() == 1: no delivery of the task was
	// claimed before this one.
	IsFirstAttempt() bool
	// MayBeDuplicate reports whether an earlier delivery of the same call
	// may have started the code, so that this one could repeat its
	// effects. For an at-most-once activity it is exact up to an instant:
	// a delivery marks itself started, durably, just before the code runs,
	// and only marked deliveries count (a crash between the mark and the
	// code is counted, conservatively). Such a delivery runs only when an
	// operator approved it or a ReconcileFunc decided to run it again. For
	// an at-least-once activity, whose deliveries do not mark, every
	// earlier delivery counts unless it was handed back before the code
	// ran. An operator's retry decision and a rewind, which schedule the
	// call again, count the earlier task's deliveries as possibly started.
	MayBeDuplicate() bool
	// PreviousDeliveryAt is when the previous delivery of the task was
	// claimed, by the store's clock (zero on the first attempt, and on the
	// first delivery of a call enqueued again by a rewind or an operator's
	// retry decision).
	PreviousDeliveryAt() time.Time
	// Logger returns the worker's logger with the task's attributes.
	Logger() *slog.Logger
	// Heartbeat renews the delivery's lease now and, if details is not nil,
	// records them (encoded with the worker's Codec) as progress that a
	// later delivery of the same task reads with HeartbeatDetails. Both are
	// one write, fenced by the attempt number: when it returns nil the
	// details are committed (durable as the store's commits are), and a
	// delivery that a newer one superseded records nothing and gets
	// ErrLeaseLost (its context is then cancelled). The worker renews the
	// lease on its own while the code runs, without touching the details;
	// Heartbeat costs a write per call, so call it per batch of work or
	// every few seconds rather than per tiny item. Details belong to the
	// task: a redelivery (a crash, a lapsed lease, a worker that stopped)
	// reads them, a RetryPolicy's next try is a new task and starts
	// without.
	Heartbeat(details any) error
	// HeartbeatDetails decodes into ptr the details of the last heartbeat an
	// earlier delivery of the task recorded, and reports whether there were
	// any. They are read when the delivery is claimed: this delivery's own
	// heartbeats do not change them.
	HeartbeatDetails(ptr any) (bool, error)
	// SignalEntity sends an operation to an entity now. The signal's ID is
	// derived from (instance, execution, task, the signal's ordinal within
	// this delivery), so a re-executed activity that sends the same signals
	// in the same order sends the same IDs, and the entity applies each once.
	SignalEntity(id EntityID, op string, input any) error
}

type activityContext struct {
	context.Context
	instanceID string
	taskID     int
	name       string
	attempt    int
	previous   time.Time
	// logger is the code's logger; if run is set, run's (built on first
	// use) instead.
	logger *slog.Logger
	// run is the activity delivery the context belongs to, which also
	// heartbeats and signals; nil for an entity operation's reconciler.
	run     *activityRun
	p       payloads
	details []byte
	// heartbeat records a heartbeat when run is nil.
	heartbeat func(details []byte) error
	// signal sends an entity signal when run is nil; nil outside activities.
	signal  func(id EntityID, op string, input any, msgID string) error
	execID  string
	signals int
	// maybeDup is MayBeDuplicate's answer.
	maybeDup bool
}

func (a *activityContext) SignalEntity(id EntityID, op string, input any) error {
	if a.run == nil && a.signal == nil {
		return errors.New("duro: SignalEntity is not available here")
	}
	a.signals++
	msgID := fmt.Sprintf("sig/%s/%s/%d/%d", a.instanceID, a.execID, a.taskID, a.signals)
	if a.run != nil {
		return a.run.signal(id, op, input, msgID)
	}
	return a.signal(id, op, input, msgID)
}

func (a *activityContext) InstanceID() string            { return a.instanceID }
func (a *activityContext) TaskID() int                   { return a.taskID }
func (a *activityContext) Name() string                  { return a.name }
func (a *activityContext) Attempt() int                  { return a.attempt }
func (a *activityContext) IsFirstAttempt() bool          { return a.attempt == 1 }
func (a *activityContext) MayBeDuplicate() bool          { return a.maybeDup }
func (a *activityContext) PreviousDeliveryAt() time.Time { return a.previous }
func (a *activityContext) Logger() *slog.Logger {
	if a.run != nil {
		return a.run.logger()
	}
	return a.logger
}

func (a *activityContext) Heartbeat(details any) error {
	var b []byte
	if details != nil {
		var err error
		if b, err = a.p.encode("heartbeat details", details); err != nil {
			return err
		}
	}
	if a.run != nil {
		return a.run.renew(b)
	}
	return a.heartbeat(b)
}

func (a *activityContext) HeartbeatDetails(ptr any) (bool, error) {
	if len(a.details) == 0 {
		return false, nil
	}
	return true, a.p.decode("heartbeat details", a.details, ptr)
}
