package backend

import "errors"

// Sentinel errors every backend returns (wrapped, so test with errors.Is) for
// the conditions callers branch on.
var (
	// ErrInstanceNotFound: no instance has the given ID (or it was purged).
	ErrInstanceNotFound = errors.New("instance not found")
	// ErrInstanceExists: CreateInstance found an instance with the same ID that
	// the IfExists policy does not allow to replace.
	ErrInstanceExists = errors.New("instance already exists")
	// ErrInstanceFinished: the operation needs a non-terminal instance (raise an
	// event, terminate) but the instance has finished.
	ErrInstanceFinished = errors.New("instance has finished")
	// ErrInstanceNotFinished: the operation needs a terminal instance (purge)
	// but the instance is still pending, running or suspended.
	ErrInstanceNotFinished = errors.New("instance has not finished")
	// ErrInstanceNotFailed: RewindInstance needs a Failed instance.
	ErrInstanceNotFailed = errors.New("instance has not failed")
	// ErrLeaseLost: a completion, renewal or abandonment came from a delivery
	// that no longer holds the work item — a newer delivery exists or the work
	// item is gone (A2 fencing). Its result must be discarded.
	ErrLeaseLost = errors.New("lease lost: a newer delivery holds the work item")
	// ErrMessageQueued: an exclusive message (Message.Exclusive) was
	// refused because the instance's inbox holds another of its type.
	ErrMessageQueued = errors.New("a message of the same type is already queued")
	// ErrClosed: the backend has been closed.
	ErrClosed = errors.New("backend closed")
)
