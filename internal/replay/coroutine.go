package replay

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// coroutine runs orchestration code on its own goroutine, but only ever one
// side at a time: the engine resumes it and waits until it blocks (on a
// condition that history has not satisfied yet) or finishes. Because exactly
// one side runs at any moment, the orchestration's state needs no locks and
// replay is deterministic.
//
// One unbuffered channel carries both directions: whichever side runs hands
// control over by sending on it and then waits by receiving from it, so the
// two sides strictly alternate and a send is always received by the other
// side. The goroutine closes it when it exits.
type coroutine struct {
	handoff chan struct{}

	started bool
	done    bool
	exiting bool
	// blockedOn is the condition the code waits for; nil while running.
	blockedOn func() bool
	// blockedOnFuture is the future the code waits for; nil while running.
	blockedOnFuture *Future

	output   []byte
	err      error
	panicked *panicInfo
}

type panicInfo struct {
	value any
	stack string
}

func (p *panicInfo) String() string { return fmt.Sprintf("panic: %v", p.value) }

// init prepares a zero coroutine for use.
func (co *coroutine) init() {
	co.handoff = make(chan struct{})
}

// start launches fn and runs it until it first blocks or returns.
func (co *coroutine) start(fn func() ([]byte, error)) {
	co.started = true
	go func() {
		defer close(co.handoff)
		defer func() {
			if r := recover(); r != nil {
				co.panicked = &panicInfo{value: r, stack: string(debug.Stack())}
			}
			if !co.exiting {
				co.done = true
				co.blockedOn, co.blockedOnFuture = nil, nil
				co.handoff <- struct{}{}
			}
		}()
		<-co.handoff
		co.output, co.err = fn()
	}()
	co.handoff <- struct{}{}
	<-co.handoff
}

// await is called on the coroutine's goroutine: it parks until cond holds.
func (co *coroutine) await(cond func() bool) {
	for !cond() {
		co.blockedOn = cond
		co.park()
	}
	co.blockedOn = nil
}

// awaitFuture is await(f.Done) without making a func value of f.Done.
func (co *coroutine) awaitFuture(f *Future) {
	for !f.done {
		co.blockedOnFuture = f
		co.park()
	}
	co.blockedOnFuture = nil
}

// park hands control back to the engine until it resumes the coroutine. It
// exits the goroutine when the engine stops the coroutine.
func (co *coroutine) park() {
	if co.exiting {
		runtime.Goexit()
	}
	co.handoff <- struct{}{}
	<-co.handoff
	if co.exiting {
		runtime.Goexit()
	}
}

// runnable reports whether the coroutine is parked on a condition that now
// holds.
func (co *coroutine) runnable() bool {
	if !co.started || co.done {
		return false
	}
	if co.blockedOnFuture != nil {
		return co.blockedOnFuture.done
	}
	return co.blockedOn != nil && co.blockedOn()
}

// step resumes a parked coroutine until it blocks again or finishes.
func (co *coroutine) step() {
	co.handoff <- struct{}{}
	<-co.handoff
}

// stop unwinds a parked coroutine (running its deferred calls) so that no
// goroutine outlives the orchestration step.
func (co *coroutine) stop() {
	if !co.started || co.done || co.exiting {
		return
	}
	co.exiting = true
	co.handoff <- struct{}{}
	// The goroutine exits without handing control back; the receive
	// returns when it closes the channel.
	<-co.handoff
}
