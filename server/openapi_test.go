package server

import (
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// TestOpenAPIRoutes fails when a route is registered without being
// documented in openapi.json, or documented without being registered.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{noWorker: true})
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q, want 3.x", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	registered := b.srv.Routes()
	sort.Strings(documented)
	sort.Strings(registered)
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %q is not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("openapi.json documents %q, which is not a route", d)
		}
	}

	// The error codes the document lists are the server's.
	enum := doc.Components.Schemas["Error"].Properties["code"].Enum
	var codes []string
	for c := range codeStatus {
		codes = append(codes, c)
	}
	sort.Strings(enum)
	sort.Strings(codes)
	if !slices.Equal(enum, codes) {
		t.Errorf("Error.code enum %v\nserver codes %v", enum, codes)
	}

	// The document served is the embedded one.
	r := b.do("GET", "/api/v1/openapi.json", nil)
	if r.status != 200 || string(r.body) != string(OpenAPI()) {
		t.Errorf("served document differs (%d)", r.status)
	}
}

// TestOpenAPISchemas fails when a document's schema and its Go type differ
// in their properties, so the document says what the API answers.
func TestOpenAPISchemas(t *testing.T) {
	t.Parallel()
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
				AllOf      []json.RawMessage          `json:"allOf"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	types := map[string]any{
		"Instance": Instance{}, "InstancePage": InstancePage{}, "PendingDecision": PendingDecision{},
		"Suspension": Suspension{}, "ResumeOutcome": ResumeOutcome{}, "DecisionOutcome": DecisionOutcome{},
		"Failure": Failure{}, "Event": Event{}, "History": History{}, "Entity": Entity{}, "EntityPage": EntityPage{},
		"Info": Info{}, "Sample": Sample{}, "StartRequest": StartRequest{}, "RaiseRequest": RaiseRequest{},
		"ResumeRequest": ResumeRequest{}, "ResumeResponse": ResumeResponse{}, "PurgeRequest": PurgeRequest{},
		"PurgeResponse": PurgeResponse{}, "SignalRequest": SignalRequest{}, "CleanResponse": CleanResponse{},
		"Decision": Decision{}, "Error": Error{}, "ErrorBody": ErrorBody{},
	}
	for name, v := range types {
		s, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("openapi.json has no schema %s", name)
			continue
		}
		if len(s.AllOf) > 0 {
			continue
		}
		var documented []string
		for p := range s.Properties {
			documented = append(documented, p)
		}
		fields := jsonFields(reflect.TypeOf(v))
		sort.Strings(documented)
		sort.Strings(fields)
		if !slices.Equal(documented, fields) {
			t.Errorf("schema %s has properties %v; the Go type has %v", name, documented, fields)
		}
	}
}

// jsonFields lists the JSON names of a struct's fields, embedded ones
// included.
func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}
