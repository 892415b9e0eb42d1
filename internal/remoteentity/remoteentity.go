// Package remoteentity runs entity batches whose operations execute
// outside this process — a Durable Task SDK's entity worker behind
// server/dtgrpc — on duro's entity engine. The engine keeps everything
// but the operations' code: the envelope, the window of processed
// request IDs, locks, queues, responses to callers and the batch's
// atomic commit. It prepares a batch (the operations the code must run,
// in order, and the state they start from) and turns the code's
// outcomes into the batch's effects.
//
// The engine lives in the root package, which registers its
// implementation here when it is initialised; this package only carries
// the types, so that a server can use the engine without duro's public
// API growing a seam meant for servers.
package remoteentity

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/durohq/duro/backend"
)

// Options configure the engine for a batch; zero fields get the Go
// worker's defaults.
type Options struct {
	// DedupWindow and DedupAge bound the window of processed request IDs
	// (duro.WorkerOptions.EntityDedupWindow, EntityDedupAge).
	DedupWindow int
	DedupAge    time.Duration
	// QueueLimit bounds the requests that wait for a locked entity
	// (duro.WorkerOptions.EntityQueueLimit).
	QueueLimit int
	// Logger receives the batch's logs; nil discards them.
	Logger *slog.Logger
}

// Operation is one operation the remote code must run.
type Operation struct {
	// RequestID is the request's message ID, unique per request.
	RequestID string
	Name      string
	Input     []byte
}

// Outcome is the remote code's answer to one operation: its output, or
// its failure.
type Outcome struct {
	Output  []byte
	Failure *backend.Failure
}

// Signal is an operation the batch's code sends to an entity.
type Signal struct {
	// Seq numbers the batch's signals and starts (the SDK's action ID);
	// with the batch it makes the message's ID.
	Seq       int
	EntityID  string
	Operation string
	Input     []byte
	// At, when after the commit, delays the signal.
	At time.Time
}

// Start is an orchestration the batch's code starts.
type Start struct {
	Seq        int
	InstanceID string
	Name       string
	Input      []byte
	// At, when after the commit, is the scheduled start.
	At time.Time
}

// Result is what the remote code did with a batch.
type Result struct {
	// Outcomes has one entry per operation of the batch, in order.
	Outcomes []Outcome
	// State is the entity's state after the batch; Exists is false when
	// the entity has no state (deleted, or never set).
	State  []byte
	Exists bool
	// Signals and Starts are the messages of the operations that
	// succeeded.
	Signals []Signal
	Starts  []Start
}

// Batch is one entity batch prepared for remote code.
type Batch interface {
	// Operations are the operations to run, in order; none means the
	// batch only applied locks, releases and duplicates: finish it with
	// an empty Result.
	Operations() []Operation
	// State is the entity's state before the batch (exists false: none).
	State() (state []byte, exists bool)
	// Finish returns the batch's effects, to commit with
	// backend.Backend.CompleteOrchestrationStep. It fails, committing
	// nothing, on a result that does not fit the batch.
	Finish(r *Result) (*backend.CompleteOrchestrationStepParams, error)
}

// PrepareFunc prepares the batch of entity work item wi.
type PrepareFunc func(ctx context.Context, be backend.Backend, wi *backend.OrchestrationWorkItem, opts Options) (Batch, error)

var prepare PrepareFunc

// Register installs the engine; the root package calls it once, at
// initialisation.
func Register(f PrepareFunc) { prepare = f }

// ErrNoEngine is returned by Prepare when no engine registered.
var ErrNoEngine = errors.New("remoteentity: no entity engine registered (import github.com/durohq/duro)")

// Prepare prepares the batch of entity work item wi: it reads the
// window of processed requests and applies locks, releases, queues and
// deduplication, leaving the operations to the remote code.
func Prepare(ctx context.Context, be backend.Backend, wi *backend.OrchestrationWorkItem, opts Options) (Batch, error) {
	if prepare == nil {
		return nil, ErrNoEngine
	}
	return prepare(ctx, be, wi, opts)
}
