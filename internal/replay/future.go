package replay

import "github.com/durohq/duro/backend"

// Future is the pending outcome of an action: an activity, a timer, a
// sub-orchestration or an external event. It is resolved by the engine while it
// processes history, on the engine's goroutine, so it needs no locks.
type Future struct {
	done    bool
	value   []byte
	failure *backend.Failure
	// err is an engine-level outcome, such as ErrTimeout.
	err       error
	callbacks []func()
	// TaskID of the action, or -1 for futures that are not one action.
	TaskID int
}

// NewFuture returns an unresolved future not tied to one action (composite
// futures such as retries).
func NewFuture() *Future { return &Future{TaskID: -1} }

// Done reports whether the future is resolved.
func (f *Future) Done() bool { return f.done }

// Value returns the payload of a successful future.
func (f *Future) Value() []byte { return f.value }

// Failure returns the recorded failure of a failed future, or nil.
func (f *Future) Failure() *backend.Failure { return f.failure }

// Err returns an engine-level error (ErrTimeout), or nil.
func (f *Future) Err() error { return f.err }

// OnDone runs fn when the future resolves (at once if it has). Callbacks run
// on the engine's goroutine, in resolution order, and may schedule actions.
func (f *Future) OnDone(fn func()) {
	if f.done {
		fn()
		return
	}
	f.callbacks = append(f.callbacks, fn)
}

// Resolve completes the future with a value.
func (f *Future) Resolve(value []byte) { f.settle(value, nil, nil) }

// Fail completes the future with a recorded failure.
func (f *Future) Fail(failure *backend.Failure) { f.settle(nil, failure, nil) }

// FailErr completes the future with an engine-level error.
func (f *Future) FailErr(err error) { f.settle(nil, nil, err) }

// CopyFrom completes f with the outcome of other.
func (f *Future) CopyFrom(other *Future) { f.settle(other.value, other.failure, other.err) }

func (f *Future) settle(value []byte, failure *backend.Failure, err error) {
	if f.done {
		return
	}
	f.done, f.value, f.failure, f.err = true, value, failure, err
	cbs := f.callbacks
	f.callbacks = nil
	for _, cb := range cbs {
		cb()
	}
}
