package duro

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/durohq/duro/internal/testhook"
)

// The hooks of package durotest (see internal/testhook).
func init() {
	testhook.SetWorkerClock = func(w any, now func() time.Time) { w.(*Worker).now = now }
	testhook.SetClientClock = func(c any, now func() time.Time) { c.(*Client).now = now }
	testhook.ReplaceActivity = func(reg any, name string, fn testhook.ActivityFunc) {
		reg.(*Registry).replaceActivity(name, fn)
	}
	testhook.AtMostOnce = func(reg any, name string) bool {
		ra, ok := reg.(*Registry).activity(name)
		return ok && ra.opts.Guarantee == AtMostOnce
	}
	testhook.Runs = func(reg any) (steps, activities bool) {
		r := reg.(*Registry)
		return r.runsSteps(), len(r.activityNames()) > 0
	}
}

// replaceActivity replaces the code of activity name, keeping its
// options, or registers fn under name with the default options.
func (r *Registry) replaceActivity(name string, fn testhook.ActivityFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ra := &registeredActivity{fn: func(ctx ActivityContext, p payloads, raw []byte) (any, error) {
		decode := func(ptr any) error {
			return p.decodeAs(func() string { return fmt.Sprintf("input of activity %q", name) }, raw, ptr)
		}
		return activityOutput(fn(ctx, decode))
	}}
	if old, ok := r.activities[name]; ok {
		ra.opts = old.opts
	}
	r.activities[name] = ra
	r.activityList = slices.Sorted(maps.Keys(r.activities))
}
