package server

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's OpenAPI 3 document. TestOpenAPIRoutes keeps its
// paths in step with the registered routes.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the API's OpenAPI 3 document (JSON).
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPI)
}
