package duro

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/replay"
)

// InFlight is what an instance has in flight, for operators: its current
// orchestration step, its activity calls that have not finished, its
// durable timers, and why no worker may be able to make progress. Read it
// with Client.InFlight.
type InFlight struct {
	InstanceID string
	Name       string
	Status     Status
	// Now is the store's clock when the view was read: compare lease and
	// retry times to it, not to the reader's clock.
	Now time.Time
	// Step is the instance's orchestration step.
	Step StepInFlight
	// Activities are the activity calls that have not finished, by task
	// ID: being delivered, waiting for a worker or for a retry, or
	// completed with the result not processed yet.
	Activities []*ActivityInFlight
	// Timers are the durable timers that have not fired, by task ID.
	Timers []*TimerInFlight
	// Blocked lists what keeps the instance from progressing that the
	// workers' heartbeats show: no live worker registers its
	// orchestration, or an activity it waits for. Empty when nothing is
	// known to block it, or when WorkersKnown is false.
	Blocked []string
	// WorkersKnown says whether the store keeps worker heartbeats
	// (backend.WorkerRegistry); without them Blocked stays empty and
	// OwnerLive is false.
	WorkersKnown bool
	// Detailed says whether the store showed its leases and tasks
	// (backend.InFlightReader). Without it, the view comes from the
	// history alone: the activities with no attempt, owner or lease.
	Detailed bool
}

// StepState says where an instance's orchestration step is.
type StepState string

// Step states.
const (
	// StepIdle: no message waits; the instance waits for its activities,
	// timers, events or children.
	StepIdle StepState = "Idle"
	// StepReady: messages wait and any worker with the orchestration's
	// code may claim the step now.
	StepReady StepState = "Ready"
	// StepWaiting: the messages that wait are not visible yet (a timer);
	// the step is claimable from NextMessageAt.
	StepWaiting StepState = "Waiting"
	// StepRunning: a worker holds the step's lease.
	StepRunning StepState = "Running"
	// StepLeaseExpired: the worker that claimed the step let its lease
	// lapse (it may have died); the next claim delivers the step again.
	StepLeaseExpired StepState = "LeaseExpired"
	// StepHandedBack: a worker handed the step back; it is claimable
	// again from RetryAt.
	StepHandedBack StepState = "HandedBack"
)

// StepInFlight is an instance's orchestration step.
type StepInFlight struct {
	State StepState
	// Attempt is the newest step delivery's number; Deliveries counts the
	// deliveries since the last committed step (more than 1 when earlier
	// ones crashed or were handed back: the poison count).
	Attempt    int64
	Deliveries int
	// Owner holds, or held until LeaseExpiresAt, the step's lease;
	// OwnerLive says whether a live worker of that name heartbeats.
	Owner          string
	OwnerLive      bool
	LeaseExpiresAt time.Time
	// RetryAt is when a step handed back may be claimed again.
	RetryAt time.Time
	// Messages counts the inbox messages waiting for the step;
	// NextMessageAt is when the next of them becomes visible (zero: now).
	Messages      int
	NextMessageAt time.Time
}

// ActivityState says where an activity call is.
type ActivityState string

// Activity states.
const (
	// ActivityWaiting: the task waits for a worker that registers the
	// activity to claim it.
	ActivityWaiting ActivityState = "Waiting"
	// ActivityRunning: a delivery holds the task's lease.
	ActivityRunning ActivityState = "Running"
	// ActivityLeaseExpired: the delivery's lease lapsed (its worker may
	// have died); the next claim delivers the task again, attempt + 1.
	ActivityLeaseExpired ActivityState = "LeaseExpired"
	// ActivityDelayed: the task was handed back and waits until
	// NextAttemptAt to be delivered again.
	ActivityDelayed ActivityState = "Delayed"
	// ActivityRetryWait: the call failed and its retry policy waits on a
	// durable timer until NextAttemptAt before the next try.
	ActivityRetryWait ActivityState = "RetryWait"
	// ActivityResultPending: the task completed; the orchestration's next
	// step processes its result.
	ActivityResultPending ActivityState = "ResultPending"
	// ActivityAwaitingDecision: an at-most-once delivery found a possible
	// duplicate and the instance is suspended for an operator's decision.
	ActivityAwaitingDecision ActivityState = "AwaitingDecision"
	// ActivityParked: the instance finished while a delivery held the
	// task; it is never delivered again, and that delivery's result goes
	// to the history as a late result.
	ActivityParked ActivityState = "Parked"
)

