package server

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/durohq/duro"
)

// apiCase is one request and the answer expected: the status and, for an
// error, its code; check, if set, looks at the answer.
type apiCase struct {
	name   string
	method string
	path   string
	body   any
	hdr    []string
	status int
	code   string
	check  func(t *testing.T, r reply)
}

func runCases(t *testing.T, b *bundle, cases []apiCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do(tc.method, tc.path, tc.body, tc.hdr...)
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("%s %s: %d %q, want %d %q\n%s", tc.method, tc.path, r.status, r.code(), tc.status, tc.code, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && tc.path != "/metrics" {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// TestAPI covers every route with good and bad requests on one store. The
// cases run in order: later ones rely on the instances earlier ones made.
func TestAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{maxPayload: 1024})
	ctx := context.Background()
	if _, err := b.c.Start(ctx, "Echo", map[string]int{"n": 1}, duro.StartOptions{InstanceID: "done"}); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, "done", duro.StatusCompleted)
	if _, err := b.c.Start(ctx, "WaitForGo", nil, duro.StartOptions{InstanceID: "waiting"}); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, "waiting", duro.StatusRunning)
	if _, err := b.c.Start(ctx, "Boom", nil, duro.StartOptions{InstanceID: "boom"}); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, "boom", duro.StatusFailed)
	big := `{"name":"Echo","input":"` + strings.Repeat("x", 2048) + `"}`
	huge := `{"name":"Echo","input":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`

	runCases(t, b, []apiCase{
		{name: "info", method: "GET", path: "/api/v1/info", status: 200, check: func(t *testing.T, r reply) {
			var i Info
			r.decode(t, &i)
			if i.Version != "test" || i.Auth {
				t.Errorf("info %+v", i)
			}
		}},
		{name: "openapi", method: "GET", path: "/api/v1/openapi.json", status: 200},
		{name: "healthz", method: "GET", path: "/healthz", status: 200},
		{name: "readyz", method: "GET", path: "/readyz", status: 200},

		{name: "start", method: "POST", path: "/api/v1/instances", body: `{"name":"Echo","id":"e1","input":{"a":[1,2]}}`, status: 201,
			check: func(t *testing.T, r reply) {
				var s StartResponse
				r.decode(t, &s)
				if s.ID != "e1" || r.header.Get("Location") != "/api/v1/instances/e1" {
					t.Errorf("start %+v, Location %q", s, r.header.Get("Location"))
				}
				if inst := b.waitStatus(t, "e1", duro.StatusCompleted); string(inst.RawOutput) != `{"a":[1,2]}` {
					t.Errorf("output %s", inst.RawOutput)
				}
			}},
		{name: "start random ID", method: "POST", path: "/api/v1/instances", body: StartRequest{Name: "Echo"}, status: 201},
		{name: "start malformed", method: "POST", path: "/api/v1/instances", body: `{"name":`, status: 400, code: CodeInvalidJSON},
		{name: "start empty body", method: "POST", path: "/api/v1/instances", body: ``, status: 400, code: CodeInvalidJSON},
		{name: "start wrong type", method: "POST", path: "/api/v1/instances", body: `{"name":7}`, status: 400, code: CodeInvalidJSON},
		{name: "start unknown field", method: "POST", path: "/api/v1/instances", body: `{"name":"Echo","nmae":"x"}`, status: 400, code: CodeInvalidJSON},
		{name: "start two values", method: "POST", path: "/api/v1/instances", body: `{"name":"Echo"}{}`, status: 400, code: CodeInvalidJSON},
		{name: "start no name", method: "POST", path: "/api/v1/instances", body: `{"id":"x"}`, status: 400, code: CodeInvalidArgument},
		{name: "start bad ID", method: "POST", path: "/api/v1/instances", body: `{"name":"Echo","id":"a\nb"}`, status: 400, code: CodeInvalidArgument},
		{name: "start long ID", method: "POST", path: "/api/v1/instances", body: StartRequest{Name: "Echo", ID: strings.Repeat("i", 257)}, status: 400, code: CodeInvalidArgument},
		{name: "start existing", method: "POST", path: "/api/v1/instances", body: `{"name":"Echo","id":"waiting"}`, status: 409, code: CodeInstanceExists},
		{name: "start replace live", method: "POST", path: "/api/v1/instances", body: `{"name":"Echo","id":"waiting","replaceFinished":true}`, status: 409, code: CodeInstanceExists},
		{name: "start payload too large", method: "POST", path: "/api/v1/instances", body: big, status: 413, code: CodePayloadTooLarge},
		{name: "start body too large", method: "POST", path: "/api/v1/instances", body: huge, status: 413, code: CodeBodyTooLarge},

		{name: "list", method: "GET", path: "/api/v1/instances", status: 200, check: func(t *testing.T, r reply) {
			var p InstancePage
			r.decode(t, &p)
			if len(p.Instances) < 4 {
				t.Errorf("%d instances", len(p.Instances))
			}
		}},
		{name: "list filtered", method: "GET", path: "/api/v1/instances?status=failed,Running&name=Boom", status: 200, check: func(t *testing.T, r reply) {
			var p InstancePage
			r.decode(t, &p)
			if len(p.Instances) != 1 || p.Instances[0].ID != "boom" || p.Instances[0].Failure == nil {
				t.Errorf("page %s", r.body)
			}
		}},
		{name: "list paged", method: "GET", path: "/api/v1/instances?pageSize=1", status: 200, check: func(t *testing.T, r reply) {
			var p InstancePage
			r.decode(t, &p)
			if len(p.Instances) != 1 || p.NextPageToken == "" {
				t.Fatalf("page %s", r.body)
			}
			next := b.do("GET", "/api/v1/instances?pageSize=1&pageToken="+p.NextPageToken, nil)
			var q InstancePage
			next.decode(t, &q)
			if next.status != 200 || len(q.Instances) != 1 || q.Instances[0].ID == p.Instances[0].ID {
				t.Errorf("next page %d %s", next.status, next.body)
			}
		}},
		{name: "list bad status", method: "GET", path: "/api/v1/instances?status=Sleeping", status: 400, code: CodeInvalidArgument},
		{name: "list bad page size", method: "GET", path: "/api/v1/instances?pageSize=0", status: 400, code: CodeInvalidArgument},
		{name: "list huge page size", method: "GET", path: "/api/v1/instances?pageSize=100000", status: 400, code: CodeInvalidArgument},
		{name: "list bad time", method: "GET", path: "/api/v1/instances?createdFrom=yesterday", status: 400, code: CodeInvalidArgument},
		{name: "list unknown parameter", method: "GET", path: "/api/v1/instances?state=Running", status: 400, code: CodeInvalidArgument},
		{name: "list foreign page token", method: "GET", path: "/api/v1/instances?pageToken=bogus", status: 400, code: CodeInvalidPageToken},

		{name: "get", method: "GET", path: "/api/v1/instances/done", status: 200, check: func(t *testing.T, r reply) {
			var i Instance
			r.decode(t, &i)
			if i.ID != "done" || i.Status != duro.StatusCompleted || string(i.Output) != `{"n":1}` || i.CompletedAt.IsZero() {
				t.Errorf("instance %s", r.body)
			}
		}},
		{name: "get unknown", method: "GET", path: "/api/v1/instances/ghost", status: 404, code: CodeInstanceNotFound,
			check: func(t *testing.T, r reply) {
				if !strings.Contains(string(r.body), `no instance with ID \"ghost\"`) {
					t.Errorf("message %s", r.body)
				}
			}},
		{name: "get escaped ID", method: "GET", path: "/api/v1/instances/a%2Fb", status: 404, code: CodeInstanceNotFound},
		{name: "history", method: "GET", path: "/api/v1/instances/done/history", status: 200, check: func(t *testing.T, r reply) {
			var h History
			r.decode(t, &h)
			if len(h.Events) < 3 || h.Events[len(h.Events)-1].Type != "ExecutionCompleted" {
				t.Errorf("history %s", r.body)
			}
		}},
		{name: "history unknown", method: "GET", path: "/api/v1/instances/ghost/history", status: 404, code: CodeInstanceNotFound},

		{name: "raise", method: "POST", path: "/api/v1/instances/waiting/events", body: `{"name":"go","data":{"ok":true}}`, status: 202,
			check: func(t *testing.T, r reply) {
				if inst := b.waitStatus(t, "waiting", duro.StatusCompleted); string(inst.RawOutput) != `{"ok":true}` {
					t.Errorf("output %s", inst.RawOutput)
				}
			}},
		{name: "raise no name", method: "POST", path: "/api/v1/instances/done/events", body: `{"data":1}`, status: 400, code: CodeInvalidArgument},
		{name: "raise malformed", method: "POST", path: "/api/v1/instances/done/events", body: `[1,2]`, status: 400, code: CodeInvalidJSON},
		{name: "raise unknown", method: "POST", path: "/api/v1/instances/ghost/events", body: `{"name":"go"}`, status: 404, code: CodeInstanceNotFound},
		{name: "raise finished", method: "POST", path: "/api/v1/instances/done/events", body: `{"name":"go"}`, status: 409, code: CodeInstanceFinished},

		{name: "suspend unknown", method: "POST", path: "/api/v1/instances/ghost/suspend", status: 404, code: CodeInstanceNotFound},
		{name: "suspend finished", method: "POST", path: "/api/v1/instances/done/suspend", body: `{"reason":"x"}`, status: 409, code: CodeInstanceFinished},
		{name: "suspend malformed", method: "POST", path: "/api/v1/instances/done/suspend", body: `{"reason":1}`, status: 400, code: CodeInvalidJSON},
		{name: "resume unknown", method: "POST", path: "/api/v1/instances/ghost/resume", status: 404, code: CodeInstanceNotFound},
		{name: "resume finished", method: "POST", path: "/api/v1/instances/done/resume", status: 409, code: CodeInstanceFinished},
		{name: "resume bad action", method: "POST", path: "/api/v1/instances/done/resume", body: `{"decisions":[{"taskId":0,"action":"skip"}]}`, status: 400, code: CodeInvalidArgument},
		{name: "resume result without result", method: "POST", path: "/api/v1/instances/done/resume", body: `{"decisions":[{"taskId":0,"action":"result"}]}`, status: 400, code: CodeInvalidArgument},
		{name: "resume twice one task", method: "POST", path: "/api/v1/instances/done/resume", body: `{"decisions":[{"taskId":0,"action":"retry"},{"taskId":0,"action":"fail"}]}`, status: 400, code: CodeInvalidArgument},
		{name: "rewind unknown", method: "POST", path: "/api/v1/instances/ghost/rewind", status: 404, code: CodeInstanceNotFound},
		{name: "rewind not failed", method: "POST", path: "/api/v1/instances/done/rewind", status: 409, code: CodeInstanceNotFailed},
		{name: "rewind", method: "POST", path: "/api/v1/instances/boom/rewind", body: `{"reason":"try again"}`, status: 200, check: func(t *testing.T, r reply) {
			var i Instance
			r.decode(t, &i)
			if i.ID != "boom" {
				t.Errorf("after rewind: %s", r.body)
			}
			// Boom fails again at once; the history records the rewind.
			b.waitFor(t, "boom", func(*duro.Instance) bool {
				h, err := b.c.History(ctx, "boom")
				return err == nil && slices.ContainsFunc(h, func(e *duro.HistoryEvent) bool { return e.Type == "ExecutionRewound" })
			})
		}},
		{name: "terminate unknown", method: "POST", path: "/api/v1/instances/ghost/terminate", status: 404, code: CodeInstanceNotFound},
		{name: "terminate finished", method: "POST", path: "/api/v1/instances/done/terminate", status: 409, code: CodeInstanceFinished},

		{name: "purge unknown", method: "DELETE", path: "/api/v1/instances/ghost", status: 404, code: CodeInstanceNotFound},
		{name: "purge", method: "DELETE", path: "/api/v1/instances/done", status: 200, check: func(t *testing.T, r reply) {
			if _, err := b.c.Get(ctx, "done"); err == nil {
				t.Error("purged instance still there")
			}
		}},
		{name: "purge where", method: "POST", path: "/api/v1/purge", body: `{"statuses":["completed"],"name":"Echo"}`, status: 200, check: func(t *testing.T, r reply) {
			var p PurgeResponse
			r.decode(t, &p)
			if p.Purged < 2 {
				t.Errorf("purged %d", p.Purged)
			}
		}},
		{name: "purge where no filter", method: "POST", path: "/api/v1/purge", body: `{}`, status: 400, code: CodeInvalidArgument},
		{name: "purge where live status", method: "POST", path: "/api/v1/purge", body: `{"statuses":["Running"]}`, status: 400, code: CodeInvalidArgument},
		{name: "purge where malformed", method: "POST", path: "/api/v1/purge", body: `{"statuses":"Completed"}`, status: 400, code: CodeInvalidJSON},

		{name: "decisions", method: "GET", path: "/api/v1/decisions", status: 200, check: func(t *testing.T, r reply) {
			var p PendingTasks
			r.decode(t, &p)
			if p.Decisions == nil || len(p.Decisions) != 0 {
				t.Errorf("decisions %s", r.body)
			}
		}},

		{name: "signal", method: "POST", path: "/api/v1/entities/counter/c1/signals", body: `{"operation":"add","input":5,"idempotencyKey":"k1"}`, status: 202,
			check: func(t *testing.T, r reply) {
				waitEntity(t, b, "counter", "c1", "5")
			}},
		{name: "signal no operation", method: "POST", path: "/api/v1/entities/counter/c1/signals", body: `{"input":5}`, status: 400, code: CodeInvalidArgument},
		{name: "signal bad name", method: "POST", path: "/api/v1/entities/a@b/c1/signals", body: `{"operation":"add"}`, status: 400, code: CodeInvalidArgument},
		{name: "entity", method: "GET", path: "/api/v1/entities/counter/c1", status: 200},
		{name: "entity unknown", method: "GET", path: "/api/v1/entities/counter/nope", status: 404, code: CodeEntityNotFound},
		{name: "entities", method: "GET", path: "/api/v1/entities?name=counter", status: 200, check: func(t *testing.T, r reply) {
			var p EntityPage
			r.decode(t, &p)
			if len(p.Entities) != 1 || p.Entities[0].ID != "@counter@c1" || string(p.Entities[0].State) != "5" {
				t.Errorf("entities %s", r.body)
			}
		}},
		{name: "entities bad flag", method: "GET", path: "/api/v1/entities?includeEmpty=maybe", status: 400, code: CodeInvalidArgument},
		{name: "clean entities", method: "POST", path: "/api/v1/entities/clean", status: 200},

		{name: "metrics", method: "GET", path: "/metrics", status: 200},
		{name: "no route", method: "GET", path: "/api/v1/nothing", status: 404, code: CodeNotFound},
		{name: "wrong method", method: "PUT", path: "/api/v1/instances/x", status: 405, code: CodeMethodNotAllowed, check: func(t *testing.T, r reply) {
			if allow := r.header.Values("Allow"); strings.Join(allow, ",") != "GET,DELETE" {
				t.Errorf("Allow %v", allow)
			}
		}},
		{name: "foreign host without token", method: "GET", path: "/api/v1/instances", hdr: []string{"Host: duro.example.com"}, status: 403, code: CodeForbidden},
		{name: "cross-origin post", method: "POST", path: "/api/v1/instances/waiting/terminate",
			hdr: []string{"Origin: https://evil.example", "Sec-Fetch-Site: cross-site"}, status: 403, code: CodeForbidden},
	})
}

