package dtgrpc

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

// Options configure a Server.
type Options struct {
	// Client is the duro client of the store served; required.
	Client *duro.Client
	// Token, when set, is the bearer token every call must carry in its
	// "authorization" metadata ("Bearer TOKEN"). Without one, only calls
	// from loopback addresses are answered.
	Token string
	// Policies make activities at most once by name, for SDKs that cannot
	// set tags (see ParsePolicy). A policy here is like a Go worker's
	// registration: the stronger of it and the call's tags is in force,
	// and its OnDuplicate wins.
	Policies map[string]Policy
	// LeaseDuration is the lease of a work item handed to an SDK, renewed
	// by the server while the SDK's stream lives. Default: 30s.
	LeaseDuration time.Duration
	// PollInterval is how often a stream looks for work when the store
	// sends no wake-ups. Default: 500ms.
	PollInterval time.Duration
	// MaxDeliveries is the delivery limit of activities (see
	// duro.WorkerOptions.MaxDeliveries). Default: duro.DefaultMaxDeliveries.
	MaxDeliveries int
	// Logger receives the server's logs. Default: discarded.
	Logger *slog.Logger
}

// Policy is an activity's at-most-once policy set on the server.
type Policy struct {
	// OnDuplicate is duro.OnDuplicateFail, duro.OnDuplicateSuspend or
	// duro.OnDuplicateReconcile.
	OnDuplicate duro.OnDuplicate
	// ReconcileActivity is the activity that reconciles a possible
	// duplicate; required with OnDuplicateReconcile.
	ReconcileActivity string
}

// ParsePolicy parses NAME=AtMostOnce[:Fail|:Suspend|:Reconcile:ACTIVITY],
// the form of duro server's --activity-policy.
func ParsePolicy(s string) (name string, p Policy, err error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return "", p, fmt.Errorf("activity policy %q: want NAME=AtMostOnce[:Fail|:Suspend|:Reconcile:ACTIVITY]", s)
	}
	g, od, _ := strings.Cut(rest, ":")
	od, rec, _ := strings.Cut(od, ":")
	if !strings.EqualFold(g, "AtMostOnce") {
		return "", p, fmt.Errorf("activity policy %q: the guarantee must be AtMostOnce, not %q", s, g)
	}
	switch {
	case od == "" || strings.EqualFold(od, "Fail"):
		p.OnDuplicate = duro.OnDuplicateFail
	case strings.EqualFold(od, "Suspend"):
		p.OnDuplicate = duro.OnDuplicateSuspend
	case strings.EqualFold(od, "Reconcile"):
		p.OnDuplicate, p.ReconcileActivity = duro.OnDuplicateReconcile, rec
		if rec == "" {
			return "", p, fmt.Errorf("activity policy %q: Reconcile needs the reconcile activity: NAME=AtMostOnce:Reconcile:ACTIVITY", s)
		}
	default:
		return "", p, fmt.Errorf("activity policy %q: on a duplicate, Fail, Suspend or Reconcile:ACTIVITY, not %q", s, od)
	}
	if rec != "" && p.OnDuplicate != duro.OnDuplicateReconcile {
		return "", p, fmt.Errorf("activity policy %q: only Reconcile names an activity", s)
	}
	return name, p, nil
}

// Server implements TaskHubSidecarService on a duro store.
type Server struct {
	dtpb.UnimplementedTaskHubSidecarServiceServer

	c    *duro.Client
	be   backend.Backend
	opts Options
	log  *slog.Logger

	mu sync.Mutex
	// items are the work items handed out on live streams, by
	// completion token.
	items   map[string]*item
	streams int
}

// New returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Client == nil {
		return nil, errors.New("dtgrpc: Options.Client is required")
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = 30 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 500 * time.Millisecond
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = duro.DefaultMaxDeliveries
	}
	for name, p := range opts.Policies {
		switch {
		case p.OnDuplicate == duro.OnDuplicateReconcile && p.ReconcileActivity == "":
			return nil, fmt.Errorf("dtgrpc: policy of %q: OnDuplicate Reconcile needs a ReconcileActivity", name)
		case p.OnDuplicate != duro.OnDuplicateFail && p.OnDuplicate != duro.OnDuplicateSuspend && p.OnDuplicate != duro.OnDuplicateReconcile:
			return nil, fmt.Errorf("dtgrpc: policy of %q: OnDuplicate must be Fail, Suspend or Reconcile, not %q", name, p.OnDuplicate)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{c: opts.Client, be: opts.Client.Backend(), opts: opts, log: log, items: map[string]*item{}}, nil
}

// GRPCServer returns a gRPC server that serves s, with the token check
// (or the loopback check) in front of every call.
func (s *Server) GRPCServer(extra ...grpc.ServerOption) *grpc.Server {
	o := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := s.authorize(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := s.authorize(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}, extra...)
	gs := grpc.NewServer(o...)
	dtpb.RegisterTaskHubSidecarServiceServer(gs, s)
	return gs
}

// authorize applies the HTTP API's rule: the bearer token when the server
// has one, else loopback callers only.
func (s *Server) authorize(ctx context.Context) error {
	if s.opts.Token == "" {
		p, ok := peer.FromContext(ctx)
		if !ok || !loopbackAddr(p.Addr) {
			return status.Error(codes.PermissionDenied, "this server has no token and answers only loopback callers")
		}
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		got, ok := strings.CutPrefix(strings.TrimSpace(v), "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.opts.Token)) == 1 {
			return nil
		}
	}
	return status.Error(codes.Unauthenticated, `missing or wrong bearer token (metadata "authorization: Bearer TOKEN")`)
}

func loopbackAddr(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// grpcError maps duro's errors to gRPC status codes.
func grpcError(op string, err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, backend.ErrInstanceNotFound):
		code = codes.NotFound
	case errors.Is(err, backend.ErrInstanceExists):
		code = codes.AlreadyExists
	case errors.Is(err, backend.ErrInstanceFinished), errors.Is(err, backend.ErrInstanceNotFinished),
		errors.Is(err, backend.ErrInstanceNotFailed), errors.Is(err, backend.ErrLeaseLost),
		errors.Is(err, duro.ErrDecisionRequired), errors.Is(err, duro.ErrResumePending),
		errors.Is(err, duro.ErrNoPendingDecision):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, errInvalid):
		code = codes.InvalidArgument
	}
	return status.Error(code, op+": "+err.Error())
}

// errInvalid marks bad requests (InvalidArgument).
var errInvalid = errors.New("invalid request")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}
