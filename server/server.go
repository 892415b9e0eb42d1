// Package server is duro's management HTTP API: an http.Handler that serves
// a JSON API over a duro.Client (start, get, list, history, raise, suspend,
// resume with decisions, rewind, terminate, purge, pending decisions,
// entities, in-flight work and workers), health and readiness probes, Prometheus metrics and the API's
// OpenAPI document, and mounts the web dashboard (package dashboard).
//
// The routes are standard net/http ServeMux patterns, listed with their
// documents in openapi.json (served at /api/v1/openapi.json). Errors are
// JSON bodies with a stable code (see the Code constants):
//
//	{"error": {"code": "instance_not_found", "message": "..."}}
//
// With Options.Token set, every API route but the OpenAPI document and
// /api/v1/info, and /metrics, needs "Authorization: Bearer TOKEN". Without
// a token the server answers only requests addressed to a loopback host,
// which keeps other web sites out through DNS rebinding; cross-origin
// browser requests that change state are refused either way.
package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// DefaultMaxBodyBytes is the default limit of a request body.
const DefaultMaxBodyBytes = 4 << 20

// Options configure a Server.
type Options struct {
	// Client is the client the API acts through. Required.
	Client *duro.Client
	// Token, when set, is the bearer token requests must carry.
	Token string
	// MaxBodyBytes limits request bodies. Default: DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Metrics are served at /metrics. Default: NewMetrics(Client), with no
	// worker attached.
	Metrics *Metrics
	// Dashboard, if set, serves every path outside /api/, /metrics,
	// /healthz and /readyz (see package dashboard).
	Dashboard http.Handler
	// Info is served at /api/v1/info (Auth is filled in).
	Info Info
	// Logger receives request errors. Default: slog.Default().
	Logger *slog.Logger
}

// Server is the API's http.Handler. Create it with New.
type Server struct {
	c       *duro.Client
	token   string
	limit   int64
	metrics *Metrics
	info    Info
	log     *slog.Logger

	mux      *http.ServeMux
	routes   []string
	handler  http.Handler
	requests *prometheus.CounterVec
	cop      *http.CrossOriginProtection
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Client == nil {
		return nil, errors.New("server: Options.Client is required")
	}
	if opts.MaxBodyBytes < 0 {
		return nil, errors.New("server: Options.MaxBodyBytes is negative")
	}
	s := &Server{c: opts.Client, token: opts.Token, limit: opts.MaxBodyBytes, metrics: opts.Metrics,
		info: opts.Info, log: opts.Logger, mux: http.NewServeMux(), cop: http.NewCrossOriginProtection()}
	if s.limit == 0 {
		s.limit = DefaultMaxBodyBytes
	}
	if s.metrics == nil {
		s.metrics = NewMetrics(opts.Client)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.info.Auth = s.token != ""
	reg := prometheus.NewRegistry()
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duro_http_requests_total", Help: "HTTP requests served, by route pattern and status code.",
	}, []string{"route", "code"})
	for _, c := range []prometheus.Collector{s.metrics, s.requests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	s.register(reg)
	if opts.Dashboard != nil {
		s.mux.Handle("/", opts.Dashboard)
	}
	s.handler = s.guard(s.mux)
	return s, nil
}

// register adds the routes. Keep openapi.json in step: TestOpenAPIRoutes
// compares them.
func (s *Server) register(reg *prometheus.Registry) {
	s.handle("GET /api/v1/info", s.getInfo)
	s.handle("GET /api/v1/openapi.json", serveOpenAPI)
	s.handle("GET /api/v1/instances", s.list)
	s.handle("POST /api/v1/instances", s.start)
	s.handle("GET /api/v1/instances/{id}", s.get)
	s.handle("DELETE /api/v1/instances/{id}", s.purge)
	s.handle("GET /api/v1/instances/{id}/history", s.history)
	s.handle("POST /api/v1/instances/{id}/events", s.raise)
	s.handle("POST /api/v1/instances/{id}/suspend", s.suspend)
	s.handle("POST /api/v1/instances/{id}/resume", s.resume)
	s.handle("GET /api/v1/instances/{id}/resumes/{resumeId}", s.resumeOutcome)
	s.handle("POST /api/v1/instances/{id}/rewind", s.rewind)
	s.handle("POST /api/v1/instances/{id}/terminate", s.terminate)
	s.handle("POST /api/v1/purge", s.purgeWhere)
	s.handle("GET /api/v1/decisions", s.decisions)
	s.handle("GET /api/v1/workers", s.workers)
	s.handle("GET /api/v1/entities", s.entities)
	s.handle("POST /api/v1/entities/clean", s.cleanEntities)
	s.handle("GET /api/v1/entities/{name}/{key}", s.entity)
	s.handle("POST /api/v1/entities/{name}/{key}/signals", s.signal)
	s.handle("GET /healthz", s.healthz)
	s.handle("GET /readyz", s.readyz)
	s.handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}).ServeHTTP)
	// Anything else under /api/ is a JSON 404 or 405.
	s.mux.HandleFunc("/api/", s.noRoute)
}

