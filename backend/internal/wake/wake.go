// Package wake is the wake-up broadcaster the SQL backends share: idle
// workers wait on a channel that is closed when work may have arrived.
package wake

import (
	"container/heap"
	"sync"
	"time"
)

// closed is what Wait returns after Shutdown: waiting on it ends at once.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// maxTimers bounds the future wake-ups a Broadcaster remembers; past it,
// the latest are dropped and the waiters' fallback poll finds their work.
const maxTimers = 4096

// Broadcaster wakes every waiter at once by closing a channel. The channel
// is only made when someone waits, so Notify costs a lock when nobody does.
// It also keeps future wake-ups (WakeAt) and closes the channel when the
// earliest comes due. The zero value is ready to use.
type Broadcaster struct {
	mu     sync.Mutex
	ch     chan struct{}
	done   bool // after Shutdown
	timers int64Heap
	timer  *time.Timer
	next   int64 // the time timer is set for; 0 if none
}

// Wait returns a channel closed at the next wake-up (at once after
// Shutdown).
func (w *Broadcaster) Wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return closed
	}
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// Notify wakes every waiter now.
func (w *Broadcaster) Notify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wakeLocked()
}

func (w *Broadcaster) wakeLocked() {
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// WakeAt schedules a wake-up at Unix nanoseconds at (at once if past).
func (w *Broadcaster) WakeAt(at int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	if at <= time.Now().UnixNano() {
		w.wakeLocked()
		return
	}
	if len(w.timers) >= maxTimers {
		return
	}
	heap.Push(&w.timers, at)
	w.armLocked()
}

// armLocked sets the timer for the earliest pending wake-up.
func (w *Broadcaster) armLocked() {
	if len(w.timers) == 0 || w.done {
		return
	}
	first := w.timers[0]
	if w.next != 0 && w.next <= first {
		return
	}
	w.next = first
	d := time.Until(time.Unix(0, first))
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.fire)
	} else {
		w.timer.Reset(d)
	}
}

// fire runs when the timer expires: it wakes the waiters, drops the due
// wake-ups and sets the timer for the next one.
func (w *Broadcaster) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next = 0
	now := time.Now().UnixNano()
	due := false
	for len(w.timers) > 0 && w.timers[0] <= now {
		heap.Pop(&w.timers)
		due = true
	}
	if due {
		w.wakeLocked()
	}
	w.armLocked()
}

// Shutdown wakes every waiter, stops the timer and makes Wait return a
// closed channel from now on.
func (w *Broadcaster) Shutdown() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wakeLocked()
	w.done = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.timers = nil
}

type int64Heap []int64

func (h int64Heap) Len() int           { return len(h) }
func (h int64Heap) Less(i, j int) bool { return h[i] < h[j] }
func (h int64Heap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *int64Heap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *int64Heap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
