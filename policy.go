package duro

import (
	"errors"
	"fmt"
	"time"

	"github.com/durohq/duro/backend"
)

// Guarantee says how many times an activity's code may run for one scheduled
// call.
type Guarantee int

const (
	// GuaranteeUnset, the zero value, means "as registered" in CallOptions
	// and AtLeastOnce in ActivityOptions.
	GuaranteeUnset Guarantee = iota
	// AtLeastOnce runs the code until one delivery completes: after a crash
	// or a lost lease it runs again, with the next attempt number.
	AtLeastOnce
	// AtMostOnce runs the code on at most one delivery. A delivery after
	// one that started the code (it marks itself started, durably, just
	// before the code runs) means that one's outcome is unknown (it may
	// have done the work); the code is not invoked and the OnDuplicate
	// policy decides. Deliveries that never started (handed back by a
	// worker that stopped or lacked the activity, or lost before their
	// start mark) do not count.
	AtMostOnce
)

// String returns "AtLeastOnce" or "AtMostOnce".
func (g Guarantee) String() string {
	switch g {
	case AtLeastOnce:
		return "AtLeastOnce"
	case AtMostOnce:
		return "AtMostOnce"
	}
	return "Unset"
}

// OnDuplicate is what an AtMostOnce activity does with a delivery whose
// attempt number is above 1.
type OnDuplicate string

const (
	// OnDuplicateFail fails the task with a *PossibleDuplicateError
	// (errors.Is ErrPossibleDuplicate) that the orchestration can handle.
	// It is the default.
	OnDuplicateFail OnDuplicate = "Fail"
	// OnDuplicateSuspend suspends the instance with a reason naming the task;
	// the task is listed by Client.PendingDecisions until an operator resumes
	// the instance with a Decision: retry the code, supply its result, or
	// fail it.
	OnDuplicateSuspend OnDuplicate = "Suspend"
	// OnDuplicateReconcile calls the activity's ReconcileFunc, which finds out
	// what happened (for example by asking the payment provider) and decides.
	OnDuplicateReconcile OnDuplicate = "Reconcile"
)

// DefaultMaxDeliveries is how many deliveries an activity gets, by default,
// before it fails as poisoned.
const DefaultMaxDeliveries = 10

var (
	// ErrPossibleDuplicate is wrapped by the *TaskError of an AtMostOnce
	// activity whose earlier delivery may have run (OnDuplicateFail). Use
	// errors.As with *PossibleDuplicateError for the attempt and time.
	ErrPossibleDuplicate = errors.New("possible duplicate execution")
	// ErrPoisoned is wrapped by the *TaskError of an activity delivered more
	// than its MaxDeliveries times without completing.
	ErrPoisoned = errors.New("poisoned: too many deliveries")
)

// PossibleDuplicateError says that an AtMostOnce activity was not run again
// because an earlier delivery's outcome is unknown.
type PossibleDuplicateError struct {
	// Attempt is the delivery that found the duplicate (2 or more).
	Attempt int `json:"attempt"`
	// PreviousDeliveryAt is when the previous delivery was claimed.
	PreviousDeliveryAt time.Time `json:"previousDeliveryAt"`
}