// ActivityInFlight is one activity call that has not finished.
type ActivityInFlight struct {
	TaskID  int
	Name    string
	State   ActivityState
	Options backend.ActivityOptions
	// Attempt is the newest delivery's number (0 before the first).
	Attempt int
	// Owner holds, or held until LeaseExpiresAt, the delivery's lease;
	// OwnerLive says whether a live worker of that name heartbeats.
	Owner          string
	OwnerLive      bool
	LeaseExpiresAt time.Time
	// StartedAttempt is the newest delivery that marked itself started
	// before running at-most-once code (0: none did), so a delivery after
	// it is a possible duplicate.
	StartedAttempt int
	// ClaimedAt is when the newest delivery was claimed; ScheduledAt when
	// the step that enqueued the task committed.
	ClaimedAt   time.Time
	ScheduledAt time.Time
	// NextAttemptAt is when the next delivery or try may start: for a
	// Delayed task, or a RetryWait call's retry timer.
	NextAttemptAt time.Time
	// LastFailure is the failure of the try before this one (the one a
	// retry policy retries, or the failure a RetryWait call waits after).
	LastFailure *Failure
}

// TimerInFlight is a durable timer that has not fired.
type TimerInFlight struct {
	TaskID int
	FireAt time.Time
	// RetryOf names the activity whose failed try the timer delays the
	// retry of (a RetryPolicy), empty for other timers.
	RetryOf string
}

// WorkerInfo is a worker's heartbeat, as the store keeps it: who it is,
// what it registers, how busy it was, and when it was last seen.
type WorkerInfo = backend.WorkerInfo

// WorkerList is the answer of Client.Workers: the workers the store knows
// of, newest heartbeat first, and the store's clock to judge them by
// (WorkerInfo.Live).
type WorkerList = backend.WorkerList

// Workers returns the workers that recorded heartbeats in the store, live
// and recently gone (see WorkerOptions.HeartbeatInterval). It returns an
// error wrapping errors.ErrUnsupported when the store keeps none.
func (c *Client) Workers(ctx context.Context) (*WorkerList, error) {
	r, ok := c.be.(backend.WorkerRegistry)
	if !ok {
		return nil, fmt.Errorf("duro: workers: the store keeps no worker heartbeats: %w", errors.ErrUnsupported)
	}
	l, err := r.ListWorkers(ctx, &backend.ListWorkersParams{})
	if err != nil {
		return nil, fmt.Errorf("duro: workers: %w", err)
	}
	return l, nil
}

// InFlight returns what the instance has in flight (see InFlight), or
// ErrInstanceNotFound. It reads the instance, its history, the store's
// leases and tasks (when the store shows them, backend.InFlightReader) and
// the workers' heartbeats (backend.WorkerRegistry).
func (c *Client) InFlight(ctx context.Context, id string) (*InFlight, error) {
	bi, err := c.be.GetInstance(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("duro: in-flight work of %q: %w", id, err)
	}
	hist, err := c.be.GetHistory(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("duro: in-flight work of %q: %w", id, err)
	}
	var rows *backend.InFlight
	if r, ok := c.be.(backend.InFlightReader); ok {
		rows, err = r.InFlight(ctx, id)
		switch {
		case errors.Is(err, errors.ErrUnsupported):
			rows = nil
		case err != nil:
			return nil, fmt.Errorf("duro: in-flight work of %q: %w", id, err)
		}
	}
	var workers *backend.WorkerList
	if r, ok := c.be.(backend.WorkerRegistry); ok {
		workers, err = r.ListWorkers(ctx, &backend.ListWorkersParams{})
		switch {
		case errors.Is(err, errors.ErrUnsupported):
			workers = nil
		case err != nil:
			return nil, fmt.Errorf("duro: in-flight work of %q: %w", id, err)
		}
	}
	return buildInFlight(bi, hist, rows, workers), nil
}

