package server

import (
	"errors"
	"net/http"

	"github.com/durohq/duro"
)

// entities serves GET /api/v1/entities.
func (s *Server) entities(w http.ResponseWriter, r *http.Request) {
	q, err := decodeEntityQuery(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page, err := s.c.ListEntities(r.Context(), q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := &EntityPage{Entities: make([]*Entity, 0, len(page.Entities)), NextPageToken: page.NextPageToken}
	for _, e := range page.Entities {
		out.Entities = append(out.Entities, NewEntity(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// entity serves GET /api/v1/entities/{name}/{key}.
func (s *Server) entity(w http.ResponseWriter, r *http.Request) {
	id, err := entityID(r.PathValue("name"), r.PathValue("key"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.c.GetEntity(r.Context(), id)
	if errors.Is(err, duro.ErrInstanceNotFound) {
		err = errorf(CodeEntityNotFound, "no entity "+id.String()+" (it was never signalled, or was cleaned)")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, NewEntity(st))
}

// signal serves POST /api/v1/entities/{name}/{key}/signals.
func (s *Server) signal(w http.ResponseWriter, r *http.Request) {
	id, err := entityID(r.PathValue("name"), r.PathValue("key"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := decodeSignal(r.Body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	err = s.c.SignalEntity(r.Context(), id, req.Operation, payload(req.Input), duro.SignalOptions{IdempotencyKey: req.IdempotencyKey})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	accepted(w, id.String(), "operation "+req.Operation)
}

// cleanEntities serves POST /api/v1/entities/clean.
func (s *Server) cleanEntities(w http.ResponseWriter, r *http.Request) {
	purged, asked, err := s.c.CleanEntities(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, &CleanResponse{Purged: purged, Asked: asked})
}
