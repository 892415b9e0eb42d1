package server

import (
	"encoding/json"
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