// buildInFlight joins an instance's history with its stored leases and
// tasks (rows, nil if the store shows none) and the workers' heartbeats
// (nil if the store keeps none).
func buildInFlight(bi *backend.Instance, hist []*backend.Event, rows *backend.InFlight, workers *backend.WorkerList) *InFlight {
	f := &InFlight{InstanceID: bi.ID, Name: bi.Name, Status: bi.Status, Detailed: rows != nil, WorkersKnown: workers != nil}
	switch {
	case rows != nil:
		f.Now = rows.Now
	case workers != nil:
		f.Now = workers.Now
	default:
		f.Now = time.Now().UTC()
	}
	live := map[string]bool{}            // worker names
	runs := map[string]map[string]bool{} // kind → registered names of live workers
	for _, k := range []string{"orchestration", "activity", "entity"} {
		runs[k] = map[string]bool{}
	}
	if workers != nil {
		for _, w := range workers.Workers {
			if !w.Live(f.Now) {
				continue
			}
			live[w.Name] = true
			for k, names := range map[string][]string{"orchestration": w.Orchestrations, "activity": w.Activities, "entity": w.Entities} {
				for _, n := range names {
					runs[k][n] = true
				}
			}
		}
	}

	// The step.
	if rows != nil {
		s := &f.Step
		s.Attempt, s.Deliveries, s.Messages, s.NextMessageAt = rows.Step.Attempt, rows.Step.Deliveries, rows.Messages, rows.NextMessageAt
		exp := rows.Step.ExpiresAt
		switch {
		case rows.Step.Owner != "" && exp.After(f.Now):
			s.State, s.Owner, s.LeaseExpiresAt = StepRunning, rows.Step.Owner, exp
		case rows.Step.Owner != "" && rows.Messages > 0 && !bi.Status.IsTerminal():
			s.State, s.Owner, s.LeaseExpiresAt = StepLeaseExpired, rows.Step.Owner, exp
		case rows.Messages > 0 && exp.After(f.Now):
			s.State, s.RetryAt = StepHandedBack, exp
		case rows.Messages > 0 && rows.NextMessageAt.After(f.Now):
			s.State = StepWaiting
		case rows.Messages > 0:
			s.State = StepReady
		default:
			s.State = StepIdle
		}
		s.OwnerLive = s.Owner != "" && live[s.Owner]
	}

	// The activity calls and timers history has not seen finish.
	h := scanCalls(hist)
	awaiting := map[int]bool{}
	if bi.Suspension != nil {
		for _, pd := range bi.Suspension.Pending {
			awaiting[pd.TaskID] = true
		}
	}
	tasks := map[int]*backend.TaskState{}
	var others []*backend.TaskState // of another execution
	if rows != nil {
		for _, t := range rows.Tasks {
			if t.ExecutionID == bi.ExecutionID {
				tasks[t.TaskID] = t
			} else {
				others = append(others, t)
			}
		}
	}
	for _, id := range h.order {
		c := h.calls[id]
		if c.done {
			continue
		}
		a := &ActivityInFlight{TaskID: id, Name: c.name, LastFailure: c.lastFailure, ScheduledAt: c.at}
		if c.opts != nil {
			a.Options = *c.opts
		}
		switch t := tasks[id]; {
		case t != nil:
			delete(tasks, id)
			fromRow(a, t, f.Now, live)
		case awaiting[id]:
			a.State, a.Attempt = ActivityAwaitingDecision, c.attempt
		case rows != nil:
			a.State = ActivityResultPending
		default:
			a.State = "" // unknown without the store's rows
		}
		f.Activities = append(f.Activities, a)
	}
	// Tasks history does not show (another execution's, or a task whose
	// scheduling event is missing) are listed as the store has them.
	for _, t := range tasks {
		others = append(others, t)
	}
	for _, t := range others {
		a := &ActivityInFlight{TaskID: t.TaskID, Name: t.Name, Options: t.Options, ScheduledAt: t.ScheduledAt}
		fromRow(a, t, f.Now, live)
		f.Activities = append(f.Activities, a)
	}
	for _, id := range h.timerOrder {
		tm := h.timers[id]
		if tm.fired {
			continue
		}
		f.Timers = append(f.Timers, &TimerInFlight{TaskID: id, FireAt: tm.fireAt, RetryOf: tm.retryOf})
		if tm.retryOf != "" {
			f.Activities = append(f.Activities, &ActivityInFlight{TaskID: tm.failedTask, Name: tm.retryOf,
				State: ActivityRetryWait, Attempt: tm.failedAttempt, NextAttemptAt: tm.fireAt, LastFailure: tm.failure,
				Options: tm.opts})
		}
	}
	slices.SortStableFunc(f.Activities, func(a, b *ActivityInFlight) int { return a.TaskID - b.TaskID })

	// What no live worker can run.
	if workers != nil && !bi.Status.IsTerminal() {
		if len(live) == 0 {
			f.Blocked = append(f.Blocked, "no worker is running (none has recorded a live heartbeat)")
		} else {
			kind, name := "orchestration", bi.Name
			if e := replay.EntityName(bi.ID); e != "" {
				kind, name = "entity", e
			}
			if !runs[kind][name] {
				f.Blocked = append(f.Blocked, fmt.Sprintf("no live worker registers %s %q", kind, name))
			}
			seen := map[string]bool{}
			for _, a := range f.Activities {
				switch a.State {
				case ActivityWaiting, ActivityLeaseExpired, ActivityDelayed, ActivityRetryWait:
				default:
					continue
				}
				if !runs["activity"][a.Name] && !seen[a.Name] {
					seen[a.Name] = true
					f.Blocked = append(f.Blocked, fmt.Sprintf("no live worker registers activity %q", a.Name))
				}
			}
		}
	}
	return f
}

