package duro

import (
	"context"

	"github.com/durohq/duro/backend"
)

// startWithStep creates the instance p through the worker's backend with
// its first step run on this worker inside the creation's transaction
// (backend.StartStepCommitter), for a Client whose ClientOptions.Worker is
// w. It reports false, having done nothing, when it cannot: the backend
// lacks the capability, the worker is not running or is stopping, it does
// not register the orchestration, or no orchestration slot is free; the
// client then creates the instance as usual.
func (w *Worker) startWithStep(ctx context.Context, p *backend.CreateInstanceParams) (bool, error) {
	sc, ok := w.be.(backend.StartStepCommitter)
	if !ok {
		return false, nil
	}
	if _, ok := w.reg.orchestration(p.Name); !ok {
		return false, nil
	}
	w.mu.Lock()
	running := w.started && !w.stopped
	w.mu.Unlock()
	if !running {
		return false, nil
	}
	// Start has returned: the loops and claims are set, and a reserved
	// slot keeps the orchestration loop (and Stop) waiting for its Hand.
	// A slot the loop holds for a claim in flight is waited for; a worker
	// whose slots are all busy leaves the instance to be claimed.
	reserved := w.orch.ReserveOne(ctx)
	if reserved == 0 {
		return false, nil
	}
	var f *fusedRun
	claim := w.orchClaim
	out, err := sc.CreateInstanceStep(ctx, p, &claim, w.fusedStep(ctx, &f))
	if err != nil {
		out = nil
	}
	w.handFused(out, f, reserved, true)
	return true, err
}