// waitEntity waits until the entity's state is want (JSON).
func waitEntity(t *testing.T, b *bundle, name, key, want string) {
	t.Helper()
	b.waitFor(t, "@"+name+"@"+key, func(*duro.Instance) bool {
		st, err := b.c.GetEntity(context.Background(), duro.EntityID{Name: name, Key: key})
		return err == nil && string(st.RawState) == want
	})
}

func TestAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{token: "s3cret", noWorker: true})
	ok := []string{"Authorization: Bearer s3cret"}
	runCases(t, b, []apiCase{
		{name: "no token", method: "GET", path: "/api/v1/instances", status: 401, code: CodeUnauthorized, check: func(t *testing.T, r reply) {
			if r.header.Get("WWW-Authenticate") == "" {
				t.Error("no WWW-Authenticate")
			}
		}},
		{name: "wrong token", method: "GET", path: "/api/v1/instances", hdr: []string{"Authorization: Bearer nope"}, status: 401, code: CodeUnauthorized},
		{name: "not bearer", method: "GET", path: "/api/v1/instances", hdr: []string{"Authorization: Basic czNjcmV0"}, status: 401, code: CodeUnauthorized},
		{name: "right token", method: "GET", path: "/api/v1/instances", hdr: ok, status: 200},
		// The scheme is case-insensitive (RFC 9110); the token is not.
		{name: "lower-case scheme", method: "GET", path: "/api/v1/instances", hdr: []string{"Authorization: bearer s3cret"}, status: 200},
		{name: "upper-case scheme", method: "GET", path: "/api/v1/instances", hdr: []string{"Authorization: BEARER s3cret"}, status: 200},
		{name: "token case matters", method: "GET", path: "/api/v1/instances", hdr: []string{"Authorization: Bearer S3CRET"}, status: 401, code: CodeUnauthorized},
		{name: "scheme only", method: "GET", path: "/api/v1/instances", hdr: []string{"Authorization: Bearer"}, status: 401, code: CodeUnauthorized},
		{name: "post without token", method: "POST", path: "/api/v1/instances", body: `{"name":"Echo"}`, status: 401, code: CodeUnauthorized},
		{name: "metrics without token", method: "GET", path: "/metrics", status: 401, code: CodeUnauthorized},
		{name: "metrics with token", method: "GET", path: "/metrics", hdr: ok, status: 200},
		{name: "info is public", method: "GET", path: "/api/v1/info", status: 200, check: func(t *testing.T, r reply) {
			var i Info
			r.decode(t, &i)
			if !i.Auth {
				t.Error("info.auth is false")
			}
		}},
		{name: "openapi is public", method: "GET", path: "/api/v1/openapi.json", status: 200},
		{name: "healthz is public", method: "GET", path: "/healthz", status: 200},
		{name: "any host with a token", method: "GET", path: "/api/v1/instances", hdr: append([]string{"Host: duro.example.com"}, ok...), status: 200},
	})
}

