package backend

import (
	"errors"
	"strings"
	"testing"
)

func TestEncodeDecodeEventRoundTrip(t *testing.T) {
	t.Parallel()
	for _, e := range sampleEvents() {
		t.Run(string(e.Type)+string(e.Status), func(t *testing.T) {
			t.Parallel()
			b, err := EncodeEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeEvent(b)
			if err != nil {
				t.Fatalf("DecodeEvent(%s): %v", b, err)
			}
			if !sameEvent(e, got) {
				t.Fatalf("round trip of %s:\nwant %+v\ngot  %+v", b, e, got)
			}
		})
	}
}

func TestEncodeEventRejects(t *testing.T) {
	t.Parallel()
	for _, e := range []*Event{nil, {}, {Type: "Bogus", Name: "x"}} {
		if b, err := EncodeEvent(e); !errors.Is(err, ErrMalformedEvent) {
			t.Errorf("EncodeEvent(%+v) = %s, %v; want ErrMalformedEvent", e, b, err)
		}
	}
}

func TestDecodeEventValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		// wantErr is a substring of the error; empty means the event is valid.
		wantErr string
	}{
		{"Minimal", `{"type":"OrchestratorStarted","ts":"2025-01-01T00:00:00Z"}`, ""},
		{"NoTimestamp", `{"type":"OrchestratorStarted"}`, ""},
		{"TaskIDZero", `{"type":"TaskScheduled","name":"a","taskId":0}`, ""},
		{"UnknownFieldIgnored", `{"type":"EventRaised","name":"go","color":"blue"}`, ""},
		{"CompletedWithoutResult", `{"type":"ExecutionCompleted","status":"Completed"}`, ""},

		{"Empty", ``, "unexpected end of JSON input"},
		{"Null", `null`, `unknown type ""`},
		{"Array", `[]`, "cannot unmarshal array"},
		{"Truncated", `{"type":"TaskScheduled","na`, "unexpected end of JSON input"},
		{"TrailingGarbage", `{"type":"EventRaised","name":"go"}x`, "invalid character"},
		{"MissingType", `{"name":"a"}`, `unknown type ""`},
		{"UnknownType", `{"type":"TaskExploded"}`, `unknown type "TaskExploded"`},
		{"TypeIsNumber", `{"type":5}`, "cannot unmarshal number"},
		{"TaskIDIsString", `{"type":"TaskCompleted","taskId":"1"}`, "cannot unmarshal string"},
		{"TaskIDIsFraction", `{"type":"TaskCompleted","taskId":1.5}`, "cannot unmarshal number 1.5"},
		{"TaskIDOverflows", `{"type":"TaskCompleted","taskId":99999999999999999999}`, "cannot unmarshal number"},
		{"TaskIDHuge", `{"type":"TaskCompleted","taskId":1e300}`, "cannot unmarshal number"},
		{"NegativeTaskID", `{"type":"TaskCompleted","taskId":-1}`, "negative task ID -1"},
		{"MinIntTaskID", `{"type":"TaskCompleted","taskId":-9223372036854775808}`, "negative task ID"},
		{"NegativeAttempt", `{"type":"TaskCompleted","taskId":1,"attempt":-2}`, "negative attempt -2"},
		{"BadBase64", `{"type":"EventRaised","name":"go","input":"%%%"}`, "illegal base64"},
		{"BadTimestamp", `{"type":"EventRaised","name":"go","ts":"yesterday"}`, "cannot parse"},
		{"StartedWithoutName", `{"type":"ExecutionStarted"}`, "ExecutionStarted: missing name"},
		{"ScheduledWithoutName", `{"type":"TaskScheduled","taskId":1}`, "TaskScheduled: missing name"},
		{"ChildWithoutName", `{"type":"SubOrchestrationCreated","taskId":1}`, "SubOrchestrationCreated: missing name"},
		{"RaisedWithoutName", `{"type":"EventRaised"}`, "EventRaised: missing name"},
		{"SentWithoutName", `{"type":"EventSent","taskId":1}`, "EventSent: missing name"},
		{"Patched", `{"type":"Patched","taskId":3,"name":"v2"}`, ""},
		{"PatchedWithoutName", `{"type":"Patched","taskId":3}`, "Patched: missing name"},
		{"TaskFailedWithoutFailure", `{"type":"TaskFailed","taskId":1}`, "TaskFailed: missing failure"},
		{"ChildFailedWithoutFailure", `{"type":"SubOrchestrationFailed","taskId":1,"failure":null}`, "SubOrchestrationFailed: missing failure"},
		{"FailureIsString", `{"type":"TaskFailed","taskId":1,"failure":"boom"}`, "cannot unmarshal string"},
		{"CompletedWithoutStatus", `{"type":"ExecutionCompleted"}`, `ExecutionCompleted: bad status ""`},
		{"CompletedTerminated", `{"type":"ExecutionCompleted","status":"Terminated"}`, `bad status "Terminated"`},
		{"FailedWithoutFailure", `{"type":"ExecutionCompleted","status":"Failed"}`, "failed without failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := DecodeEvent([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil || e == nil {
					t.Fatalf("DecodeEvent(%s) = %v, %v; want an event", tc.in, e, err)
				}
				return
			}
			if !errors.Is(err, ErrMalformedEvent) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("DecodeEvent(%s) error = %v; want ErrMalformedEvent with %q", tc.in, err, tc.wantErr)
			}
			if e != nil {
				t.Fatalf("DecodeEvent(%s) returned %+v with its error", tc.in, e)
			}
		})
	}
}
