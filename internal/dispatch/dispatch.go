// Package dispatch runs the claim loops of a worker: it claims work items up
// to a concurrency limit, hands each to a handler goroutine, sleeps when idle
// until the backend signals new work or the poll interval passes, and backs
// off when the backend fails. It knows nothing of orchestrations or
// activities.
package dispatch

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Loop claims and handles work items of one kind.
type Loop[T any] struct {
	// Name is used in logs ("orchestration", "activity").
	Name string
	// Concurrency is the number of handlers that may run at once.
	Concurrency int
	// PollInterval is the longest an idle loop waits before claiming again.
	PollInterval time.Duration
	// Claim returns the next work item, or ok == false when there is none.
	// It is used when ClaimBatch is nil.
	Claim func(ctx context.Context) (item T, ok bool, err error)
	// ClaimBatch, if set, returns up to max work items in one call (none
	// when there is no work); the loop asks for as many as it has free
	// handler slots.
	ClaimBatch func(ctx context.Context, max int) ([]T, error)
	// Handle processes one item. Its context is cancelled when in-flight work
	// must be abandoned (Stop's deadline passed).
	Handle func(ctx context.Context, item T)
	// Wake, if set, returns a channel closed when new work may be available.
	Wake   func() <-chan struct{}
	Logger *slog.Logger

	// The running loop's state, which Reserve and Hand share with Run.
	mu      sync.Mutex
	running bool
	slots   chan struct{}
	wg      *sync.WaitGroup
	workCtx context.Context
	// claimed is closed when the claim in flight (which holds the slots it
	// may fill) returns; nil while no claim is in flight.
	claimed chan struct{}
	// waiting, if set (tests), is called when ReserveOne starts waiting
	// for a claim.
	waiting func()
	// busy counts the handlers running.
	busy atomic.Int64
}

// Busy returns how many handlers are running now.
func (l *Loop[T]) Busy() int { return int(l.busy.Load()) }

// handle runs Handle for item, counted in Busy.
func (l *Loop[T]) handle(ctx context.Context, item T) {
	l.busy.Add(1)
	defer l.busy.Add(-1)
	l.Handle(ctx, item)
}

// Reserve takes up to n free handler slots without waiting, for work
// items claimed outside the loop (an orchestration step whose commit claims
// the activities it schedules), and returns how many it took: 0 when no
// slot is free or the loop is not running. Every Reserve must be followed
// by a Hand with the same count, which Run waits for before returning.
func (l *Loop[T]) Reserve(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.running {
		return 0
	}
	k := 0
	for k < n {
		select {
		case l.slots <- struct{}{}:
			k++
		default:
			n = k
		}
	}
	l.wg.Add(k)
	return k
}

// ReserveOne takes a handler slot for a work item claimed outside the loop,
// as Reserve(1) does, but when the only slots not busy are those a claim in
// flight holds, it waits for that claim to return (or ctx) and tries
// again, rather than report none. It returns 0 when every slot is busy
// with work, or the loop is not running.
func (l *Loop[T]) ReserveOne(ctx context.Context) int {
	for {
		l.mu.Lock()
		if !l.running {
			l.mu.Unlock()
			return 0
		}
		select {
		case l.slots <- struct{}{}:
			l.wg.Add(1)
			l.mu.Unlock()
			return 1
		default:
		}
		claimed, waiting := l.claimed, l.waiting
		l.mu.Unlock()
		if claimed == nil {
			return 0
		}
		if waiting != nil {
			waiting()
		}
		select {
		case <-claimed:
		case <-ctx.Done():
			return 0
		}
	}
}

// Hand runs Handle for items on slots taken by Reserve(reserved), and frees
// the reserved slots items do not fill. It does not wait for the handlers.
func (l *Loop[T]) Hand(reserved int, items []T) {
	if len(items) > reserved {
		// A caller bug; the surplus items are left to lapse and be
		// delivered again.
		l.Logger.Error("duro: more work items handed than slots reserved", "loop", l.Name,
			"reserved", reserved, "items", len(items))
		items = items[:reserved]
	}
	for _, item := range items {
		go func() {
			defer l.wg.Done()
			defer func() { <-l.slots }()
			l.handle(l.workCtx, item)
		}()
	}
	for range reserved - len(items) {
		<-l.slots
		l.wg.Done()
	}
}