// Error implements error.
func (e *PossibleDuplicateError) Error() string {
	return fmt.Sprintf("possible duplicate execution: attempt %d, previous delivery at %s",
		e.Attempt, e.PreviousDeliveryAt.Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrPossibleDuplicate) true.
func (e *PossibleDuplicateError) Is(target error) bool { return target == ErrPossibleDuplicate }

// PoisonedError says that a task was delivered too many times.
type PoisonedError struct {
	// Deliveries counts the deliveries of the task, the one that gave up
	// included, since it was scheduled or enqueued again by an operator's
	// retry decision or a rewind (its attempt number for a task never
	// enqueued again).
	Deliveries int `json:"deliveries"`
	// MaxDeliveries is the limit that was exceeded.
	MaxDeliveries int `json:"maxDeliveries"`
}

// Error implements error.
func (e *PoisonedError) Error() string {
	return fmt.Sprintf("poisoned: delivery %d exceeds the limit of %d deliveries", e.Deliveries, e.MaxDeliveries)
}

// Is makes errors.Is(err, ErrPoisoned) true.
func (e *PoisonedError) Is(target error) bool { return target == ErrPoisoned }

// Failure types for the engine's own task failures.
const (
	FailureTypePossibleDuplicate = "PossibleDuplicate"
	FailureTypePoisoned          = "Poisoned"
	FailureTypeReconciled        = "ReconciledFailure"
)

// ReconcileFunc decides what to do with a delivery of an AtMostOnce activity
// whose earlier delivery may have run. ctx carries the attempt number and
// PreviousDeliveryAt; input is the activity's input, still encoded. It
// returns ReconcileRetry, ReconcileResult, ReconcileFail or ReconcileSuspend. An error means the
// reconciliation itself failed (say, the provider was unreachable): the
// delivery is handed back and tried again later with the next attempt
// number, up to MaxDeliveries.
type ReconcileFunc func(ctx ActivityContext, input *Payload) (ReconcileDecision, error)

// Payload is an encoded value that can be decoded on demand.
type Payload struct {
	raw []byte
	p   payloads
}

// Decode decodes the payload into ptr.
func (p *Payload) Decode(ptr any) error { return p.p.decode("payload", p.raw, ptr) }

// Raw returns the encoded bytes.
func (p *Payload) Raw() []byte { return p.raw }

type decisionKind int

const (
	decideRetry decisionKind = iota + 1
	decideResult
	decideFail
	decideSuspend
)

// ReconcileDecision is what a ReconcileFunc decided.
type ReconcileDecision struct {
	kind    decisionKind
	result  any
	message string
}

// ReconcileRetry runs the activity's code once more, in this delivery.
func ReconcileRetry() ReconcileDecision { return ReconcileDecision{kind: decideRetry} }

// ReconcileResult completes the task with result, as if the code had
// returned it (for example the charge the provider says exists).
func ReconcileResult(result any) ReconcileDecision {
	return ReconcileDecision{kind: decideResult, result: result}
}

// ReconcileFail fails the task with message (type "ReconciledFailure",
// not retried).
func ReconcileFail(message string) ReconcileDecision {
	return ReconcileDecision{kind: decideFail, message: message}
}

// ReconcileSuspend leaves the decision to a person: the instance is
// suspended as with OnDuplicateSuspend.
func ReconcileSuspend() ReconcileDecision { return ReconcileDecision{kind: decideSuspend} }

// effectiveOptions merges the options an activity is registered with on
// the scheduling worker (nil if it does not register it) with one call's
// overrides into what is recorded with the scheduled task. The guarantee
// is the stronger of the two. A policy without AtMostOnce is kept: the
// executing worker applies it if its registration makes the task at most
// once (activityRun.inForce).
func effectiveOptions(reg *ActivityOptions, call CallOptions) (ActivityOptions, error) {
	if call.Guarantee == AtLeastOnce && call.OnDuplicate != "" {
		return ActivityOptions{}, fmt.Errorf("OnDuplicate %q needs Guarantee AtMostOnce", call.OnDuplicate)
	}
	var o ActivityOptions
	if reg != nil {
		o = *reg
	}
	if call.RetryPolicy != nil {
		o.RetryPolicy = call.RetryPolicy
	}
	if call.LeaseDuration != 0 {
		o.LeaseDuration = call.LeaseDuration
	}
	o.Guarantee = max(o.Guarantee, call.Guarantee) // Unset < AtLeastOnce < AtMostOnce
	if call.OnDuplicate != "" {
		o.OnDuplicate = call.OnDuplicate
	}
	if call.MaxDeliveries != 0 {
		o.MaxDeliveries = call.MaxDeliveries
	}
	if o.Guarantee == GuaranteeUnset {
		o.Guarantee = AtLeastOnce
	}
	if o.Guarantee == AtMostOnce && o.OnDuplicate == "" {
		o.OnDuplicate = OnDuplicateFail
	}
	check := o
	if check.Guarantee == AtLeastOnce {
		check.OnDuplicate = "" // a policy for the executing worker's AtMostOnce
	}
	return o, check.validate()
}

// inForce is what a delivery of an activity task enforces: the task's
// recorded options strengthened by the registration of the worker that
// executes it (ra), which may differ from the scheduling worker's (a split
// fleet, a rolling deploy). The guarantee is the stronger of the two; the
// policy is the registration's when it names one, else the recorded one,
// else OnDuplicateFail.
func inForce(recorded backend.ActivityOptions, ra *ActivityOptions) backend.ActivityOptions {
	o := recorded
	if ra.Guarantee == AtMostOnce {
		o.AtMostOnce = true
	}
	if !o.AtMostOnce {
		return recorded
	}
	switch {
	case ra.OnDuplicate != "":
		o.OnDuplicate = string(ra.OnDuplicate)
	case o.OnDuplicate == "":
		o.OnDuplicate = string(OnDuplicateFail)
	}
	return o
}

func (o *ActivityOptions) validate() error {
	switch {
	case o.Guarantee < GuaranteeUnset || o.Guarantee > AtMostOnce:
		return fmt.Errorf("unknown Guarantee %d", o.Guarantee)
	case o.LeaseDuration < 0:
		return fmt.Errorf("LeaseDuration %v is negative", o.LeaseDuration)
	case o.MaxDeliveries < 0:
		return fmt.Errorf("MaxDeliveries %d is negative", o.MaxDeliveries)
	}
	switch o.OnDuplicate {
	case "", OnDuplicateFail, OnDuplicateSuspend, OnDuplicateReconcile:
	default:
		return fmt.Errorf("unknown OnDuplicate %q", o.OnDuplicate)
	}
	if o.OnDuplicate != "" && o.Guarantee == AtLeastOnce {
		return fmt.Errorf("OnDuplicate %q needs Guarantee AtMostOnce", o.OnDuplicate)
	}
	return nil
}
