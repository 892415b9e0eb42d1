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
type coroutine struct {
	resume   chan struct{}
	yield    chan struct{}
	finished chan struct{}

	started bool
	done    bool
	exiting bool
	// blockedOn is the condition the code waits for; nil while running.
	blockedOn func() bool

	output   []byte
	err      error
	panicked *panicInfo
}

type panicInfo struct {
	value any
	stack string
}

func (p *panicInfo) String() string { return fmt.Sprintf("panic: %v", p.value) }

func newCoroutine() *coroutine {
	return &coroutine{
		resume:   make(chan struct{}),
		yield:    make(chan struct{}),
		finished: make(chan struct{}),
	}
}

// start launches fn and runs it until it first blocks or returns.
func (co *coroutine) start(fn func() ([]byte, error)) {
	co.started = true
	go func() {
		defer close(co.finished)
		defer func() {
			if r := recover(); r != nil {
				co.panicked = &panicInfo{value: r, stack: string(debug.Stack())}
			}
			if !co.exiting {
				co.done = true
				co.blockedOn = nil
				co.yield <- struct{}{}
			}
		}()
		<-co.resume
		co.output, co.err = fn()
	}()
	co.resume <- struct{}{}
	<-co.yield
}

// await is called on the coroutine's goroutine: it parks until cond holds.
func (co *coroutine) await(cond func() bool) {
	for !cond() {
		if co.exiting {
			runtime.Goexit()
		}
		co.blockedOn = cond
		co.yield <- struct{}{}
		<-co.resume
		if co.exiting {
			runtime.Goexit()
		}
	}
	co.blockedOn = nil
}

// runnable reports whether the coroutine is parked on a condition that now
// holds.
func (co *coroutine) runnable() bool {
	return co.started && !co.done && co.blockedOn != nil && co.blockedOn()
}

// step resumes a parked coroutine until it blocks again or finishes.
func (co *coroutine) step() {
	co.resume <- struct{}{}
	<-co.yield
}

// stop unwinds a parked coroutine (running its deferred calls) so that no
// goroutine outlives the orchestration step.
func (co *coroutine) stop() {
	if !co.started || co.done {
		return
	}
	co.exiting = true
	co.resume <- struct{}{}
	<-co.finished
}