// Run claims work until claimCtx is done, then waits for in-flight handlers.
// Handlers run under workCtx, which the caller cancels to abort them. Run
// returns when every handler has returned.
//
// The loop holds a free handler slot before it claims. With ClaimBatch it
// takes every slot that is free at that moment and claims that many items
// at once; when it gets fewer than it asked for, the backend had no more,
// so it waits for a wake-up (or the poll interval) before claiming again.
func (l *Loop[T]) Run(claimCtx, workCtx context.Context) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, l.Concurrency)
	l.mu.Lock()
	l.running, l.slots, l.wg, l.workCtx = true, slots, &wg, workCtx
	l.mu.Unlock()
	defer func() {
		// No Reserve after this point, so the Wait below covers every
		// reservation made.
		l.mu.Lock()
		l.running = false
		l.mu.Unlock()
		wg.Wait()
	}()
	backoff := time.Duration(0)
	for {
		claimed := make(chan struct{})
		n := l.takeSlots(claimCtx, claimed)
		if n == 0 {
			return
		}
		var wake <-chan struct{}
		if l.Wake != nil {
			wake = l.Wake()
		}
		items, err := l.claim(claimCtx, n)
		for range n - len(items) {
			<-slots
		}
		l.mu.Lock()
		l.claimed = nil
		l.mu.Unlock()
		close(claimed)
		if err != nil {
			if claimCtx.Err() != nil {
				return
			}
			backoff = nextBackoff(backoff)
			l.Logger.Warn("duro: claim failed; retrying", "loop", l.Name, "backoff", backoff, "err", err)
			if !sleep(claimCtx, backoff, nil) {
				return
			}
			continue
		}
		backoff = 0
		for _, item := range items {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				l.handle(workCtx, item)
			}()
		}
		if len(items) < n {
			// Drained: wait for new work.
			if !sleep(claimCtx, l.PollInterval, wake) {
				return
			}
		}
	}
}

// takeSlots takes the handler slots of Run's next claim: one, waiting for
// it, and with ClaimBatch every other slot free then. The claim is in
// flight (l.claimed) from the moment its first slot is taken, in the same
// critical section when a slot is free at once, so that ReserveOne never
// finds the slots gone without a claim to wait for. It returns 0 when ctx
// ends first.
func (l *Loop[T]) takeSlots(ctx context.Context, claimed chan struct{}) int {
	l.mu.Lock()
	select {
	case l.slots <- struct{}{}:
	default:
		// Every slot is busy: wait for one to free up, outside the lock.
		l.mu.Unlock()
		select {
		case l.slots <- struct{}{}:
		case <-ctx.Done():
			return 0
		}
		l.mu.Lock()
	}
	l.claimed = claimed
	n := 1
	if l.ClaimBatch != nil {
	more:
		for n < l.Concurrency {
			select {
			case l.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
	}
	l.mu.Unlock()
	return n
}

// claim claims up to n items (n is 1 without ClaimBatch).
func (l *Loop[T]) claim(ctx context.Context, n int) ([]T, error) {
	if l.ClaimBatch != nil {
		items, err := l.ClaimBatch(ctx, n)
		if err != nil {
			return nil, err
		}
		if len(items) > n {
			// A backend that ignores max breaks its contract; the extra
			// items are left to lapse and be delivered again.
			l.Logger.Error("duro: batch claim returned more items than asked", "loop", l.Name, "max", n, "got", len(items))
			items = items[:n]
		}
		return items, nil
	}
	item, ok, err := l.Claim(ctx)
	if err != nil || !ok {
		return nil, err
	}
	return []T{item}, nil
}

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 50 * time.Millisecond
	}
	d *= 2
	if d > 5*time.Second {
		d = 5 * time.Second
	}
	return d
}

// sleep waits for d, a wake-up or ctx; it reports false if ctx is done.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wake:
		return true
	case <-ctx.Done():
		return false
	}
}

// Retry calls fn until it succeeds, returns a permanent error (permanent
// reports true), ctx is done, or attempts run out, sleeping with exponential
// backoff between calls. It returns fn's last error.
func Retry(ctx context.Context, attempts int, permanent func(error) bool, fn func() error) error {
	var err error
	backoff := time.Duration(0)
	for i := 0; i < attempts; i++ {
		if err = fn(); err == nil || permanent(err) {
			return err
		}
		backoff = nextBackoff(backoff)
		if !sleep(ctx, backoff, nil) {
			return err
		}
	}
	return err
}
