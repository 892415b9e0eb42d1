package server

import (
	"net/url"
	"strings"
	"testing"
)

// TestResumeOutcome: a resume answers with its ID; once a worker applies
// it, its outcome, the instance's lastResume and the history event say
// what each decision did.
func TestResumeOutcome(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{noWorker: true})
	b.suspendedPayments("p1") // leaves a worker running, which applies the resume
	r := b.do("POST", "/api/v1/instances/p1/resume", `{"reason":"checked","decisions":[{"taskId":0,"action":"result","result":"PAY-1"}]}`)
	if r.status != 202 {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	var rr ResumeResponse
	r.decode(t, &rr)
	if rr.ID != "p1" || !strings.HasPrefix(rr.ResumeID, "resume/") {
		t.Fatalf("resume answer %+v", rr)
	}
	b.waitStatus(t, "p1", "Completed")
	r = b.do("GET", "/api/v1/instances/p1/resumes/"+url.PathEscape(rr.ResumeID), nil)
	var o ResumeOutcome
	r.decode(t, &o)
	if r.status != 200 || o.ResumeID != rr.ResumeID || o.Status != "Applied" || len(o.Decisions) != 1 ||
		o.Decisions[0].Action != "result" || o.Decisions[0].Status != "Applied" || o.At.IsZero() {
		t.Fatalf("outcome: %d %s", r.status, r.body)
	}
	var inst Instance
	b.do("GET", "/api/v1/instances/p1", nil).decode(t, &inst)
	if inst.LastResume == nil || inst.LastResume.ResumeID != rr.ResumeID || inst.LastResume.Status != "Applied" {
		t.Fatalf("instance lastResume %+v", inst.LastResume)
	}
	var h History
	b.do("GET", "/api/v1/instances/p1/history", nil).decode(t, &h)
	found := false
	for _, ev := range h.Events {
		found = found || ev.Type == "ExecutionResumed" && ev.ResumeOutcome != nil && ev.ResumeOutcome.ResumeID == rr.ResumeID
	}
	if !found {
		t.Fatalf("no ExecutionResumed event with the outcome: %s", b.do("GET", "/api/v1/instances/p1/history", nil).body)
	}
	if r := b.do("GET", "/api/v1/instances/ghost/resumes/x", nil); r.status != 404 || r.code() != CodeInstanceNotFound {
		t.Fatalf("outcome of an unknown instance: %d %s", r.status, r.body)
	}
}

// TestResumePending: with no worker, a queued resume stays Pending and a
// second one is refused with resume_pending.
func TestResumePending(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{noWorker: true})
	if r := b.do("POST", "/api/v1/instances", `{"name":"WaitForGo","id":"w"}`); r.status != 201 && r.status != 200 {
		t.Fatalf("start: %d %s", r.status, r.body)
	}
	r := b.do("POST", "/api/v1/instances/w/resume", `{"reason":"first"}`)
	if r.status != 202 {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	var rr ResumeResponse
	r.decode(t, &rr)
	if r := b.do("POST", "/api/v1/instances/w/resume", `{"reason":"second"}`); r.status != 409 || r.code() != CodeResumePending {
		t.Fatalf("second resume while the first is queued: %d %s", r.status, r.body)
	}
	var o ResumeOutcome
	b.do("GET", "/api/v1/instances/w/resumes/"+url.PathEscape(rr.ResumeID), nil).decode(t, &o)
	if o.Status != "Pending" || o.ResumeID != rr.ResumeID {
		t.Fatalf("queued resume's outcome %+v", o)
	}
}
