package duro

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/durohq/duro/backend"
)

// stepLease keeps the lease of an orchestration step or entity batch while
// it runs: it renews the lease every third of its length, as activity
// deliveries do, and a renewal that finds the lease lost cancels ctx with
// cause backend.ErrLeaseLost, so that entity operations learn it and the
// worker does not commit. The renewing goroutine starts when the first
// renewal is due: a step that finishes sooner costs no goroutine.
type stepLease struct {
	w   *Worker
	wi  *backend.OrchestrationWorkItem
	log func() *slog.Logger
	// ctx is the step's context, cancelled when the lease is lost.
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	done   chan struct{}
	wg     sync.WaitGroup
}

// keepStepLease starts keeping wi's lease; stop ends it.
func (w *Worker) keepStepLease(ctx context.Context, wi *backend.OrchestrationWorkItem, log func() *slog.Logger) *stepLease {
	l := &stepLease{w: w, wi: wi, log: log, done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	l.wg.Add(1)
	l.timer = time.AfterFunc(w.opts.OrchestrationLeaseDuration/3, l.renewLoop)
	return l
}

// renewLoop renews the lease now and then every third of its length, until
// stop is called, the lease is lost or ctx is done.
func (l *stepLease) renewLoop() {
	defer l.wg.Done()
	d := l.w.opts.OrchestrationLeaseDuration
	t := time.NewTicker(d / 3)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-l.ctx.Done():
			return
		default:
		}
		inst := l.wi.Instance
		err := l.w.be.RenewOrchestrationLease(l.ctx, &backend.RenewLeaseParams{
			ID: inst.ID, ExecutionID: inst.ExecutionID, Attempt: l.wi.Attempt, LeaseDuration: d,
		})
		switch {
		case errors.Is(err, backend.ErrLeaseLost):
			l.cancel(err)
			return
		case err != nil && l.ctx.Err() == nil:
			l.log().Warn("duro: renewing orchestration lease failed", "err", err)
		}
		select {
		case <-l.done:
			return
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stop stops renewing the lease, waits for a renewal in progress, and
// returns the error of the lost lease (wrapping backend.ErrLeaseLost), or
// nil if the step still holds it.
func (l *stepLease) stop() error {
	close(l.done)
	if l.timer.Stop() {
		l.wg.Done() // renewLoop never started
	}
	l.wg.Wait()
	var lost error
	if cause := context.Cause(l.ctx); errors.Is(cause, backend.ErrLeaseLost) {
		lost = cause
	}
	l.cancel(nil)
	return lost
}

// leaseLost reports whether the batch's lease is lost. No operation (nor
// reconciler) starts after that: the batch is discarded.
func (s *entityStep) leaseLost() bool {
	return errors.Is(context.Cause(s.ctx), backend.ErrLeaseLost)
}
