package duro

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/replay"
)

// A termination needs no orchestration code: the step that records it
// only appends the termination, releases held entity locks and tells the
// children and the parent. So when no worker holds an instance's step
// (none is running, or none registers the orchestration), the client runs
// that step itself instead of leaving the request in the inbox, with an
// ordinary claim (backend.InstanceClaimer: attempt number, lease, fencing)
// and the engine's own termination step.

// terminateLease bounds the client's claim of a step it terminates.
const terminateLease = 30 * time.Second

// clientOwner is the lease owner of the steps a client claims.
var clientOwner = func() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("client %s:%d", host, os.Getpid())
}()

// terminateNow applies the termination request msgID of instance id at
// once if the backend can claim the instance's step and nobody holds it.
// It reports whether the instance is now terminated by it. A failure
// leaves the request queued, for a worker's next step.
func (c *Client) terminateNow(ctx context.Context, id, msgID string) bool {
	ic, ok := c.be.(backend.InstanceClaimer)
	if !ok || replay.EntityName(id) != "" {
		return false // an entity's batches are its workers' to run
	}
	wi, err := ic.ClaimInstanceStep(ctx, id, &backend.ClaimParams{Owner: clientOwner, LeaseDuration: terminateLease})
	if err != nil || wi == nil {
		return false
	}
	release := func() {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = c.be.AbandonOrchestrationStep(actx, &backend.AbandonParams{ID: id, ExecutionID: wi.Instance.ExecutionID, Attempt: wi.Attempt})
	}
	carries := false
	for _, m := range wi.Messages {
		carries = carries || m.ID == msgID
	}
	if !carries {
		release() // a worker took the request meanwhile, or the inbox holds too much
		return false
	}
	params, err := replay.Execute(&replay.Params{
		WorkItem: wi, Now: c.now(), FailureFromError: replay.DefaultFailure,
		Lookup: func(string) (replay.Orchestrator, bool) { return nil, false },
	})
	if err != nil || params.Status != StatusTerminated {
		release()
		return false
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return c.be.CompleteOrchestrationStep(cctx, params) == nil
}
