package duro

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"
)

// Registry holds the orchestrations and activities a Worker can run, by name.
// Register everything before starting a worker; a Registry is safe for
// concurrent use.
type Registry struct {
	mu             sync.RWMutex
	orchestrations map[string]orchestrationFunc
	activities     map[string]*registeredActivity
	entities       map[string]*registeredEntity
	// activityList holds the names of activities, sorted; replaced (never
	// changed in place) by each RegisterActivity, so a worker's claims read
	// it without copying.
	activityList []string
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{orchestrations: map[string]orchestrationFunc{}, activities: map[string]*registeredActivity{},
		entities: map[string]*registeredEntity{}}
}

// orchestrationFunc is an orchestration with its payloads still encoded.
type orchestrationFunc func(ctx *OrchestrationContext, input []byte) (any, error)

// activityFunc is an activity with its payloads still encoded.
type activityFunc func(ctx ActivityContext, p payloads, input []byte) (any, error)

type registeredActivity struct {
	fn   activityFunc
	opts ActivityOptions
}

// ActivityOptions are the defaults of an activity, set at registration. An
// orchestration can override them per call with CallOptions.
type ActivityOptions struct {
	// LeaseDuration is how long one delivery holds the task before another
	// worker may take it over; the worker renews it while the code runs.
	// Zero means the worker's WorkerOptions.ActivityLeaseDuration.
	LeaseDuration time.Duration
	// RetryPolicy retries failed calls with durable timers between them. Nil
	// means a failure is returned to the orchestration at once.
	RetryPolicy *RetryPolicy
	// Guarantee is AtLeastOnce (the default) or AtMostOnce. A worker that
	// registers an activity AtMostOnce runs it at most once whatever the
	// scheduling worker recorded (a split fleet, a rolling deploy).
	Guarantee Guarantee
	// OnDuplicate is the AtMostOnce policy for a possible duplicate: a
	// delivery after one that started the code.
	// Set, it decides for the deliveries this worker executes, over the
	// call's CallOptions.OnDuplicate. Default: the call's, else
	// OnDuplicateFail.
	OnDuplicate OnDuplicate
	// Reconcile is called for OnDuplicateReconcile. Without one, a duplicate
	// fails as with OnDuplicateFail.
	Reconcile ReconcileFunc
	// MaxDeliveries bounds how many times the task is delivered (crashes,
	// lost leases, failed reconciliations) before it fails as poisoned.
	// Default: WorkerOptions.MaxDeliveries.
	MaxDeliveries int
}

// RegisterOrchestration registers orchestration code under name. fn receives
// the decoded input; what it returns becomes the instance's output.
// Orchestration code must be deterministic: it may only wait through the
// OrchestrationContext, and must take time, randomness and I/O from it or
// from activities. It panics if name is empty or already registered.
func RegisterOrchestration[I, O any](r *Registry, name string, fn func(ctx *OrchestrationContext, input I) (O, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == "" {
		panic("duro: RegisterOrchestration with an empty name")
	}
	if _, dup := r.orchestrations[name]; dup {
		panic(fmt.Sprintf("duro: orchestration %q registered twice", name))
	}
	r.orchestrations[name] = func(ctx *OrchestrationContext, raw []byte) (any, error) {
		var in I
		if err := ctx.p.decodeAs(func() string { return fmt.Sprintf("input of orchestration %q", name) }, raw, &in); err != nil {
			return nil, err
		}
		return fn(ctx, in)
	}
}

// RegisterActivity registers activity code under name, with optional
// defaults (at most one ActivityOptions). Activities do the side effects:
// they run at least once by default, and see their delivery's attempt number
// in ActivityContext. It panics if name is empty or already registered.
func RegisterActivity[I, O any](r *Registry, name string, fn func(ctx ActivityContext, input I) (O, error), opts ...ActivityOptions) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == "" {
		panic("duro: RegisterActivity with an empty name")
	}
	if _, dup := r.activities[name]; dup {
		panic(fmt.Sprintf("duro: activity %q registered twice", name))
	}
	if len(opts) > 1 {
		panic("duro: RegisterActivity takes at most one ActivityOptions")
	}
	ra := &registeredActivity{fn: func(ctx ActivityContext, p payloads, raw []byte) (any, error) {
		var in I
		if err := p.decodeAs(func() string { return fmt.Sprintf("input of activity %q", name) }, raw, &in); err != nil {
			return nil, err
		}
		return activityOutput(fn(ctx, in))
	}}
	if len(opts) == 1 {
		ra.opts = opts[0]
		if err := ra.opts.validate(); err != nil {
			panic(fmt.Sprintf("duro: activity %q: ActivityOptions: %v", name, err))
		}
	}
	r.activities[name] = ra
	r.activityList = slices.Sorted(maps.Keys(r.activities))
}

// activityOutput is what an activity's code returned, with a nil pointer,
// map, slice... as no output.
func activityOutput[O any](out O, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	if isNil(out) {
		return nil, nil
	}
	return out, nil
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

func (r *Registry) orchestration(name string) (orchestrationFunc, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn, ok := r.orchestrations[name]
	return fn, ok
}

func (r *Registry) activity(name string) (*registeredActivity, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.activities[name]
	return a, ok
}

// activityNames returns the names of the registered activities, sorted,
// not nil. The caller must not change the slice.
func (r *Registry) activityNames() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.activityList == nil {
		return []string{}
	}
	return r.activityList
}

// runsSteps reports whether the registry has code for orchestration steps:
// an orchestration or an entity.
func (r *Registry) runsSteps() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.orchestrations) > 0 || len(r.entities) > 0
}
