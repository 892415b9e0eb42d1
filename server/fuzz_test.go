package server

import (
	"bytes"
	"net/url"
	"testing"

	"github.com/durohq/duro"
)

// FuzzDecoders feeds arbitrary bytes to every request decoder, as bodies
// and as query strings: none may panic, and what they accept must be safe
// to hand to the SDK.
func FuzzDecoders(f *testing.F) {
	for _, s := range []string{
		`{"name":"Echo","id":"a","input":{"x":[1,2]},"startAt":"2024-01-01T00:00:00Z","replaceFinished":true}`,
		`{"reason":"why"}`, ``, `null`, `{"name":"go","data":null}`,
		`{"reason":"r","decisions":[{"taskId":0,"action":"retry"},{"taskId":1,"action":"Result","result":"x"},{"taskId":2,"action":"fail","message":"m"}]}`,
		`{"decisions":[null]}`, `{"decisions":[{"taskId":-1,"action":"retry"}]}`,
		`{"statuses":["Completed"],"name":"n","createdFrom":"2024-01-01T00:00:00Z"}`,
		`{"operation":"add","input":1,"idempotencyKey":"k"}`,
		`status=Running,failed&name=x&pageSize=10&pageToken=abc&createdFrom=2024-01-01T00:00:00Z`,
		`includeEmpty=true&name=counter`, `{"name":"a\u0000b"}`, `[]`, `{"a":1}{"b":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if req, err := decodeStart(bytes.NewReader(b)); err == nil {
			if req.Name == "" || len(req.ID) > maxIDBytes || bytes.ContainsAny([]byte(req.ID), "\x00\n\r") {
				t.Fatalf("accepted start %+v", req)
			}
		}
		_, _ = decodeReason(bytes.NewReader(b))
		if req, err := decodeRaise(bytes.NewReader(b)); err == nil && req.Name == "" {
			t.Fatalf("accepted raise without a name")
		}
		if req, ds, err := decodeResume(bytes.NewReader(b)); err == nil {
			if len(ds) != len(req.Decisions) {
				t.Fatalf("%d decisions from %d", len(ds), len(req.Decisions))
			}
			seen := map[int]bool{}
			for _, d := range ds {
				if seen[d.TaskID] || d.TaskID < 0 {
					t.Fatalf("decisions %+v", ds)
				}
				seen[d.TaskID] = true
				switch d.Action {
				case duro.DecisionRetry, duro.DecisionResult, duro.DecisionFail:
				default:
					t.Fatalf("action %q", d.Action)
				}
			}
		}
		if req, err := decodePurge(bytes.NewReader(b)); err == nil {
			for _, s := range req.Statuses {
				if !s.IsTerminal() {
					t.Fatalf("purge of %s accepted", s)
				}
			}
		}
		if req, err := decodeSignal(bytes.NewReader(b)); err == nil && req.Operation == "" {
			t.Fatal("accepted signal without an operation")
		}
		if q, err := url.ParseQuery(string(b)); err == nil {
			if o, err := decodeListQuery(q); err == nil {
				if o.PageSize < 0 || o.PageSize > maxPageSize {
					t.Fatalf("page size %d", o.PageSize)
				}
				for _, s := range o.Statuses {
					if !s.Valid() {
						t.Fatalf("status %q", s)
					}
				}
			}
			_, _ = decodeEntityQuery(q)
		}
		_ = payload(b)
	})
}