// fromRow fills a's delivery state from its stored task.
func fromRow(a *ActivityInFlight, t *backend.TaskState, now time.Time, live map[string]bool) {
	a.Attempt, a.ClaimedAt, a.StartedAttempt = t.Attempt, t.ClaimedAt, t.StartedAttempt
	if !t.ScheduledAt.IsZero() {
		a.ScheduledAt = t.ScheduledAt
	}
	switch {
	case t.Parked:
		a.State, a.Owner, a.LeaseExpiresAt = ActivityParked, t.Owner, t.ExpiresAt
	case t.Owner != "" && t.ExpiresAt.After(now):
		a.State, a.Owner, a.LeaseExpiresAt = ActivityRunning, t.Owner, t.ExpiresAt
	case t.Owner != "":
		a.State, a.Owner, a.LeaseExpiresAt = ActivityLeaseExpired, t.Owner, t.ExpiresAt
	case t.VisibleAt.After(now):
		a.State, a.NextAttemptAt = ActivityDelayed, t.VisibleAt
	default:
		a.State = ActivityWaiting
	}
	a.OwnerLive = a.Owner != "" && live[a.Owner]
}

// calls is what scanCalls finds in a history.
type calls struct {
	calls      map[int]*call
	order      []int
	timers     map[int]*timer
	timerOrder []int
}

type call struct {
	name        string
	opts        *backend.ActivityOptions
	at          time.Time
	done        bool
	attempt     int // of the delivery that produced the last outcome
	lastFailure *Failure
}

type timer struct {
	fireAt time.Time
	fired  bool
	// retryOf, failedTask, failedAttempt, failure and opts describe the
	// failed activity try whose retry the timer delays.
	retryOf       string
	failedTask    int
	failedAttempt int
	failure       *Failure
	opts          backend.ActivityOptions
}

// scanCalls walks a history for its activity calls and timers. A retry
// policy shows in history as a failed try, then (in the step that
// processed the failure) a timer, then (in the step that processed the
// timer) a new call of the same activity: such a timer is a retry of
// that activity, and such a call carries the failure it retries.
func scanCalls(hist []*backend.Event) *calls {
	c := &calls{calls: map[int]*call{}, timers: map[int]*timer{}}
	type failed struct {
		task int
		ev   *backend.Event
	}
	var stepFailures []failed // TaskFailed events of the current step
	var stepRetries []*timer  // retry timers fired in the current step
	for _, e := range hist {
		switch e.Type {
		case backend.EventOrchestratorStarted:
			stepFailures, stepRetries = stepFailures[:0], stepRetries[:0]
		case backend.EventTaskScheduled:
			k := &call{name: e.Name, opts: e.Activity, at: e.Timestamp}
			for i, r := range stepRetries {
				if r.retryOf == e.Name {
					k.lastFailure = r.failure
					stepRetries = slices.Delete(stepRetries, i, i+1)
					break
				}
			}
			if _, seen := c.calls[e.TaskID]; !seen {
				c.order = append(c.order, e.TaskID)
			}
			c.calls[e.TaskID] = k
		case backend.EventTaskCompleted, backend.EventTaskFailed:
			k := c.calls[e.TaskID]
			if k == nil {
				continue
			}
			k.done, k.attempt = true, e.Attempt
			if e.Type == backend.EventTaskFailed {
				k.lastFailure = e.Failure
				stepFailures = append(stepFailures, failed{e.TaskID, e})
			}
		case backend.EventTaskDuplicate:
			if k := c.calls[e.TaskID]; k != nil {
				k.attempt = e.Attempt
			}
		case backend.EventExecutionRewound:
			if e.Rewind != nil {
				for _, id := range e.Rewind.Tasks {
					if k := c.calls[id]; k != nil {
						k.done = false
					}
					if t := c.timers[id]; t != nil {
						t.fired = false
					}
				}
			}
		case backend.EventTimerCreated:
			t := &timer{fireAt: e.FireAt}
			if len(stepFailures) > 0 {
				f := stepFailures[0]
				stepFailures = stepFailures[1:]
				t.retryOf, t.failedTask, t.failedAttempt, t.failure = c.calls[f.task].name, f.task, f.ev.Attempt, f.ev.Failure
				if o := c.calls[f.task].opts; o != nil {
					t.opts = *o
				}
			}
			if _, seen := c.timers[e.TaskID]; !seen {
				c.timerOrder = append(c.timerOrder, e.TaskID)
			}
			c.timers[e.TaskID] = t
		case backend.EventTimerFired:
			if t := c.timers[e.TaskID]; t != nil {
				t.fired = true
				if t.retryOf != "" {
					stepRetries = append(stepRetries, t)
				}
			}
		}
	}
	return c
}
