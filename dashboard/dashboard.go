// Package dashboard is duro's web dashboard: an http.Handler serving one
// page of plain HTML, CSS and JavaScript, embedded in the binary (no CDN, no
// build step), that talks to the JSON API of package server. It shows the
// instances with live status, their custom statuses and payload sizes, and
// a search by status, ID prefix, orchestration, custom status and creation
// time; each instance's history as a timeline, a compact table or JSON, and
// its work in flight (pending activities with their attempts, lease owners
// and retries); the workers and their heartbeats; and the tasks that wait
// for an operator's decision, with the decisions and the raise event,
// suspend, resume, rewind and terminate actions behind a confirmation.
//
// Mount it as server.Options.Dashboard; it serves "/" and "/assets/".
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed assets
var assets embed.FS

// csp keeps the page to its own scripts and styles, and to the API.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler returns the dashboard's handler.
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	static := http.StripPrefix("/assets/", http.FileServerFS(sub))
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		secure(h)
		_, _ = w.Write(index)
	})
	mux.HandleFunc("GET /assets/", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		secure(h)
		static.ServeHTTP(w, r)
	})
	return mux
}

func secure(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}
