package backend

import (
	"bytes"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// sampleEvents returns a valid event of every known type, with the fields
// its type uses set.
func sampleEvents() []*Event {
	ts := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	fail := &Failure{Message: "boom", Type: "Unavailable", TaskName: "Charge", Details: []byte(`{"code":503}`),
		Cause: &Failure{Message: "dial tcp: refused", Type: "*net.OpError"}}
	known := map[EventType]*Event{
		EventExecutionStarted: {Name: "Checkout", ExecutionID: "e1", Input: []byte(`{"cents":4200}`),
			Parent: &ParentRef{InstanceID: "parent", ExecutionID: "pe", TaskID: 3}},
		EventOrchestratorStarted: {},
		EventTaskScheduled: {TaskID: 1, Name: "Charge", Input: []byte(`4200`),
			Activity: &ActivityOptions{LeaseDuration: time.Minute, AtMostOnce: true, OnDuplicate: "Fail", MaxDeliveries: 3}},
		EventTaskCompleted:             {TaskID: 1, Result: []byte(`"ch_1"`), Attempt: 2},
		EventTaskFailed:                {TaskID: 1, Failure: fail, Attempt: 1},
		EventTimerCreated:              {TaskID: 2, FireAt: ts.Add(time.Hour)},
		EventTimerFired:                {TaskID: 2, FireAt: ts.Add(time.Hour)},
		EventSubOrchestrationCreated:   {TaskID: 3, Name: "Ship", InstanceID: "child", Input: []byte(`null`)},
		EventSubOrchestrationCompleted: {TaskID: 3, Result: []byte(`{"tracking":"T1"}`)},
		EventSubOrchestrationFailed:    {TaskID: 3, Failure: fail},
		EventEventRaised:               {Name: "Approval", Input: []byte(`"alice"`)},
		EventEventSent:                 {TaskID: 4, Name: "Approval", InstanceID: "other", Input: []byte(`"bob"`)},
		EventExecutionTerminated:       {Reason: "operator"},
		EventExecutionCompleted:        {Status: StatusCompleted, Result: []byte(`"done"`)},
		EventExecutionSuspended: {Reason: "audit", Suspension: &Suspension{Reason: "audit", Since: ts,
			Pending: []*PendingDecision{{TaskID: 1, Name: "Charge", Attempt: 2, PreviousDeliveryAt: ts}}}},
		EventExecutionResumed: {Reason: "ok", Decisions: []*Decision{{TaskID: 1, Action: DecisionResult, Result: []byte(`"ch_1"`)}}},
		EventTaskDuplicate:    {TaskID: 1, Name: "Charge", Attempt: 2, FireAt: ts},
		EventExecutionRewound: {Reason: "fixed", Rewind: &Rewind{Tasks: []int{1}, From: 4, NextTaskID: 5}},
		EventEntityRequest: {Name: "add", Input: []byte(`1`),
			Entity: &EntityRequest{Owner: "o", Caller: &ParentRef{InstanceID: "o", ExecutionID: "e", TaskID: 2}}},
		EventEntitySignaled:      {TaskID: 5, InstanceID: "@counter@a", Name: "add", Input: []byte(`1`)},
		EventEntityCalled:        {TaskID: 6, InstanceID: "@counter@a", Name: "get"},
		EventEntityResponse:      {TaskID: 6, Result: []byte(`3`)},
		EventEntityLockRequested: {TaskID: 7, Entity: &EntityRequest{Lock: []string{"@a@1", "@b@2"}}},
		EventEntityLockGranted:   {TaskID: 7},
		EventEntityUnlocked: {TaskID: 8, Entity: &EntityRequest{Lock: []string{"@a@1", "@b@2"},
			Caller: &ParentRef{InstanceID: "o", ExecutionID: "e", TaskID: 7}}},
		EventPatched: {TaskID: 9, Name: "charge-before-ship", Deprecated: true},
	}
	var out []*Event
	for typ := range knownEventTypes {
		e, ok := known[typ]
		if !ok {
			// A type added since this test was written: a best effort.
			e = &Event{Name: "n", Reason: "r"}
		}
		e.Type, e.Timestamp = typ, ts
		out = append(out, e)
	}
	out = append(out,
		&Event{Type: EventExecutionCompleted, Timestamp: ts, Status: StatusFailed, Failure: fail},
		&Event{Type: EventExecutionCompleted, Timestamp: ts, Status: StatusContinuedAsNew, Result: []byte(`7`)},
	)
	sort.Slice(out, func(i, j int) bool {
		return out[i].Type < out[j].Type || out[i].Type == out[j].Type && out[i].Status < out[j].Status
	})
	return out
}

// malformedSeeds are bytes DecodeEvent must reject (or at least survive).
var malformedSeeds = []string{
	``, `null`, `[]`, `{}`, `"TaskScheduled"`, `42`, `{`, `{"type":`, `{"type":"TaskScheduled"`,
	`{"type":"TaskScheduled","name":"a"}}`, `{"type":"Bogus"}`, `{"type":""}`, `{"type":5}`,
	`{"type":"TaskScheduled","name":"a","taskId":"1"}`,
	`{"type":"TaskScheduled","name":"a","taskId":1.5}`,
	`{"type":"TaskScheduled","name":"a","taskId":1e300}`,
	`{"type":"TaskScheduled","name":"a","taskId":99999999999999999999}`,
	`{"type":"TaskScheduled","name":"a","taskId":9223372036854775807}`,
	`{"type":"TaskScheduled","name":"a","taskId":-1}`,
	`{"type":"TaskCompleted","taskId":1,"attempt":-3}`,
	`{"type":"TaskCompleted","taskId":-9223372036854775808}`,
	`{"type":"ExecutionStarted","name":"o","parent":{"instanceId":"p","executionId":"e","taskId":-1}}`,
	`{"type":"TaskScheduled","name":"a","activity":{"leaseDuration":-1,"maxDeliveries":-5}}`,
	`{"type":"TaskScheduled","name":"a","input":"not base64!"}`,
	`{"type":"TaskScheduled","name":"a","input":""}`,
	`{"type":"TaskScheduled","name":"a","ts":"yesterday"}`,
	`{"type":"TaskScheduled","name":"a","ts":"10000-01-01T00:00:00Z"}`,
	`{"type":"TaskScheduled","name":"a","ts":"2025-01-01T00:00:00+23:59"}`,
	`{"type":"TimerCreated","taskId":1,"fireAt":"2025-01-01T00:00:00.1234567891234Z"}`,
	`{"type":"TaskFailed","taskId":1}`, `{"type":"TaskFailed","taskId":1,"failure":null}`,
	`{"type":"TaskFailed","taskId":1,"failure":"boom"}`,
	`{"type":"ExecutionCompleted"}`, `{"type":"ExecutionCompleted","status":"Terminated"}`,
	`{"type":"ExecutionCompleted","status":"Failed"}`,
	`{"type":"EventRaised","name":""}`, `{"type":"ExecutionStarted"}`,
	`{"TYPE":"EventRaised","NAME":"x"}`, `{"type":"EventRaised","name":"x","name":""}`,
	`{"type":"EventRaised","name":"\u0000\ud800"}`, "{\"type\":\"EventRaised\",\"name\":\"\xff\xfe\"}",
	`{"type":"TaskFailed","taskId":1,"failure":{"message":"a","cause":{"message":"b","cause":{"message":"c"}}}}`,
	`{"type":"ExecutionStarted","name":"o","parent":{}}`,
	`{"type":"Patched"}`, `{"type":"Patched","taskId":2}`, `{"type":"Patched","name":"","taskId":2}`,
	`{"type":"Patched","name":"p","taskId":-2}`, `{"type":"patched","name":"p"}`,
}

func FuzzDecodeEvent(f *testing.F) {
	for _, e := range sampleEvents() {
		b, err := EncodeEvent(e)
		if err != nil {
			f.Fatalf("encode %s: %v", e.Type, err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(bytes.Replace(b, []byte(`"taskId":`), []byte(`"taskId":-`), 1))
	}
	for _, s := range malformedSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"type":"TaskFailed","taskId":1,"failure":` + strings.Repeat(`{"message":"m","cause":`, 30) + `null` + strings.Repeat(`}`, 31)))

	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEvent(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedEvent) {
				t.Fatalf("DecodeEvent(%q) error %v does not wrap ErrMalformedEvent", data, err)
			}
			if e != nil {
				t.Fatalf("DecodeEvent(%q) returned an event with error %v", data, err)
			}
			return
		}
		enc, err := EncodeEvent(e)
		if err != nil {
			t.Fatalf("DecodeEvent(%q) accepted an event that EncodeEvent rejects: %v", data, err)
		}
		again, err := DecodeEvent(enc)
		if err != nil {
			t.Fatalf("DecodeEvent(%q) accepted an event whose encoding %s does not decode: %v", data, enc, err)
		}
		if !sameEvent(e, again) {
			t.Fatalf("round trip changed the event:\ninput   %q\ndecoded %+v\nencoded %s\nagain   %+v", data, e, enc, again)
		}
		if enc2, _ := EncodeEvent(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}

// sameEvent compares events as history sees them: instants rather than
// time.Time representations, and an empty slice the same as a missing one
// (omitempty encodes both as nothing).
func sameEvent(a, b *Event) bool {
	ca, cb := *a, *b
	normalize(reflect.ValueOf(&ca).Elem())
	normalize(reflect.ValueOf(&cb).Elem())
	return reflect.DeepEqual(ca, cb)
}

var timeType = reflect.TypeFor[time.Time]()

// normalize rewrites v in place: times to UTC, empty slices to nil. Pointers
// are followed, so it must only see values it may change.
func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			// Copy the pointee so that the caller's event is left alone.
			cp := reflect.New(v.Elem().Type())
			cp.Elem().Set(v.Elem())
			normalize(cp.Elem())
			v.Set(cp)
		}
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(v.Interface().(time.Time).UTC()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				normalize(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		cp := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(cp, v)
		for i := range cp.Len() {
			normalize(cp.Index(i))
		}
		v.Set(cp)
	}
}
