package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// queue is a fake backend: items to claim, and a wake-up channel closed
// when items are added.
type queue struct {
	mu     sync.Mutex
	items  []int
	wake   chan struct{}
	claims []int // the max of each ClaimBatch call
}

func newQueue(n int) *queue {
	q := &queue{wake: make(chan struct{})}
	for i := range n {
		q.items = append(q.items, i)
	}
	return q
}

func (q *queue) claimBatch(_ context.Context, max int) ([]int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.claims = append(q.claims, max)
	n := min(max, len(q.items))
	got := append([]int(nil), q.items[:n]...)
	q.items = q.items[n:]
	return got, nil
}

func (q *queue) add(items ...int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, items...)
	close(q.wake)
	q.wake = make(chan struct{})
}

func (q *queue) waitAvailable() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.wake
}

func (q *queue) claimCalls() []int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]int(nil), q.claims...)
}

// TestBatchClaimFillsFreeSlots checks that a batch claim asks for exactly the
// free slots, that no more handlers than Concurrency run at once, and that
// every item is handled.
func TestBatchClaimFillsFreeSlots(t *testing.T) {
	q := newQueue(10)
	var running, peak atomic.Int32
	var handled sync.Map
	release := make(chan struct{})
	var done sync.WaitGroup
	done.Add(10)
	l := &Loop[int]{
		Name: "test", Concurrency: 4, PollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
		ClaimBatch: q.claimBatch, Wake: q.waitAvailable,
		Handle: func(_ context.Context, item int) {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			<-release
			running.Add(-1)
			handled.Store(item, true)
			done.Done()
		},
	}
	claimCtx, stop := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() { l.Run(claimCtx, context.Background()); close(finished) }()
	waitFor(t, func() bool { return running.Load() == 4 })
	if calls := q.claimCalls(); len(calls) != 1 || calls[0] != 4 {
		t.Fatalf("claims %v, want one of 4", calls)
	}
	close(release)
	done.Wait()
	stop()
	<-finished
	if p := peak.Load(); p > 4 {
		t.Fatalf("%d handlers at once, limit 4", p)
	}
	for i := range 10 {
		if _, ok := handled.Load(i); !ok {
			t.Fatalf("item %d not handled", i)
		}
	}
	for _, max := range q.claimCalls() {
		if max < 1 || max > 4 {
			t.Fatalf("claim of %d items with 4 slots: %v", max, q.claimCalls())
		}
	}
}

// TestBatchClaimDrainedWaits checks that a claim that returns fewer items
// than asked (the backend is drained) is followed by a wait for a wake-up,
// not by another claim.
func TestBatchClaimDrainedWaits(t *testing.T) {
	q := newQueue(1)
	var handled atomic.Int32
	l := &Loop[int]{
		Name: "test", Concurrency: 4, PollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
		ClaimBatch: q.claimBatch, Wake: q.waitAvailable,
		Handle: func(context.Context, int) { handled.Add(1) },
	}
	claimCtx, stop := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() { l.Run(claimCtx, context.Background()); close(finished) }()
	waitFor(t, func() bool { return handled.Load() == 1 })
	time.Sleep(20 * time.Millisecond)
	if calls := q.claimCalls(); len(calls) != 1 {
		t.Fatalf("claims %v after draining, want 1", calls)
	}
	q.add(1, 2)
	waitFor(t, func() bool { return handled.Load() == 3 })
	stop()
	<-finished
	if calls := q.claimCalls(); len(calls) != 2 {
		t.Fatalf("claims %v, want 2", calls)
	}
}

// TestSingleClaim checks the path for backends without batch claims.
func TestSingleClaim(t *testing.T) {
	q := newQueue(5)
	var handled atomic.Int32
	var claims atomic.Int32
	l := &Loop[int]{
		Name: "test", Concurrency: 2, PollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
		Claim: func(ctx context.Context) (int, bool, error) {
			claims.Add(1)
			items, err := q.claimBatch(ctx, 1)
			if len(items) == 0 {
				return 0, false, err
			}
			return items[0], true, err
		},
		Wake:   q.waitAvailable,
		Handle: func(context.Context, int) { handled.Add(1) },
	}
	claimCtx, stop := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() { l.Run(claimCtx, context.Background()); close(finished) }()
	waitFor(t, func() bool { return handled.Load() == 5 })
	stop()
	<-finished
	if n := claims.Load(); n != 6 { // five items, then one empty claim
		t.Fatalf("%d claims, want 6", n)
	}
}

