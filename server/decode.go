package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/durohq/duro"
)

// The request decoders: each reads an untrusted body or query and returns a
// request that the handlers may pass to the SDK as it is, or an *apiError.
// FuzzDecoders feeds them arbitrary bytes.

// maxIDBytes is the longest instance ID the SDK accepts.
const maxIDBytes = 256

// decodeBody decodes one JSON value from r into v: unknown fields, trailing
// data and an empty body (unless allowEmpty) are errors.
func decodeBody(r io.Reader, v any, allowEmpty bool) error {
	b, err := io.ReadAll(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(CodeBodyTooLarge, fmt.Sprintf("request body over the limit of %d bytes", mbe.Limit))
		}
		return errorf(CodeInvalidJSON, "reading the request body: "+err.Error())
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if allowEmpty {
			return nil
		}
		return errorf(CodeInvalidJSON, "the request needs a JSON body")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(CodeInvalidJSON, "the request body is not valid: "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(CodeInvalidJSON, "the request body holds more than one JSON value")
	}
	return nil
}

// payload returns a request payload for the SDK: nil for none or JSON null,
// else the raw JSON, which the JSON codec stores as it is.
func payload(raw json.RawMessage) any {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil
	}
	return json.RawMessage(t)
}

func invalid(format string, args ...any) error {
	return errorf(CodeInvalidArgument, fmt.Sprintf(format, args...))
}

// checkID validates an instance ID as the SDK would, so a bad one is a 400.
func checkID(what, id string) error {
	switch {
	case len(id) > maxIDBytes:
		return invalid("%s is %d bytes; the limit is %d", what, len(id), maxIDBytes)
	case strings.ContainsAny(id, "\x00\n\r"):
		return invalid("%s contains a control character", what)
	}
	return nil
}

func decodeStart(r io.Reader) (*StartRequest, error) {
	var req StartRequest
	if err := decodeBody(r, &req, false); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.Name) == "" {
		return nil, invalid("name: the orchestration name is required")
	}
	if err := checkID("id", req.ID); err != nil {
		return nil, err
	}
	return &req, nil
}

func decodeReason(r io.Reader) (*ReasonRequest, error) {
	var req ReasonRequest
	if err := decodeBody(r, &req, true); err != nil {
		return nil, err
	}
	return &req, nil
}

func decodeRaise(r io.Reader) (*RaiseRequest, error) {
	var req RaiseRequest
	if err := decodeBody(r, &req, false); err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, invalid("name: the event name is required")
	}
	return &req, nil
}

// decisionAction parses a decision's action, ignoring case.
func decisionAction(s string) (duro.DecisionAction, bool) {
	for _, a := range []duro.DecisionAction{duro.DecisionRetry, duro.DecisionResult, duro.DecisionFail} {
		if strings.EqualFold(s, string(a)) {
			return a, true
		}
	}
	return "", false
}

// decodeResume reads a resume request and returns its SDK decisions.
func decodeResume(r io.Reader) (*ResumeRequest, []duro.Decision, error) {
	var req ResumeRequest
	if err := decodeBody(r, &req, true); err != nil {
		return nil, nil, err
	}
	seen := map[int]bool{}
	var out []duro.Decision
	for i, d := range req.Decisions {
		if d == nil {
			return nil, nil, invalid("decisions[%d] is null", i)
		}
		if d.TaskID < 0 {
			return nil, nil, invalid("decisions[%d].taskId %d: task IDs are not negative", i, d.TaskID)
		}
		if seen[d.TaskID] {
			return nil, nil, invalid("decisions: two decisions for task %d", d.TaskID)
		}
		seen[d.TaskID] = true
		action, ok := decisionAction(d.Action)
		if !ok {
			return nil, nil, invalid("decisions[%d].action %q: want retry, result or fail", i, d.Action)
		}
		hasResult := len(bytes.TrimSpace(d.Result)) > 0
		switch {
		case action == duro.DecisionResult && !hasResult:
			return nil, nil, invalid("decisions[%d]: a result decision needs a result (JSON)", i)
		case action != duro.DecisionResult && hasResult:
			return nil, nil, invalid("decisions[%d]: only a result decision takes a result", i)
		case action != duro.DecisionFail && d.Message != "":
			return nil, nil, invalid("decisions[%d]: only a fail decision takes a message", i)
		}
		switch action {
		case duro.DecisionRetry:
			out = append(out, duro.RetryTask(d.TaskID))
		case duro.DecisionResult:
			out = append(out, duro.CompleteTask(d.TaskID, json.RawMessage(bytes.TrimSpace(d.Result))))
		default:
			out = append(out, duro.FailTask(d.TaskID, d.Message))
		}
	}
	return &req, out, nil
}

