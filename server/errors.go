package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// Error codes: stable, for clients to branch on. Each goes with one HTTP
// status.
const (
	CodeInvalidJSON         = "invalid_json"          // 400: the body is not the JSON the route takes
	CodeInvalidArgument     = "invalid_argument"      // 400: a field or query parameter is wrong
	CodeInvalidPageToken    = "invalid_page_token"    // 400
	CodeUnauthorized        = "unauthorized"          // 401: missing or wrong bearer token
	CodeForbidden           = "forbidden"             // 403: a cross-origin request, or a foreign Host
	CodeNotFound            = "not_found"             // 404: no such route
	CodeInstanceNotFound    = "instance_not_found"    // 404
	CodeEntityNotFound      = "entity_not_found"      // 404
	CodeMethodNotAllowed    = "method_not_allowed"    // 405
	CodeInstanceExists      = "instance_exists"       // 409
	CodeInstanceFinished    = "instance_finished"     // 409
	CodeInstanceNotFinished = "instance_not_finished" // 409
	CodeInstanceNotFailed   = "instance_not_failed"   // 409
	CodeDecisionRequired    = "decision_required"     // 409: a resume lacks a decision for a pending task
	CodeNoPendingDecision   = "no_pending_decision"   // 409: a decision names a task that waits for none
	CodeResumePending       = "resume_pending"        // 409: another resume of the instance is queued
	CodeBodyTooLarge        = "body_too_large"        // 413: the request body exceeds the server's limit
	CodePayloadTooLarge     = "payload_too_large"     // 413: a payload exceeds the store's payload limit
	CodeUnavailable         = "unavailable"           // 503: the store is closed or unreachable
	CodeTimeout             = "timeout"               // 504
	CodeInternal            = "internal"              // 500
)

// codeStatus maps each code to its HTTP status.
var codeStatus = map[string]int{
	CodeInvalidJSON: http.StatusBadRequest, CodeInvalidArgument: http.StatusBadRequest,
	CodeInvalidPageToken: http.StatusBadRequest, CodeUnauthorized: http.StatusUnauthorized,
	CodeForbidden: http.StatusForbidden, CodeNotFound: http.StatusNotFound,
	CodeInstanceNotFound: http.StatusNotFound, CodeEntityNotFound: http.StatusNotFound,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed, CodeInstanceExists: http.StatusConflict,
	CodeInstanceFinished: http.StatusConflict, CodeInstanceNotFinished: http.StatusConflict,
	CodeInstanceNotFailed: http.StatusConflict, CodeDecisionRequired: http.StatusConflict,
	CodeNoPendingDecision: http.StatusConflict, CodeResumePending: http.StatusConflict,
	CodeBodyTooLarge:    http.StatusRequestEntityTooLarge,
	CodePayloadTooLarge: http.StatusRequestEntityTooLarge,
	CodeUnavailable:     http.StatusServiceUnavailable, CodeTimeout: http.StatusGatewayTimeout,
	CodeInternal: http.StatusInternalServerError,
}

// apiError is an error with its API code.
type apiError struct {
	code string
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func errorf(code, msg string) error { return &apiError{code: code, msg: msg} }

// sentinels maps the SDK's sentinel errors to codes, most specific first.
var sentinels = []struct {
	err  error
	code string
}{
	{duro.ErrInstanceNotFound, CodeInstanceNotFound},
	{backend.ErrInvalidPageToken, CodeInvalidPageToken},
	{duro.ErrInstanceExists, CodeInstanceExists},
	{duro.ErrInstanceFinished, CodeInstanceFinished},
	{duro.ErrInstanceNotFinished, CodeInstanceNotFinished},
	{duro.ErrInstanceNotFailed, CodeInstanceNotFailed},
	{duro.ErrDecisionRequired, CodeDecisionRequired},
	{duro.ErrNoPendingDecision, CodeNoPendingDecision},
	{duro.ErrResumePending, CodeResumePending},
	{duro.ErrPayloadTooLarge, CodePayloadTooLarge},
	{duro.ErrPayloadDecode, CodeInvalidArgument},
	{backend.ErrClosed, CodeUnavailable},
	{context.DeadlineExceeded, CodeTimeout},
}

// codeOf returns the API code and message for err.
func codeOf(err error) (code, msg string) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.code, ae.msg
	}
	msg = strings.TrimPrefix(err.Error(), "duro: ")
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return CodeBodyTooLarge, "request body too large"
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.code, msg
		}
	}
	return CodeInternal, msg
}

// writeError writes err as an ErrorBody with its code's status. Internal
// errors are logged, and their text is not sent.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := codeOf(err)
	if id := r.PathValue("id"); id != "" {
		msg = friendly(code, id, msg)
	}
	status := codeStatus[code]
	if code == CodeInternal {
		s.log.Error("duro server: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error; see the server's log"
	}
	writeErrorCode(w, status, code, msg)
}

func writeErrorCode(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, &ErrorBody{Error: &Error{Code: code, Message: msg}})
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"encoding the response failed"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// friendly replaces the store's wording of an error about instance id with
// a sentence for people.
func friendly(code, id, msg string) string {
	switch code {
	case CodeInstanceNotFound:
		return fmt.Sprintf("no instance with ID %q", id)
	case CodeInstanceFinished:
		return fmt.Sprintf("instance %q has already finished", id)
	case CodeInstanceNotFinished:
		return fmt.Sprintf("instance %q has not finished; only finished instances can be purged (terminate it first)", id)
	case CodeInstanceNotFailed:
		return fmt.Sprintf("instance %q has not failed; only Failed instances can be rewound", id)
	}
	return msg
}
