package main

import (
	"bytes"
	"context"
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
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server"
)

// instanceAPI is what the instance commands need from a store: a
// *duro.Client on the store itself, or a *remoteClient acting through a
// duro server's API (--server URL).
type instanceAPI interface {
	Start(ctx context.Context, name string, input any, opts ...duro.StartOptions) (string, error)
	Get(ctx context.Context, id string) (*duro.Instance, error)
	Wait(ctx context.Context, id string) (*duro.Instance, error)
	List(ctx context.Context, o duro.ListOptions) (*duro.InstancePage, error)
	History(ctx context.Context, id string) ([]*duro.HistoryEvent, error)
	RaiseEvent(ctx context.Context, id, name string, data any) error
	Suspend(ctx context.Context, id, reason string) error
	Resume(ctx context.Context, id, reason string, decisions ...duro.Decision) error
	RequestResume(ctx context.Context, id, reason string, decisions ...duro.Decision) (string, error)
	ResumeOutcome(ctx context.Context, id, resumeID string) (*duro.ResumeOutcome, error)
	Rewind(ctx context.Context, id, reason string) error
	Terminate(ctx context.Context, id, reason string) error
	Purge(ctx context.Context, id string) error
	PurgeWhere(ctx context.Context, f duro.PurgeFilter) (int, error)
	PendingDecisions(ctx context.Context) ([]*duro.PendingTask, error)
	GetEntity(ctx context.Context, id duro.EntityID) (*duro.EntityState, error)
	ListEntities(ctx context.Context, q duro.EntityQuery) (*duro.EntityPage, error)
	SignalEntity(ctx context.Context, id duro.EntityID, op string, input any, opts ...duro.SignalOptions) error
	CleanEntities(ctx context.Context) (purged, asked int, err error)
	InFlight(ctx context.Context, id string) (*duro.InFlight, error)
	Workers(ctx context.Context) (*duro.WorkerList, error)
}

var (
	_ instanceAPI = (*duro.Client)(nil)
	_ instanceAPI = (*remoteClient)(nil)
)

// remoteClient acts on instances through a duro server's JSON API. Its
// errors wrap the SDK's sentinel errors for the API's error codes, so the
// commands explain them as they do for a local store. Payloads are JSON.
type remoteClient struct {
	base  *url.URL
	token string
	http  *http.Client
}

// newRemoteClient returns a client for the server at rawURL.
func newRemoteClient(rawURL, token string) (*remoteClient, error) {
	u, err := url.Parse(strings.TrimRight(rawURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf("--server %q: want the server's URL, such as http://127.0.0.1:8233", rawURL)
	}
	return &remoteClient{base: u, token: token, http: &http.Client{}}, nil
}

// remoteError is an error answer of the server.
type remoteError struct {
	status int
	code   string
	msg    string
}

func (e *remoteError) Error() string { return e.msg }

// codeSentinels maps the API's error codes to the SDK's sentinel errors.
var codeSentinels = map[string]error{
	server.CodeInstanceNotFound:    duro.ErrInstanceNotFound,
	server.CodeEntityNotFound:      duro.ErrInstanceNotFound,
	server.CodeInstanceExists:      duro.ErrInstanceExists,
	server.CodeInstanceFinished:    duro.ErrInstanceFinished,
	server.CodeInstanceNotFinished: duro.ErrInstanceNotFinished,
	server.CodeInstanceNotFailed:   duro.ErrInstanceNotFailed,
	server.CodeDecisionRequired:    duro.ErrDecisionRequired,
	server.CodeNoPendingDecision:   duro.ErrNoPendingDecision,
	server.CodeResumePending:       duro.ErrResumePending,
	server.CodePayloadTooLarge:     duro.ErrPayloadTooLarge,
	server.CodeTimeout:             context.DeadlineExceeded,
}

// Unwrap returns the sentinel error of the code, if any.
func (e *remoteError) Unwrap() error { return codeSentinels[e.code] }

// call sends a request with body (nil for none) and decodes the answer into
// out (nil to drop it).
func (c *remoteClient) call(ctx context.Context, method, path string, query url.Values, body, out any) error {
	// path's segments are escaped already (url.PathEscape).
	target := c.base.String() + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("server %s does not answer (is 'duro server' running there?): %w", c.base.Redacted(), errors.Unwrap(err))
	}
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("server %s: reading the answer: %w", c.base.Redacted(), err)
	}
	if res.StatusCode >= 300 {
		var eb server.ErrorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error == nil {
			return &remoteError{status: res.StatusCode, code: "http", msg: fmt.Sprintf("server %s: %s", c.base.Redacted(), res.Status)}
		}
		msg := eb.Error.Message
		if eb.Error.Code == server.CodeUnauthorized {
			msg += " (give the server's token with --token, DURO_TOKEN or --token-file)"
		}
		return &remoteError{status: res.StatusCode, code: eb.Error.Code, msg: msg}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("server %s: the answer is not the JSON expected: %w", c.base.Redacted(), err)
	}
	return nil
}

