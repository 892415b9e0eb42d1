package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// InFlight is what an instance has in flight: its orchestration step,
// its activity calls that have not finished, its timers, and what keeps
// it from progressing (see duro.InFlight). GET /api/v1/instances/{id}
// carries it.
type InFlight struct {
	// Now is the store's clock when read: lease and retry times compare
	// to it.
	Now        time.Time           `json:"now"`
	Step       StepInFlight        `json:"step"`
	Activities []*ActivityInFlight `json:"activities"`
	Timers     []*TimerInFlight    `json:"timers,omitempty"`
	// Blocked says why no worker may be able to make progress, e.g.
	// `no live worker registers orchestration "Foo"`.
	Blocked []string `json:"blocked,omitempty"`
	// WorkersKnown: the store keeps worker heartbeats; without them
	// blocked is empty and ownerLive false.
	WorkersKnown bool `json:"workersKnown"`
	// Detailed: the store showed its leases and tasks; without it only
	// what the history says is shown.
	Detailed bool `json:"detailed"`
}

// StepInFlight is an instance's orchestration step.
type StepInFlight struct {
	// State is Idle, Ready, Waiting, Running, LeaseExpired or HandedBack.
	State          duro.StepState `json:"state,omitempty"`
	Attempt        int64          `json:"attempt"`
	Deliveries     int            `json:"deliveries"`
	Owner          string         `json:"owner,omitempty"`
	OwnerLive      bool           `json:"ownerLive,omitempty"`
	LeaseExpiresAt time.Time      `json:"leaseExpiresAt,omitzero"`
	RetryAt        time.Time      `json:"retryAt,omitzero"`
	Messages       int            `json:"messages"`
	NextMessageAt  time.Time      `json:"nextMessageAt,omitzero"`
}

// ActivityInFlight is an activity call that has not finished.
type ActivityInFlight struct {
	TaskID   int    `json:"taskId"`
	Activity string `json:"activity"`
	// State is Waiting, Running, LeaseExpired, Delayed, RetryWait,
	// ResultPending, AwaitingDecision or Parked.
	State          duro.ActivityState      `json:"state,omitempty"`
	Options        backend.ActivityOptions `json:"options"`
	Attempt        int                     `json:"attempt"`
	StartedAttempt int                     `json:"startedAttempt,omitempty"`
	Owner          string                  `json:"owner,omitempty"`
	OwnerLive      bool                    `json:"ownerLive,omitempty"`
	LeaseExpiresAt time.Time               `json:"leaseExpiresAt,omitzero"`
	ClaimedAt      time.Time               `json:"claimedAt,omitzero"`
	ScheduledAt    time.Time               `json:"scheduledAt,omitzero"`
	NextAttemptAt  time.Time               `json:"nextAttemptAt,omitzero"`
	LastFailure    *Failure                `json:"lastFailure,omitempty"`
}

// TimerInFlight is a durable timer that has not fired.
type TimerInFlight struct {
	TaskID  int       `json:"taskId"`
	FireAt  time.Time `json:"fireAt"`
	RetryOf string    `json:"retryOf,omitempty"`
}

// NewInFlight converts an instance's in-flight view (nil for nil).
func NewInFlight(f *duro.InFlight) *InFlight {
	if f == nil {
		return nil
	}
	s := f.Step
	out := &InFlight{Now: utc(f.Now), Blocked: f.Blocked, WorkersKnown: f.WorkersKnown, Detailed: f.Detailed,
		Activities: make([]*ActivityInFlight, 0, len(f.Activities)),
		Step: StepInFlight{State: s.State, Attempt: s.Attempt, Deliveries: s.Deliveries, Owner: s.Owner, OwnerLive: s.OwnerLive,
			LeaseExpiresAt: utc(s.LeaseExpiresAt), RetryAt: utc(s.RetryAt), Messages: s.Messages, NextMessageAt: utc(s.NextMessageAt)},
	}
	for _, a := range f.Activities {
		out.Activities = append(out.Activities, &ActivityInFlight{TaskID: a.TaskID, Activity: a.Name, State: a.State,
			Options: a.Options, Attempt: a.Attempt, StartedAttempt: a.StartedAttempt, Owner: a.Owner, OwnerLive: a.OwnerLive,
			LeaseExpiresAt: utc(a.LeaseExpiresAt), ClaimedAt: utc(a.ClaimedAt), ScheduledAt: utc(a.ScheduledAt),
			NextAttemptAt: utc(a.NextAttemptAt), LastFailure: NewFailure(a.LastFailure)})
	}
	for _, tm := range f.Timers {
		out.Timers = append(out.Timers, &TimerInFlight{TaskID: tm.TaskID, FireAt: utc(tm.FireAt), RetryOf: tm.RetryOf})
	}
	return out
}

// Worker is a worker's last heartbeat.
type Worker struct {
	ID                 string    `json:"id"`
	Name               string    `json:"name"`
	Host               string    `json:"host,omitempty"`
	PID                int       `json:"pid,omitempty"`
	Version            string    `json:"version,omitempty"`
	Orchestrations     []string  `json:"orchestrations"`
	Activities         []string  `json:"activities"`
	Entities           []string  `json:"entities"`
	OrchestrationSlots int       `json:"orchestrationSlots"`
	OrchestrationBusy  int       `json:"orchestrationBusy"`
	ActivitySlots      int       `json:"activitySlots"`
	ActivityBusy       int       `json:"activityBusy"`
	Stopping           bool      `json:"stopping,omitempty"`
	Live               bool      `json:"live"`
	StartedAt          time.Time `json:"startedAt"`
	HeartbeatAt        time.Time `json:"heartbeatAt"`
	ExpiresAt          time.Time `json:"expiresAt"`
	GoneAt             time.Time `json:"goneAt,omitzero"`
}

// WorkerList is the answer of GET /api/v1/workers: the workers that
// recorded heartbeats, live and recently gone, newest heartbeat first.
type WorkerList struct {
	Workers []*Worker `json:"workers"`
	// Now is the store's clock, which live is judged by.
	Now time.Time `json:"now"`
}

// NewWorkerList converts the SDK's list of workers.
func NewWorkerList(l *duro.WorkerList) *WorkerList {
	out := &WorkerList{Now: utc(l.Now), Workers: make([]*Worker, 0, len(l.Workers))}
	list := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	for _, w := range l.Workers {
		out.Workers = append(out.Workers, &Worker{ID: w.ID, Name: w.Name, Host: w.Host, PID: w.PID, Version: w.Version,
			Orchestrations: list(w.Orchestrations), Activities: list(w.Activities), Entities: list(w.Entities),
			OrchestrationSlots: w.OrchestrationSlots, OrchestrationBusy: w.OrchestrationBusy,
			ActivitySlots: w.ActivitySlots, ActivityBusy: w.ActivityBusy, Stopping: w.Stopping, Live: w.Live(l.Now),
			StartedAt: utc(w.StartedAt), HeartbeatAt: utc(w.HeartbeatAt), ExpiresAt: utc(w.ExpiresAt), GoneAt: utc(w.GoneAt)})
	}
	return out
}

// workers serves GET /api/v1/workers. A store that keeps no heartbeats
// lists none.
func (s *Server) workers(w http.ResponseWriter, r *http.Request) {
	l, err := s.c.Workers(r.Context())
	if errors.Is(err, errors.ErrUnsupported) {
		l, err = &duro.WorkerList{Now: time.Now()}, nil
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, NewWorkerList(l))
}
