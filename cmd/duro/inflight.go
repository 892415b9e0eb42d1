package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/server"
)

// renderInFlight writes the "In flight" part of status: the step, the
// activities that have not finished, the timers, and what blocks the
// instance. f's times are judged by the store's clock, f.Now.
func renderInFlight(w io.Writer, f *duro.InFlight) error {
	type row struct{ k, v string }
	var rows []row
	if f.Detailed && !f.Status.IsTerminal() {
		rows = append(rows, row{"Step", stepText(f)})
	}
	for _, a := range f.Activities {
		rows = append(rows, row{fmt.Sprintf("Activity #%d", a.TaskID), activityText(f, a)})
	}
	for _, tm := range f.Timers {
		s := "fires " + whenText(tm.FireAt, f.Now)
		if tm.RetryOf != "" {
			s += " (the retry of " + tm.RetryOf + ")"
		}
		rows = append(rows, row{fmt.Sprintf("Timer #%d", tm.TaskID), s})
	}
	for _, b := range f.Blocked {
		rows = append(rows, row{"Blocked", b})
	}
	if len(rows) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("In flight:\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-14s %s\n", r.k+":", r.v)
	}
	if !f.WorkersKnown {
		b.WriteString("  (the store keeps no worker heartbeats: whether lease owners are alive is unknown)\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// whenText renders t for people, with how far from now it is.
func whenText(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	switch {
	case d > 0:
		return fmt.Sprintf("%s (in %s)", formatTime(t), d)
	case d < 0:
		return fmt.Sprintf("%s (%s ago)", formatTime(t), -d)
	}
	return formatTime(t) + " (now)"
}

// ownerText names a lease owner and whether a live worker has its name.
func ownerText(owner string, live, known bool) string {
	switch {
	case !known:
		return owner
	case live:
		return owner + " (live)"
	}
	return owner + " (no live worker of that name)"
}

func stepText(f *duro.InFlight) string {
	s := f.Step
	var msg string
	switch s.State {
	case duro.StepIdle:
		msg = "idle: no message waits (the instance waits for its activities, timers or events)"
	case duro.StepReady:
		msg = fmt.Sprintf("%d %s waiting for a worker to run the next step", s.Messages, plural(s.Messages, "message", "messages"))
	case duro.StepWaiting:
		msg = fmt.Sprintf("%d %s waiting; the next becomes visible %s", s.Messages, plural(s.Messages, "message", "messages"),
			whenText(s.NextMessageAt, f.Now))
	case duro.StepRunning:
		msg = fmt.Sprintf("running on %s, lease until %s", ownerText(s.Owner, s.OwnerLive, f.WorkersKnown), whenText(s.LeaseExpiresAt, f.Now))
	case duro.StepLeaseExpired:
		msg = fmt.Sprintf("the lease of %s lapsed %s; the next claim runs the step again",
			ownerText(s.Owner, s.OwnerLive, f.WorkersKnown), whenText(s.LeaseExpiresAt, f.Now))
	case duro.StepHandedBack:
		msg = "handed back; claimable again " + whenText(s.RetryAt, f.Now)
	}
	msg += fmt.Sprintf(" (step attempt %d", s.Attempt)
	if s.Deliveries > 1 {
		msg += fmt.Sprintf(", %d deliveries since the last commit", s.Deliveries)
	}
	return msg + ")"
}

func activityText(f *duro.InFlight, a *duro.ActivityInFlight) string {
	s := a.Name + " [" + guaranteeText(a) + "] "
	switch a.State {
	case duro.ActivityWaiting:
		if a.Attempt == 0 {
			s += "waiting for its first delivery"
		} else {
			s += fmt.Sprintf("waiting for delivery %d", a.Attempt+1)
		}
	case duro.ActivityRunning:
		s += fmt.Sprintf("attempt %d running on %s, lease until %s", a.Attempt,
			ownerText(a.Owner, a.OwnerLive, f.WorkersKnown), whenText(a.LeaseExpiresAt, f.Now))
	case duro.ActivityLeaseExpired:
		s += fmt.Sprintf("attempt %d was leased to %s until %s; the next claim delivers it again as attempt %d",
			a.Attempt, ownerText(a.Owner, a.OwnerLive, f.WorkersKnown), whenText(a.LeaseExpiresAt, f.Now), a.Attempt+1)
		if a.Options.AtMostOnce {
			if a.StartedAttempt > 0 {
				s += fmt.Sprintf(", a possible duplicate: attempt %d started its code", a.StartedAttempt)
			} else {
				s += ", not a duplicate: no delivery started its code"
			}
		}
	case duro.ActivityDelayed:
		s += fmt.Sprintf("attempt %d handed back; delivered again %s", a.Attempt, whenText(a.NextAttemptAt, f.Now))
	case duro.ActivityRetryWait:
		s += fmt.Sprintf("attempt %d failed; the retry policy tries again %s", a.Attempt, whenText(a.NextAttemptAt, f.Now))
	case duro.ActivityResultPending:
		s += "completed; the orchestration's next step takes its result"
	case duro.ActivityAwaitingDecision:
		s += fmt.Sprintf("attempt %d found a possible duplicate: waiting for your decision (duro decisions)", a.Attempt)
	case duro.ActivityParked:
		s += fmt.Sprintf("the instance finished while attempt %d ran on %s; its result goes to the history", a.Attempt, a.Owner)
	default:
		s += "not finished (the store shows no delivery details)"
	}
	if a.LastFailure != nil {
		s += "; last failure: " + failureText(a.LastFailure)
	}
	return s
}

func guaranteeText(a *duro.ActivityInFlight) string {
	if a.Options.AtMostOnce {
		return "at-most-once"
	}
	return "at-least-once"
}

// InFlight implements instanceAPI through GET /api/v1/instances/{id}.
func (c *remoteClient) InFlight(ctx context.Context, id string) (*duro.InFlight, error) {
	var in server.Instance
	if err := c.call(ctx, http.MethodGet, instPath(id), nil, nil, &in); err != nil {
		return nil, err
	}
	return toSDKInFlight(&in), nil
}

// toSDKInFlight converts the API's in-flight view of in (nil if the server
// sent none).
func toSDKInFlight(in *server.Instance) *duro.InFlight {
	f := in.InFlight
	if f == nil {
		return nil
	}
	s := f.Step
	out := &duro.InFlight{InstanceID: in.ID, Name: in.Name, Status: in.Status, Now: f.Now, Blocked: f.Blocked,
		WorkersKnown: f.WorkersKnown, Detailed: f.Detailed,
		Step: duro.StepInFlight{State: s.State, Attempt: s.Attempt, Deliveries: s.Deliveries, Owner: s.Owner,
			OwnerLive: s.OwnerLive, LeaseExpiresAt: s.LeaseExpiresAt, RetryAt: s.RetryAt, Messages: s.Messages,
			NextMessageAt: s.NextMessageAt}}
	for _, a := range f.Activities {
		out.Activities = append(out.Activities, &duro.ActivityInFlight{TaskID: a.TaskID, Name: a.Activity, State: a.State,
			Options: a.Options, Attempt: a.Attempt, StartedAttempt: a.StartedAttempt, Owner: a.Owner, OwnerLive: a.OwnerLive, LeaseExpiresAt: a.LeaseExpiresAt,
			ClaimedAt: a.ClaimedAt, ScheduledAt: a.ScheduledAt, NextAttemptAt: a.NextAttemptAt,
			LastFailure: toSDKFailure(a.LastFailure)})
	}
	for _, tm := range f.Timers {
		out.Timers = append(out.Timers, &duro.TimerInFlight{TaskID: tm.TaskID, FireAt: tm.FireAt, RetryOf: tm.RetryOf})
	}
	return out
}

// Workers implements instanceAPI through GET /api/v1/workers.
func (c *remoteClient) Workers(ctx context.Context) (*duro.WorkerList, error) {
	var l server.WorkerList
	if err := c.call(ctx, http.MethodGet, "/api/v1/workers", nil, nil, &l); err != nil {
		return nil, err
	}
	out := &duro.WorkerList{Now: l.Now}
	for _, w := range l.Workers {
		out.Workers = append(out.Workers, &duro.WorkerInfo{ID: w.ID, Name: w.Name, Host: w.Host, PID: w.PID, Version: w.Version,
			Orchestrations: w.Orchestrations, Activities: w.Activities, Entities: w.Entities,
			OrchestrationSlots: w.OrchestrationSlots, OrchestrationBusy: w.OrchestrationBusy,
			ActivitySlots: w.ActivitySlots, ActivityBusy: w.ActivityBusy, Stopping: w.Stopping,
			StartedAt: w.StartedAt, HeartbeatAt: w.HeartbeatAt, ExpiresAt: w.ExpiresAt, GoneAt: w.GoneAt})
	}
	return out, nil
}