func instPath(id string) string { return "/api/v1/instances/" + url.PathEscape(id) }

// jsonPayload encodes a payload for a request (nil for none).
func jsonPayload(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	return json.Marshal(v)
}

// Start implements instanceAPI.
func (c *remoteClient) Start(ctx context.Context, name string, input any, opts ...duro.StartOptions) (string, error) {
	var o duro.StartOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	in, err := jsonPayload(input)
	if err != nil {
		return "", err
	}
	var res server.StartResponse
	err = c.call(ctx, http.MethodPost, "/api/v1/instances", nil,
		&server.StartRequest{Name: name, ID: o.InstanceID, Input: in, StartAt: o.StartAt, ReplaceFinished: o.ReplaceFinished}, &res)
	return res.ID, err
}

// Get implements instanceAPI.
func (c *remoteClient) Get(ctx context.Context, id string) (*duro.Instance, error) {
	var in server.Instance
	if err := c.call(ctx, http.MethodGet, instPath(id), nil, nil, &in); err != nil {
		return nil, err
	}
	return toSDKInstance(&in), nil
}

// Wait implements instanceAPI: it polls the instance until it finishes.
func (c *remoteClient) Wait(ctx context.Context, id string) (*duro.Instance, error) {
	d := 5 * time.Millisecond
	for {
		inst, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if inst.Status.IsTerminal() {
			return inst, nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("wait for %q: %w", id, ctx.Err())
		case <-t.C:
		}
		d = min(2*d, 200*time.Millisecond)
	}
}

// List implements instanceAPI.
func (c *remoteClient) List(ctx context.Context, o duro.ListOptions) (*duro.InstancePage, error) {
	q := url.Values{}
	var ss []string
	for _, s := range o.Statuses {
		ss = append(ss, string(s))
	}
	setQuery(q, "status", strings.Join(ss, ","))
	setQuery(q, "name", o.Name)
	setQuery(q, "idPrefix", o.IDPrefix)
	setQuery(q, "customStatus", o.CustomStatus)
	setQuery(q, "createdFrom", rfc3339(o.CreatedFrom))
	setQuery(q, "createdTo", rfc3339(o.CreatedTo))
	if o.PageSize > 0 {
		q.Set("pageSize", strconv.Itoa(o.PageSize))
	}
	setQuery(q, "pageToken", o.PageToken)
	var page server.InstancePage
	if err := c.call(ctx, http.MethodGet, "/api/v1/instances", q, nil, &page); err != nil {
		return nil, err
	}
	out := &duro.InstancePage{NextPageToken: page.NextPageToken}
	for _, i := range page.Instances {
		out.Instances = append(out.Instances, toSDKInstance(i))
	}
	return out, nil
}

func setQuery(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// History implements instanceAPI.
func (c *remoteClient) History(ctx context.Context, id string) ([]*duro.HistoryEvent, error) {
	var h server.History
	if err := c.call(ctx, http.MethodGet, instPath(id)+"/history", nil, nil, &h); err != nil {
		return nil, err
	}
	out := make([]*duro.HistoryEvent, 0, len(h.Events))
	for _, e := range h.Events {
		out = append(out, toSDKEvent(e))
	}
	return out, nil
}

// RaiseEvent implements instanceAPI.
func (c *remoteClient) RaiseEvent(ctx context.Context, id, name string, data any) error {
	b, err := jsonPayload(data)
	if err != nil {
		return err
	}
	return c.call(ctx, http.MethodPost, instPath(id)+"/events", nil, &server.RaiseRequest{Name: name, Data: b}, nil)
}

// Suspend implements instanceAPI.
func (c *remoteClient) Suspend(ctx context.Context, id, reason string) error {
	return c.call(ctx, http.MethodPost, instPath(id)+"/suspend", nil, &server.ReasonRequest{Reason: reason}, nil)
}

// Resume implements instanceAPI.
func (c *remoteClient) Resume(ctx context.Context, id, reason string, decisions ...duro.Decision) error {
	_, err := c.RequestResume(ctx, id, reason, decisions...)
	return err
}

// RequestResume implements instanceAPI.
func (c *remoteClient) RequestResume(ctx context.Context, id, reason string, decisions ...duro.Decision) (string, error) {
	req := &server.ResumeRequest{Reason: reason}
	for _, d := range decisions {
		sd := &server.Decision{TaskID: d.TaskID, Action: strings.ToLower(string(d.Action)), Message: d.Message}
		if d.Action == duro.DecisionResult {
			b, err := json.Marshal(d.Result)
			if err != nil {
				return "", err
			}
			sd.Result = b
		}
		req.Decisions = append(req.Decisions, sd)
	}
	var rr server.ResumeResponse
	if err := c.call(ctx, http.MethodPost, instPath(id)+"/resume", nil, req, &rr); err != nil {
		return "", err
	}
	return rr.ResumeID, nil
}

// ResumeOutcome implements instanceAPI.
func (c *remoteClient) ResumeOutcome(ctx context.Context, id, resumeID string) (*duro.ResumeOutcome, error) {
	var o server.ResumeOutcome
	if err := c.call(ctx, http.MethodGet, instPath(id)+"/resumes/"+url.PathEscape(resumeID), nil, nil, &o); err != nil {
		return nil, err
	}
	return toSDKResumeOutcome(&o), nil
}

// Rewind implements instanceAPI.
func (c *remoteClient) Rewind(ctx context.Context, id, reason string) error {
	return c.call(ctx, http.MethodPost, instPath(id)+"/rewind", nil, &server.ReasonRequest{Reason: reason}, nil)
}

// Terminate implements instanceAPI.
func (c *remoteClient) Terminate(ctx context.Context, id, reason string) error {
	return c.call(ctx, http.MethodPost, instPath(id)+"/terminate", nil, &server.ReasonRequest{Reason: reason}, nil)
}

// Purge implements instanceAPI.
func (c *remoteClient) Purge(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, instPath(id), nil, nil, nil)
}