// TestClaimErrorBacksOff checks that a failing claim releases its slots
// and is retried.
func TestClaimErrorBacksOff(t *testing.T) {
	var calls atomic.Int32
	var handled atomic.Int32
	l := &Loop[int]{
		Name: "test", Concurrency: 3, PollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
		ClaimBatch: func(_ context.Context, max int) ([]int, error) {
			switch calls.Add(1) {
			case 1:
				return []int{1}, errors.New("store down") // items with an error are ignored
			case 2:
				if max != 3 {
					t.Errorf("claim of %d after a failure, want 3 (slots released)", max)
				}
				return []int{1, 2, 3}, nil
			}
			return nil, nil
		},
		Handle: func(context.Context, int) { handled.Add(1) },
	}
	claimCtx, stop := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() { l.Run(claimCtx, context.Background()); close(finished) }()
	waitFor(t, func() bool { return handled.Load() >= 3 })
	stop()
	<-finished
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReserveHand checks items handed to a running loop: Reserve takes only
// free slots, handed items run on them, unused reservations are freed, and
// Run waits for reservations before it returns.
func TestReserveHand(t *testing.T) {
	q := newQueue(0)
	release := make(chan struct{})
	var handled atomic.Int32
	l := &Loop[int]{
		Name: "test", Concurrency: 3, PollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
		ClaimBatch: q.claimBatch, Wake: q.waitAvailable,
		Handle: func(ctx context.Context, item int) {
			<-release
			handled.Add(1)
		},
	}
	if n := l.Reserve(2); n != 0 {
		t.Fatalf("Reserve before Run = %d, want 0", n)
	}
	claimCtx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { l.Run(claimCtx, context.Background()); close(ran) }()
	// Run starts by taking one slot for its first claim; wait for it to
	// come back empty-handed and park.
	deadline := time.Now().Add(5 * time.Second)
	for len(q.claimCalls()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the loop never claimed")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	if n := l.Reserve(5); n != 3 {
		t.Fatalf("Reserve(5) with 3 free slots = %d, want 3", n)
	}
	if n := l.Reserve(1); n != 0 {
		t.Fatalf("Reserve with no free slot = %d, want 0", n)
	}
	l.Hand(3, []int{7, 8}) // one reservation unused: freed at once
	if n := l.Reserve(2); n != 1 {
		t.Fatalf("Reserve after handing 2 of 3 = %d, want 1", n)
	}
	stop()
	select {
	case <-ran:
		t.Fatal("Run returned with handlers running and a slot reserved")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	l.Hand(1, nil)
	<-ran
	if got := handled.Load(); got != 2 {
		t.Fatalf("handled %d items, want 2", got)
	}
	if n := l.Reserve(1); n != 0 {
		t.Fatalf("Reserve after Run returned = %d, want 0", n)
	}
}

// TestReserveOneWaitsForTheClaim holds the loop in a batch claim, which
// holds every free slot: Reserve finds none, ReserveOne waits for the
// claim to return and takes a slot it did not fill. With every slot busy
// with work and no claim in flight, ReserveOne reports none at once.
func TestReserveOneWaitsForTheClaim(t *testing.T) {
	inClaim, finish := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	release := make(chan struct{})
	l := &Loop[int]{
		Name: "test", Concurrency: 2, PollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
		ClaimBatch: func(ctx context.Context, max int) ([]int, error) {
			if calls.Add(1) == 1 {
				close(inClaim)
				select {
				case <-finish:
				case <-ctx.Done():
				}
			}
			return nil, nil
		},
		Handle: func(ctx context.Context, item int) { <-release },
	}
	claimCtx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { l.Run(claimCtx, context.Background()); close(ran) }()
	<-inClaim
	if n := l.Reserve(1); n != 0 {
		t.Fatalf("Reserve during a claim holding every slot = %d, want 0", n)
	}
	got, waits := make(chan int), make(chan struct{}, 1)
	l.mu.Lock()
	l.waiting = func() { waits <- struct{}{} }
	l.mu.Unlock()
	go func() { got <- l.ReserveOne(context.Background()) }()
	<-waits // ReserveOne waits for the claim
	close(finish)
	if n := <-got; n != 1 {
		t.Fatalf("ReserveOne across the claim = %d, want 1", n)
	}
	// Both slots busy with handlers: none to wait for.
	if n := l.Reserve(1); n != 1 {
		t.Fatalf("Reserve of the second slot = %d, want 1", n)
	}
	l.Hand(2, []int{1, 2})
	l.mu.Lock()
	l.waiting = func() { t.Error("ReserveOne waited with no claim in flight") }
	l.mu.Unlock()
	if n := l.ReserveOne(context.Background()); n != 0 {
		t.Fatalf("ReserveOne with every slot busy = %d, want 0", n)
	}
	stop()
	close(release)
	<-ran
	if n := l.ReserveOne(context.Background()); n != 0 {
		t.Fatalf("ReserveOne after Run returned = %d, want 0", n)
	}
}

// TestReserveOneWhileTheClaimStarts calls ReserveOne while the loop,
// having taken every free slot for its next claim, is between taking
// them and claiming (in Wake): the claim is in flight already, so
// ReserveOne waits for it and takes a slot it did not fill, instead of
// reporting none with no slot busy.
func TestReserveOneWhileTheClaimStarts(t *testing.T) {
	inWake, wakeGo := make(chan struct{}), make(chan struct{})
	var wakes atomic.Int32
	l := &Loop[int]{
		Name: "test", Concurrency: 2, PollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
		ClaimBatch: func(ctx context.Context, max int) ([]int, error) { return nil, nil },
		Wake: func() <-chan struct{} {
			if wakes.Add(1) == 1 {
				close(inWake)
				<-wakeGo
			}
			return nil
		},
		Handle: func(ctx context.Context, item int) {},
	}
	claimCtx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { l.Run(claimCtx, context.Background()); close(ran) }()
	<-inWake
	got, waits := make(chan int, 1), make(chan struct{}, 1)
	l.mu.Lock()
	l.waiting = func() { waits <- struct{}{} }
	l.mu.Unlock()
	go func() { got <- l.ReserveOne(context.Background()) }()
	select {
	case <-waits:
	case n := <-got:
		t.Fatalf("ReserveOne while the loop takes its slots for a claim = %d at once, want it to wait for the claim", n)
	}
	close(wakeGo)
	if n := <-got; n != 1 {
		t.Fatalf("ReserveOne across the claim = %d, want 1", n)
	}
	l.Hand(1, nil)
	stop()
	<-ran
}
