package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/durohq/duro"
	"github.com/durohq/duro/dashboard"
	"github.com/durohq/duro/internal/telemetry/export"
	"github.com/durohq/duro/server"
	"github.com/durohq/duro/server/dtgrpc"
)

// annotationTimeout, set to "none" on a command, exempts it from --timeout.
const annotationTimeout = "duro.timeout"

// defaultListen is where duro server listens unless --listen says otherwise:
// this machine only.
const defaultListen = "127.0.0.1:8233"

// serverOptions are the flags of duro server.
type serverOptions struct {
	listen    string
	demo      bool
	create    bool
	maxBody   int64
	trace     export.TraceConfig
	logFormat string
	// stopTimeout bounds the demo worker's graceful stop on SIGTERM.
	stopTimeout time.Duration
	// grpcListen, when set, is where the Durable Task protocol is served.
	grpcListen string
	// policies are --activity-policy values.
	policies []string
}

func (a *app) serverCmd() *cobra.Command {
	var o serverOptions
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Serve the JSON API, the web dashboard and metrics for a store",
		Long: `Server serves, for the store named by --store:

  /                    the web dashboard: instances, timelines, pending decisions
  /api/v1/...          the JSON API (its OpenAPI document: /api/v1/openapi.json)
  /metrics             Prometheus metrics
  /healthz, /readyz    liveness, and readiness (the store answers)

The instance commands act through it with --server URL.

The store's workers run in your programs; duro server runs none of your
code. With --demo it also hosts a worker running the demo's workflows
(ProcessOrder, PayOrder): start them with 'duro demo --server URL' or from
the dashboard, and the worker is stopped in the middle of each order's
first charge, as a crash would, so PayOrder's at-most-once ChargeCard waits
for your decision on the dashboard's Decisions page. Use --demo on a store
of its own.

A SQLite store that does not exist is an error (a mistyped --store would
serve an empty store), unless --create asks for a new one; --demo, whose
store is its own, creates it too.

Authentication: with a token (--token, DURO_TOKEN or --token-file) every
API request and /metrics need "Authorization: Bearer TOKEN". Without one,
the server listens on a loopback address only, and refuses requests to any
other host name.

With --grpc-listen ADDRESS it also serves the Durable Task sidecar protocol
(gRPC service TaskHubSidecarService), so the Durable Task SDKs' clients and
workers (JavaScript, .NET, Java, Python) run on the store: see
docs/durable-task-protocol.md. It takes the same token, as gRPC metadata
"authorization: Bearer TOKEN", and without one it listens on loopback only.
--activity-policy NAME=AtMostOnce[:Fail|:Suspend|:Reconcile:ACTIVITY] makes an
activity at most once for SDKs that cannot set duro's tags (Reconcile runs
the SDK's activity ACTIVITY on a possible duplicate).

Tracing is off unless --trace-exporter is stdout or otlp (OTLP over HTTP to
--trace-endpoint, or to OTEL_EXPORTER_OTLP_ENDPOINT). --timeout does not
apply: the server runs until interrupted (Ctrl-C, SIGTERM).`,
		Example: `  duro server --store demo.db --demo
  duro server --store new.db --create
  duro server --store prod.db --listen 0.0.0.0:8233 --token-file /run/secrets/duro-token
  duro server --store app.db --grpc-listen 127.0.0.1:4001 --activity-policy ChargeCard=AtMostOnce:Suspend
  duro server --store demo.db --trace-exporter otlp --trace-endpoint http://localhost:4318`,
		Args:        exactArgs(),
		Annotations: map[string]string{annotationTimeout: "none"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runServer(cmd, &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", defaultListen, "the `ADDRESS` to listen on (host:port)")
	f.BoolVar(&o.demo, "demo", false, "also run a worker with the demo's workflows (see above)")
	f.DurationVar(&o.stopTimeout, "stop-timeout", 30*time.Second,
		"on SIGTERM or Ctrl-C, how long the demo worker lets running activities finish (releasing unstarted ones at once) before it hands them back")
	f.BoolVar(&o.create, "create", false, "create the SQLite store if it does not exist")
	f.Int64Var(&o.maxBody, "max-body", server.DefaultMaxBodyBytes, "the largest request body accepted, in `BYTES`")
	f.StringVar(&o.trace.Exporter, "trace-exporter", export.ExporterNone, "where the demo worker's spans go: none, stdout or otlp")
	f.StringVar(&o.trace.Endpoint, "trace-endpoint", "", "the OTLP/HTTP `URL` for --trace-exporter otlp (default: OTEL_EXPORTER_OTLP_ENDPOINT or https://localhost:4318)")
	f.Float64Var(&o.trace.SampleRatio, "trace-sample", 1, "the fraction of executions traced, in (0, 1]")
	f.StringVar(&o.logFormat, "log-format", "text", "the log format on stderr: text or json")
	f.StringVar(&o.grpcListen, "grpc-listen", "", "also serve the Durable Task sidecar protocol (gRPC) on this `ADDRESS` (host:port)")
	f.StringArrayVar(&o.policies, "activity-policy", nil,
		"`NAME=AtMostOnce[:Fail|:Suspend|:Reconcile:ACTIVITY]`: make the activity NAME at most once for Durable Task SDK workers (repeatable)")
	return cmd
}

// apiToken returns the bearer token from --token, DURO_TOKEN or
// --token-file ("" for none).
func (a *app) apiToken(cmd *cobra.Command) (string, error) {
	if cmd.Flags().Changed("token") && a.tokenFile != "" {
		return "", usageErrorf("give --token or --token-file, not both")
	}
	switch {
	case a.token != "":
		return a.token, nil
	case a.tokenFile != "":
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return "", usageErrorf("--token-file: %v", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", usageErrorf("--token-file %s is empty", a.tokenFile)
		}
		return t, nil
	}
	return strings.TrimSpace(a.getenv("DURO_TOKEN")), nil
}

// remote returns the client of --server's API.
func (a *app) remote(cmd *cobra.Command) (*remoteClient, error) {
	if cmd.Flags().Changed("store") {
		return nil, usageErrorf("give --store or --server, not both")
	}
	token, err := a.apiToken(cmd)
	if err != nil {
		return nil, err
	}
	return newRemoteClient(a.server, token)
}

func (a *app) runServer(cmd *cobra.Command, o *serverOptions) error {
	if a.server != "" {
		return usageErrorf("--server names a server to act through; duro server serves --store itself")
	}
	token, err := a.apiToken(cmd)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return usageErrorf("--listen %q: want host:port, such as %s", o.listen, defaultListen)
	}
	if token == "" && !server.LoopbackHost(host) {
		return usageErrorf("refusing to listen on %s without a token: anyone who reaches it could act on every instance. "+
			"Give a token (--token, DURO_TOKEN or --token-file), or listen on a loopback address (--listen %s)", o.listen, defaultListen)
	}
	var dt *dtgrpc.Options
	if o.grpcListen != "" {
		ghost, _, err := net.SplitHostPort(o.grpcListen)
		if err != nil {
			return usageErrorf("--grpc-listen %q: want host:port, such as 127.0.0.1:4001", o.grpcListen)
		}
		if token == "" && !server.LoopbackHost(ghost) {
			return usageErrorf("refusing to serve gRPC on %s without a token: anyone who reaches it could act on every instance. "+
				"Give a token (--token, DURO_TOKEN or --token-file), or listen on a loopback address", o.grpcListen)
		}
		dt = &dtgrpc.Options{Token: token, Policies: map[string]dtgrpc.Policy{}}
		for _, v := range o.policies {
			name, p, err := dtgrpc.ParsePolicy(v)
			if err != nil {
				return usageErrorf("--activity-policy: %v", err)
			}
			dt.Policies[name] = p
		}
	} else if len(o.policies) > 0 {
		return usageErrorf("--activity-policy applies to Durable Task SDK workers: give --grpc-listen too")
	}
	if o.maxBody <= 0 {
		return usageErrorf("--max-body must be positive")
	}
	logger, err := serverLogger(a.stderr, o.logFormat)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if !a.storeGiven(cmd) {
		fmt.Fprintf(a.stdout, "store: %s (the default; name another with --store)\n", a.store)
	}
	if !o.create && !o.demo {
		ok, err := storeExists(a.store)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("store %s does not exist: give --create to make a new one, or name another with --store PATH or DURO_STORE", a.store)
		}
	}
	be, err := openStore(ctx, a.store)
	if err != nil {
		return err
	}
	defer func() { _ = be.Close() }()
	c := duro.NewClient(be, nil)
	metrics := server.NewMetrics(c)
	info := server.Info{Version: buildVersion()}

	tp, shutdownTracing, err := export.NewTracerProvider(ctx, withStdout(o.trace, a.stdout))
	if err != nil {
		return usageErrorf("--trace-exporter: %v", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()

	var dh *demoHost
	if o.demo {
		if err := checkServerDemoStore(ctx, c, a.store); err != nil {
			return err
		}
		dh = &demoHost{be: metrics.Backend(be), log: logger, tracer: tp, metrics: metrics, stopTimeout: o.stopTimeout,
			out: &demoPrinter{w: a.stdout, start: time.Now()}}
		info.Workers = "demo"
		info.Samples = demoSamples()
	}
	srv, err := server.New(server.Options{Client: c, Token: token, MaxBodyBytes: o.maxBody, Metrics: metrics,
		Dashboard: dashboard.Handler(), Info: info, Logger: logger})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	url := "http://" + ln.Addr().String()
	fmt.Fprintf(a.stdout, "duro server listening on %s\n", url)
	fmt.Fprintf(a.stdout, "  dashboard: %s/\n  API:       %s/api/v1/ (OpenAPI: %s/api/v1/openapi.json)\n  metrics:   %s/metrics\n", url, url, url, url)
	if token == "" {
		fmt.Fprintf(a.stdout, "  no token: loopback only\n")
	}

	if dt != nil {
		dt.Client, dt.Logger = c, logger
		ds, err := dtgrpc.New(*dt)
		if err != nil {
			return err
		}
		gln, err := net.Listen("tcp", o.grpcListen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", o.grpcListen, err)
		}
		gs := ds.GRPCServer(grpc.WaitForHandlers(true))
		defer gs.Stop()
		go func() { _ = gs.Serve(gln) }()
		fmt.Fprintf(a.stdout, "  Durable Task protocol (gRPC): %s\n", gln.Addr())
	}

	var hostDone chan error // nil, never ready, without --demo
	hostCtx, stopHost := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHost()
	if dh != nil {
		fmt.Fprintf(a.stdout, "  demo worker: runs ProcessOrder and PayOrder; try: duro demo --server %s\n", url)
		hostDone = make(chan error, 1)
		go func() { hostDone <- dh.run(hostCtx) }()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	select {
	case <-ctx.Done():
	case err = <-serveErr:
	case err = <-hostDone:
		if err == nil {
			err = errors.New("the demo worker stopped")
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	stopHost()
	if dh != nil {
		if herr := <-hostDone; err == nil && herr != nil {
			err = herr
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err == nil {
		fmt.Fprintf(a.stdout, "duro server stopped\n")
	}
	return err
}

// withStdout sends the stdout exporter's spans to w.
func withStdout(cfg export.TraceConfig, w io.Writer) export.TraceConfig {
	cfg.Stdout = w
	return cfg
}

func serverLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, usageErrorf("--log-format: want text or json, not %q", format)
}