// PurgeWhere implements instanceAPI.
func (c *remoteClient) PurgeWhere(ctx context.Context, f duro.PurgeFilter) (int, error) {
	var res server.PurgeResponse
	err := c.call(ctx, http.MethodPost, "/api/v1/purge", nil, &server.PurgeRequest{Statuses: f.Statuses, Name: f.Name,
		CreatedFrom: f.CreatedFrom, CreatedTo: f.CreatedTo}, &res)
	return res.Purged, err
}

// PendingDecisions implements instanceAPI.
func (c *remoteClient) PendingDecisions(ctx context.Context) ([]*duro.PendingTask, error) {
	var res server.PendingTasks
	if err := c.call(ctx, http.MethodGet, "/api/v1/decisions", nil, nil, &res); err != nil {
		return nil, err
	}
	out := make([]*duro.PendingTask, 0, len(res.Decisions))
	for _, t := range res.Decisions {
		out = append(out, &duro.PendingTask{InstanceID: t.InstanceID, Orchestration: t.Orchestration,
			SuspendedAt: t.SuspendedAt, Reason: t.Reason, PendingDecision: *toSDKPending(&t.PendingDecision)})
	}
	return out, nil
}

func entityPath(id duro.EntityID) string {
	return "/api/v1/entities/" + url.PathEscape(id.Name) + "/" + url.PathEscape(id.Key)
}

// GetEntity implements instanceAPI.
func (c *remoteClient) GetEntity(ctx context.Context, id duro.EntityID) (*duro.EntityState, error) {
	var e server.Entity
	if err := c.call(ctx, http.MethodGet, entityPath(id), nil, nil, &e); err != nil {
		return nil, err
	}
	return toSDKEntity(&e), nil
}

// ListEntities implements instanceAPI.
func (c *remoteClient) ListEntities(ctx context.Context, q duro.EntityQuery) (*duro.EntityPage, error) {
	v := url.Values{}
	setQuery(v, "name", q.Name)
	if q.IncludeEmpty {
		v.Set("includeEmpty", "true")
	}
	if q.PageSize > 0 {
		v.Set("pageSize", strconv.Itoa(q.PageSize))
	}
	setQuery(v, "pageToken", q.PageToken)
	var page server.EntityPage
	if err := c.call(ctx, http.MethodGet, "/api/v1/entities", v, nil, &page); err != nil {
		return nil, err
	}
	out := &duro.EntityPage{NextPageToken: page.NextPageToken}
	for _, e := range page.Entities {
		out.Entities = append(out.Entities, toSDKEntity(e))
	}
	return out, nil
}

// SignalEntity implements instanceAPI.
func (c *remoteClient) SignalEntity(ctx context.Context, id duro.EntityID, op string, input any, opts ...duro.SignalOptions) error {
	b, err := jsonPayload(input)
	if err != nil {
		return err
	}
	req := &server.SignalRequest{Operation: op, Input: b}
	if len(opts) > 0 {
		req.IdempotencyKey = opts[0].IdempotencyKey
	}
	return c.call(ctx, http.MethodPost, entityPath(id)+"/signals", nil, req, nil)
}

