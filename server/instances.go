package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/durohq/duro"
)

// list serves GET /api/v1/instances.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	opts, err := decodeListQuery(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts.OmitPayloads = true
	page, err := s.c.List(r.Context(), opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := &InstancePage{Instances: make([]*Instance, 0, len(page.Instances)), NextPageToken: page.NextPageToken}
	for _, i := range page.Instances {
		out.Instances = append(out.Instances, NewInstance(i))
	}
	writeJSON(w, http.StatusOK, out)
}

// start serves POST /api/v1/instances.
func (s *Server) start(w http.ResponseWriter, r *http.Request) {
	req, err := decodeStart(r.Body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := s.c.Start(r.Context(), req.Name, payload(req.Input),
		duro.StartOptions{InstanceID: req.ID, StartAt: req.StartAt, ReplaceFinished: req.ReplaceFinished})
	if errors.Is(err, duro.ErrInstanceExists) {
		err = errorf(CodeInstanceExists, fmt.Sprintf("an instance with ID %q already exists (replaceFinished replaces a finished one)", req.ID))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/instances/"+url.PathEscape(id))
	writeJSON(w, http.StatusCreated, &StartResponse{ID: id})
}

// get serves GET /api/v1/instances/{id}, with the instance's work in
// flight.
func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	inst, err := s.c.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := NewInstance(inst)
	if f, err := s.c.InFlight(r.Context(), inst.ID); err == nil {
		out.InFlight = NewInFlight(f)
	} else if !errors.Is(err, duro.ErrInstanceNotFound) {
		s.log.Warn("server: in-flight work", "instance", inst.ID, "err", err)
	}
	writeJSON(w, http.StatusOK, out)
}

// history serves GET /api/v1/instances/{id}/history.
func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	events, err := s.c.History(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := &History{Events: make([]*Event, 0, len(events))}
	for _, e := range events {
		out.Events = append(out.Events, NewEvent(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// accepted answers a request that was queued for the instance's next step.
func accepted(w http.ResponseWriter, id, what string) {
	writeJSON(w, http.StatusAccepted, map[string]string{
		"id": id, "status": what + " requested; a worker applies it at the instance's next step",
	})
}

// raise serves POST /api/v1/instances/{id}/events.
func (s *Server) raise(w http.ResponseWriter, r *http.Request) {
	req, err := decodeRaise(r.Body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if err := s.c.RaiseEvent(r.Context(), id, req.Name, payload(req.Data)); err != nil {
		s.writeError(w, r, err)
		return
	}
	accepted(w, id, "event "+req.Name)
}

// suspend serves POST /api/v1/instances/{id}/suspend.
func (s *Server) suspend(w http.ResponseWriter, r *http.Request) {
	s.withReason(w, r, "suspension", s.c.Suspend)
}

// terminate serves POST /api/v1/instances/{id}/terminate. When no worker
// held the instance, the client recorded the termination at once, and the
// answer says so.
func (s *Server) terminate(w http.ResponseWriter, r *http.Request) {
	req, err := decodeReason(r.Body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if err := s.c.Terminate(r.Context(), id, req.Reason); err != nil {
		s.writeError(w, r, err)
		return
	}
	if inst, err := s.c.Get(r.Context(), id); err == nil && inst.Status == duro.StatusTerminated {
		writeJSON(w, http.StatusAccepted, map[string]string{
			"id": id, "status": "terminated: no worker held the instance, so the termination was recorded at once",
		})
		return
	}
	accepted(w, id, "termination")
}

// rewind serves POST /api/v1/instances/{id}/rewind. A rewind takes effect
// at once (the instance is Running again), so it answers with the instance.
func (s *Server) rewind(w http.ResponseWriter, r *http.Request) {
	req, err := decodeReason(r.Body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if err := s.c.Rewind(r.Context(), id, req.Reason); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.get(w, r)
}

func (s *Server) withReason(w http.ResponseWriter, r *http.Request, what string,
	do func(ctx context.Context, id, reason string) error) {
	req, err := decodeReason(r.Body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if err := do(r.Context(), id, req.Reason); err != nil {
		s.writeError(w, r, err)
		return
	}
	accepted(w, id, what)
}

// resume serves POST /api/v1/instances/{id}/resume.
func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	req, decisions, err := decodeResume(r.Body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	rid, err := s.c.RequestResume(r.Context(), id, req.Reason, decisions...)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, &ResumeResponse{ID: id, ResumeID: rid,
		Status: "resume requested; a worker applies or refuses it at the instance's next step"})
}

// resumeOutcome serves GET /api/v1/instances/{id}/resumes/{resumeId}.
// Resume IDs hold a slash ("resume/…"), escaped in the path as %2F.
func (s *Server) resumeOutcome(w http.ResponseWriter, r *http.Request) {
	o, err := s.c.ResumeOutcome(r.Context(), r.PathValue("id"), r.PathValue("resumeId"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, NewResumeOutcome(o))
}

// purge serves DELETE /api/v1/instances/{id}.
func (s *Server) purge(w http.ResponseWriter, r *http.Request) {
	if err := s.c.Purge(r.Context(), r.PathValue("id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, &PurgeResponse{Purged: 1})
}

// purgeWhere serves POST /api/v1/purge.
func (s *Server) purgeWhere(w http.ResponseWriter, r *http.Request) {
	req, err := decodePurge(r.Body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	n, err := s.c.PurgeWhere(r.Context(), duro.PurgeFilter{Statuses: req.Statuses, Name: req.Name,
		CreatedFrom: req.CreatedFrom, CreatedTo: req.CreatedTo})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, &PurgeResponse{Purged: n})
}

// decisions serves GET /api/v1/decisions.
func (s *Server) decisions(w http.ResponseWriter, r *http.Request) {
	tasks, err := s.c.PendingDecisions(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]*PendingTask, 0, len(tasks))
	for _, t := range tasks {
		out = append(out, &PendingTask{InstanceID: t.InstanceID, Orchestration: t.Orchestration,
			SuspendedAt: utc(t.SuspendedAt), Reason: t.Reason, PendingDecision: *NewPendingDecision(&t.PendingDecision)})
	}
	writeJSON(w, http.StatusOK, &PendingTasks{Decisions: out})
}