func TestReadyzStoreClosed(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{noWorker: true})
	if err := b.be.Close(); err != nil {
		t.Fatal(err)
	}
	runCases(t, b, []apiCase{
		{name: "readyz", method: "GET", path: "/readyz", status: 503, code: CodeUnavailable},
		{name: "healthz", method: "GET", path: "/healthz", status: 200},
		{name: "get", method: "GET", path: "/api/v1/instances/x", status: 503, code: CodeUnavailable},
	})
}

// TestDecisions resolves three suspended payments through the API, one per
// decision.
func TestDecisions(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{noWorker: true})
	b.suspendedPayments("retry", "result", "fail")
	r := b.do("GET", "/api/v1/decisions", nil)
	var p PendingTasks
	r.decode(t, &p)
	if len(p.Decisions) != 3 {
		t.Fatalf("decisions %s", r.body)
	}
	for _, d := range p.Decisions {
		if d.Activity != "Charge" || d.Attempt != 2 || d.Orchestration != "Pay" || !d.Options.AtMostOnce || d.Options.OnDuplicate != "Suspend" {
			t.Errorf("decision %+v", d)
		}
	}
	runCases(t, b, []apiCase{
		{name: "no decision", method: "POST", path: "/api/v1/instances/retry/resume", body: `{"reason":"?"}`, status: 409, code: CodeDecisionRequired},
		{name: "wrong task", method: "POST", path: "/api/v1/instances/retry/resume", body: `{"decisions":[{"taskId":7,"action":"retry"}]}`, status: 409, code: CodeNoPendingDecision},
		{name: "retry", method: "POST", path: "/api/v1/instances/retry/resume", body: `{"reason":"no charge at the provider","decisions":[{"taskId":0,"action":"Retry"}]}`, status: 202},
		{name: "result", method: "POST", path: "/api/v1/instances/result/resume", body: `{"decisions":[{"taskId":0,"action":"result","result":"PAY-1"}]}`, status: 202},
		{name: "fail", method: "POST", path: "/api/v1/instances/fail/resume", body: `{"decisions":[{"taskId":0,"action":"fail","message":"refunded"}]}`, status: 202},
	})
	if inst := b.waitStatus(t, "retry", duro.StatusCompleted); string(inst.RawOutput) != `"charged retry on attempt 3"` {
		t.Errorf("retry: %s", inst.RawOutput)
	}
	if inst := b.waitStatus(t, "result", duro.StatusCompleted); string(inst.RawOutput) != `"PAY-1"` {
		t.Errorf("result: %s", inst.RawOutput)
	}
	if inst := b.waitStatus(t, "fail", duro.StatusFailed); inst.Failure == nil || !strings.Contains(inst.Failure.Error(), "refunded") {
		t.Errorf("fail: %+v", inst.Failure)
	}
	if n := b.charges.Load(); n != 1 {
		t.Errorf("Charge ran %d times after the suspensions, want 1 (the retry)", n)
	}
	var h History
	b.do("GET", "/api/v1/instances/retry/history", nil).decode(t, &h)
	var types []string
	for _, e := range h.Events {
		types = append(types, string(e.Type))
		if e.Type == "TaskScheduled" && (e.Activity == nil || !e.Activity.AtMostOnce) {
			t.Errorf("TaskScheduled without its at-most-once policy: %+v", e)
		}
	}
	for _, want := range []string{"TaskDuplicate", "ExecutionSuspended", "ExecutionResumed", "TaskCompleted"} {
		if !strings.Contains(strings.Join(types, " "), want) {
			t.Errorf("history lacks %s: %v", want, types)
		}
	}
}