// CleanEntities implements instanceAPI.
func (c *remoteClient) CleanEntities(ctx context.Context) (purged, asked int, err error) {
	var res server.CleanResponse
	err = c.call(ctx, http.MethodPost, "/api/v1/entities/clean", nil, struct{}{}, &res)
	return res.Purged, res.Asked, err
}

// Conversions from the API's documents to the SDK's types.

func raw(m json.RawMessage) []byte {
	if len(m) == 0 {
		return nil
	}
	return []byte(m)
}

func toSDKInstance(i *server.Instance) *duro.Instance {
	return &duro.Instance{ID: i.ID, Name: i.Name, ExecutionID: i.ExecutionID, Status: i.Status,
		CreatedAt: i.CreatedAt, UpdatedAt: i.UpdatedAt, CompletedAt: i.CompletedAt, Failure: toSDKFailure(i.Failure),
		ParentInstanceID: i.ParentInstanceID, Suspension: toSDKSuspension(i.Suspension),
		RawInput: raw(i.Input), RawOutput: raw(i.Output), RawCustomStatus: raw(i.CustomStatus),
		InputSize: i.InputSize, OutputSize: i.OutputSize, CustomStatusSize: i.CustomStatusSize,
		PayloadsOmitted: i.PayloadsOmitted, LastResume: toSDKResumeOutcome(i.LastResume)}
}

func toSDKResumeOutcome(o *server.ResumeOutcome) *duro.ResumeOutcome {
	if o == nil {
		return nil
	}
	out := &duro.ResumeOutcome{ID: o.ResumeID, Status: o.Status, Reason: o.Reason, At: o.At}
	for _, d := range o.Decisions {
		action := duro.DecisionAction(d.Action)
		for _, a := range []duro.DecisionAction{duro.DecisionRetry, duro.DecisionResult, duro.DecisionFail} {
			if strings.EqualFold(d.Action, string(a)) {
				action = a
			}
		}
		out.Decisions = append(out.Decisions, &duro.DecisionOutcome{TaskID: d.TaskID, Action: action, Status: d.Status, Reason: d.Reason})
	}
	return out
}

func toSDKFailure(f *server.Failure) *duro.Failure {
	if f == nil {
		return nil
	}
	return &duro.Failure{Message: f.Message, Type: f.Type, TaskName: f.TaskName, NonRetryable: f.NonRetryable,
		Details: raw(f.Details), Stack: f.Stack, Cause: toSDKFailure(f.Cause)}
}

func toSDKSuspension(s *server.Suspension) *duro.Suspension {
	if s == nil {
		return nil
	}
	out := &duro.Suspension{Reason: s.Reason, Since: s.Since, Poisoned: s.Poisoned}
	for _, pd := range s.Pending {
		out.Pending = append(out.Pending, toSDKPending(pd))
	}
	return out
}

func toSDKPending(pd *server.PendingDecision) *duro.PendingDecision {
	return &duro.PendingDecision{TaskID: pd.TaskID, Name: pd.Activity, Input: raw(pd.Input), Attempt: pd.Attempt,
		PreviousDeliveryAt: pd.PreviousDeliveryAt, Options: pd.Options}
}

func toSDKEvent(e *server.Event) *duro.HistoryEvent {
	out := &backend.Event{Type: e.Type, Timestamp: e.Timestamp, Name: e.Name, InstanceID: e.InstanceID,
		ExecutionID: e.ExecutionID, Input: raw(e.Input), Result: raw(e.Result), Failure: toSDKFailure(e.Failure),
		FireAt: e.FireAt, Attempt: e.Attempt, Status: e.Status, Reason: e.Reason, Parent: e.Parent,
		Activity: e.Activity, Suspension: toSDKSuspension(e.Suspension), Rewind: e.Rewind, Entity: e.Entity,
		ResumeOutcome: toSDKResumeOutcome(e.ResumeOutcome), Deprecated: e.Deprecated}
	if e.TaskID != nil {
		out.TaskID = *e.TaskID
	}
	for _, d := range e.Decisions {
		out.Decisions = append(out.Decisions, &backend.Decision{TaskID: d.TaskID, Action: backend.DecisionAction(d.Action),
			Result: raw(d.Result), Message: d.Message})
	}
	return out
}

func toSDKEntity(e *server.Entity) *duro.EntityState {
	return &duro.EntityState{ID: duro.EntityID{Name: e.Name, Key: e.Key}, Exists: e.Exists, RawState: raw(e.State),
		LockedBy: e.LockedBy, Queued: e.Queued, LastModified: e.LastModified, Suspension: toSDKSuspension(e.Suspension)}
}