func decodePurge(r io.Reader) (*PurgeRequest, error) {
	var req PurgeRequest
	if err := decodeBody(r, &req, false); err != nil {
		return nil, err
	}
	if len(req.Statuses) == 0 && req.Name == "" && req.CreatedFrom.IsZero() && req.CreatedTo.IsZero() {
		return nil, invalid("give at least one filter: statuses, name, createdFrom or createdTo")
	}
	for i, st := range req.Statuses {
		s, err := parseStatus(string(st))
		if err != nil {
			return nil, err
		}
		if !s.IsTerminal() {
			return nil, invalid("statuses: %s instances have not finished and cannot be purged", s)
		}
		req.Statuses[i] = s
	}
	return &req, nil
}

func decodeSignal(r io.Reader) (*SignalRequest, error) {
	var req SignalRequest
	if err := decodeBody(r, &req, false); err != nil {
		return nil, err
	}
	if req.Operation == "" {
		return nil, invalid("operation: the operation name is required")
	}
	return &req, nil
}

// parseStatus parses a status name, ignoring case.
func parseStatus(v string) (duro.Status, error) {
	for _, s := range []duro.Status{duro.StatusPending, duro.StatusRunning, duro.StatusSuspended, duro.StatusCompleted,
		duro.StatusFailed, duro.StatusTerminated, duro.StatusContinuedAsNew} {
		if strings.EqualFold(v, string(s)) {
			return s, nil
		}
	}
	return "", invalid("unknown status %q", v)
}

// maxPageSize bounds a page of a listing.
const maxPageSize = 1000

// decodeListQuery reads the query of GET /api/v1/instances: status (comma
// separated or repeated), name, idPrefix, customStatus, createdFrom,
// createdTo (RFC 3339), pageSize, pageToken.
func decodeListQuery(q url.Values) (duro.ListOptions, error) {
	var o duro.ListOptions
	for key := range q {
		switch key {
		case "status", "name", "idPrefix", "customStatus", "createdFrom", "createdTo", "pageSize", "pageToken":
		default:
			return o, invalid("unknown query parameter %q", key)
		}
	}
	for _, v := range q["status"] {
		for part := range strings.SplitSeq(v, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			s, err := parseStatus(part)
			if err != nil {
				return o, err
			}
			o.Statuses = append(o.Statuses, s)
		}
	}
	o.Name = q.Get("name")
	o.IDPrefix = q.Get("idPrefix")
	if err := checkID("idPrefix", o.IDPrefix); err != nil {
		return o, err
	}
	o.CustomStatus = q.Get("customStatus")
	if len(o.CustomStatus) > maxIDBytes {
		return o, invalid("customStatus is %d bytes; the limit is %d", len(o.CustomStatus), maxIDBytes)
	}
	var err error
	if o.CreatedFrom, err = queryTime(q, "createdFrom"); err != nil {
		return o, err
	}
	if o.CreatedTo, err = queryTime(q, "createdTo"); err != nil {
		return o, err
	}
	if o.PageSize, err = queryPageSize(q); err != nil {
		return o, err
	}
	o.PageToken = q.Get("pageToken")
	return o, nil
}

func queryTime(q url.Values, key string) (time.Time, error) {
	v := q.Get(key)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, invalid("%s: %q is not an RFC 3339 time", key, v)
	}
	return t, nil
}

func queryPageSize(q url.Values) (int, error) {
	v := q.Get("pageSize")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPageSize {
		return 0, invalid("pageSize: %q is not a number from 1 to %d", v, maxPageSize)
	}
	return n, nil
}

// decodeEntityQuery reads the query of GET /api/v1/entities: name,
// includeEmpty, pageSize, pageToken.
func decodeEntityQuery(q url.Values) (duro.EntityQuery, error) {
	var o duro.EntityQuery
	for key := range q {
		switch key {
		case "name", "includeEmpty", "pageSize", "pageToken":
		default:
			return o, invalid("unknown query parameter %q", key)
		}
	}
	o.Name = q.Get("name")
	if strings.Contains(o.Name, "@") {
		return o, invalid("name: entity names do not contain '@'")
	}
	if v := q.Get("includeEmpty"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, invalid("includeEmpty: %q is not true or false", v)
		}
		o.IncludeEmpty = b
	}
	var err error
	if o.PageSize, err = queryPageSize(q); err != nil {
		return o, err
	}
	o.PageToken = q.Get("pageToken")
	return o, nil
}

// entityID reads an entity's name and key from the path.
func entityID(name, key string) (duro.EntityID, error) {
	id := duro.EntityID{Name: name, Key: key}
	if name == "" || key == "" || strings.Contains(name, "@") {
		return id, invalid("entity name %q and key %q: the name must be non-empty without '@', the key non-empty", name, key)
	}
	if err := checkID("the entity's ID", id.String()); err != nil {
		return id, err
	}
	return id, nil
}