func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.routes = append(s.routes, pattern)
	s.mux.HandleFunc(pattern, h)
}

// Routes returns the patterns of the server's routes, as registered.
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// public reports whether path is served without a token.
func public(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/info":
		return true
	}
	return path != "/metrics" && !strings.HasPrefix(path, "/api/")
}

// guard applies, in order: the Host check without a token, cross-origin
// protection, the bearer token, the body limit; then counts the request.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() { s.requests.WithLabelValues(routeLabel(r), itoa(sw.status)).Inc() }()
		if s.token == "" && !loopbackHost(r.Host) {
			writeErrorCode(sw, http.StatusForbidden, CodeForbidden,
				"this server has no token and answers only requests to localhost, 127.0.0.1 or [::1]")
			return
		}
		if err := s.cop.Check(r); err != nil {
			writeErrorCode(sw, http.StatusForbidden, CodeForbidden, "cross-origin request refused")
			return
		}
		if s.token != "" && !public(r.URL.Path) && !s.authorized(r) {
			sw.Header().Set("WWW-Authenticate", `Bearer realm="duro"`)
			writeErrorCode(sw, http.StatusUnauthorized, CodeUnauthorized, "missing or wrong bearer token")
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(sw, r.Body, s.limit)
		}
		next.ServeHTTP(sw, r)
	})
}

// authorized reports whether the request carries the token. The scheme's
// name is case-insensitive (RFC 9110, section 11.1): "bearer" is "Bearer".
func (s *Server) authorized(r *http.Request) bool {
	scheme, got, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	return ok && strings.EqualFold(scheme, "Bearer") &&
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.token)) == 1
}

// routeLabel is the request's route pattern, bounded for metrics.
func routeLabel(r *http.Request) string {
	switch {
	case r.Pattern != "" && r.Pattern != "/":
		return r.Pattern
	case strings.HasPrefix(r.URL.Path, "/api/"):
		return "unmatched"
	}
	return "dashboard"
}

func itoa(n int) string {
	if n >= 100 && n < 600 {
		return string(rune('0'+n/100)) + string(rune('0'+n/10%10)) + string(rune('0'+n%10))
	}
	return "other"
}

// LoopbackHost reports whether host (a host or host:port) names this
// machine only: localhost or a loopback IP.
func LoopbackHost(host string) bool { return loopbackHost(host) }

func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// statusWriter records the status code.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// noRoute answers a path under /api/ that no route matches: 405 with Allow
// when another method would match, else 404.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe, err := http.NewRequestWithContext(r.Context(), m, r.URL.String(), nil)
		if err != nil {
			continue
		}
		probe.Host = r.Host
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/api/" {
			w.Header().Add("Allow", m)
		}
	}
	if w.Header().Get("Allow") != "" {
		writeErrorCode(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path)
		return
	}
	writeErrorCode(w, http.StatusNotFound, CodeNotFound, "no API route "+r.URL.Path)
}

func (s *Server) getInfo(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.info)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Pinger is an optional capability of a backend: a cheap check that the
// store answers. Backends without it are checked with a one-instance list.
type Pinger interface {
	Ping(ctx context.Context) error
}

// readyz checks that the store answers within two seconds.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	be := s.c.Backend()
	var err error
	if p, ok := be.(Pinger); ok {
		err = p.Ping(ctx)
	} else {
		_, err = be.ListInstances(ctx, &backend.ListInstancesParams{PageSize: 1})
	}
	if err != nil {
		writeErrorCode(w, http.StatusServiceUnavailable, CodeUnavailable, "the store does not answer: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
