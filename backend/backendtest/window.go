package backendtest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// windowTests check backend.RequestWindow: a step adds entries to its
// instance's window of processed request IDs and prunes it by count and
// by age, in the step's transaction; the window outlives executions and
// goes with the instance. A backend without the capability skips them.
func windowTests() []test {
	return []test{
		{"AddAndLookup", func(t *testing.T, e *env) {
			rw := e.requestWindow()
			e.create("w", nil)
			e.commit(e.claimStep("w", e.t0), e.t0, func(p *backend.CompleteOrchestrationStepParams) {
				p.Window = &backend.WindowUpdate{Add: entries(e.t0, "a", "b", "c")}
			})
			e.start("other", nil)
			e.wantWindow(rw, "w", []string{"a", "c", "x"}, map[string]time.Time{"a": e.t0, "c": e.t0})
			e.wantWindow(rw, "other", []string{"a", "b", "c"}, nil)
			e.wantWindow(rw, "gone", []string{"a"}, nil)
		}},
		{"KeepBoundsByCount", func(t *testing.T, e *env) {
			rw := e.requestWindow()
			e.create("w", nil)
			e.windowStep("w", 0, &backend.WindowUpdate{Add: entries(e.t0, "1", "2", "3"), Keep: 4})
			e.windowStep("w", time.Second, &backend.WindowUpdate{Add: entries(e.at(time.Second), "4", "5", "6"), Keep: 4})
			all := []string{"1", "2", "3", "4", "5", "6"}
			e.wantWindowIDs(rw, "w", all, "3", "4", "5", "6")
			// Many entries in one step, more than Keep.
			var many []string
			for i := range 50 {
				many = append(many, fmt.Sprint("m", i))
			}
			e.windowStep("w", 2*time.Second, &backend.WindowUpdate{Add: entries(e.at(2*time.Second), many...), Keep: 30})
			e.wantWindowIDs(rw, "w", append(all, many...), many[20:]...)
		}},
		{"BeforeBoundsByAge", func(t *testing.T, e *env) {
			rw := e.requestWindow()
			e.create("w", nil)
			e.windowStep("w", 0, &backend.WindowUpdate{Add: entries(e.t0, "a", "b")})
			e.windowStep("w", time.Hour, &backend.WindowUpdate{Add: entries(e.at(time.Hour), "c")})
			e.windowStep("w", 2*time.Hour, &backend.WindowUpdate{Before: e.at(30 * time.Minute)})
			e.wantWindowIDs(rw, "w", []string{"a", "b", "c"}, "c")
			e.windowStep("w", 3*time.Hour, &backend.WindowUpdate{Add: entries(e.at(3*time.Hour), "d"), Before: e.at(3 * time.Hour)})
			e.wantWindowIDs(rw, "w", []string{"a", "b", "c", "d"}, "d")
		}},
		{"AddAgainMovesToNewest", func(t *testing.T, e *env) {
			rw := e.requestWindow()
			e.create("w", nil)
			e.windowStep("w", 0, &backend.WindowUpdate{Add: entries(e.t0, "a", "b", "c"), Keep: 3})
			e.windowStep("w", time.Minute, &backend.WindowUpdate{Add: entries(e.at(time.Minute), "a"), Keep: 3})
			e.wantWindow(rw, "w", []string{"a"}, map[string]time.Time{"a": e.at(time.Minute)})
			e.windowStep("w", 2*time.Minute, &backend.WindowUpdate{Add: entries(e.at(2*time.Minute), "d"), Keep: 3})
			// b is now the oldest: it goes, a (moved) stays.
			e.wantWindowIDs(rw, "w", []string{"a", "b", "c", "d"}, "a", "c", "d")
		}},
		{"AtomicWithStep", func(t *testing.T, e *env) {
			rw := e.requestWindow()
			e.create("w", nil)
			e.windowStep("w", 0, &backend.WindowUpdate{Add: entries(e.t0, "a", "b")})
			e.enqueue(raised("w", "w/m1", "x"))
			stale := e.claimStep("w", e.at(time.Minute))
			newer := e.claimStep("w", e.at(time.Minute+2*lease)) // the first lease lapsed
			p := stepParams(stale, e.at(time.Minute))
			p.Window = &backend.WindowUpdate{Add: entries(e.at(time.Minute), "stale"), Keep: 1}
			e.wantErr("CompleteOrchestrationStep(stale delivery)", e.b.CompleteOrchestrationStep(e.ctx, p), backend.ErrLeaseLost)
			e.wantWindowIDs(rw, "w", []string{"a", "b", "stale"}, "a", "b")
			e.commit(newer, e.at(time.Minute+2*lease), func(p *backend.CompleteOrchestrationStepParams) {
				p.Window = &backend.WindowUpdate{Add: entries(e.at(time.Minute+2*lease), "newer"), Keep: 2}
			})
			e.wantWindowIDs(rw, "w", []string{"a", "b", "stale", "newer"}, "b", "newer")
		}},
		{"SurvivesContinueAsNew", func(t *testing.T, e *env) {
			rw := e.requestWindow()
			e.create("w", nil)
			e.windowStep("w", 0, &backend.WindowUpdate{Add: entries(e.t0, "a")})
			e.enqueue(raised("w", "w/m", "x"))
			e.commit(e.claimStep("w", e.at(time.Second)), e.at(time.Second), func(p *backend.CompleteOrchestrationStepParams) {
				p.ContinueAsNew = &backend.ContinueAsNew{NewExecutionID: "w-e2"}
				p.Window = &backend.WindowUpdate{Add: entries(e.at(time.Second), "b")}
			})
			if got := e.instance("w").ExecutionID; got != "w-e2" {
				t.Fatalf("execution %q after continue-as-new", got)
			}
			e.wantWindowIDs(rw, "w", []string{"a", "b"}, "a", "b")
			// A step without a window update leaves it alone.
			e.commit(e.claimStep("w", e.at(2*time.Second)), e.at(2*time.Second), nil)
			e.wantWindowIDs(rw, "w", []string{"a", "b"}, "a", "b")
		}},
		{"GoesWithInstance", func(t *testing.T, e *env) {
			rw := e.requestWindow()
			e.create("w", nil)
			e.windowStep("w", 0, &backend.WindowUpdate{Add: entries(e.t0, "a")})
			e.enqueue(raised("w", "w/end", "end"))
			e.commit(e.claimStep("w", e.at(time.Second)), e.at(time.Second), func(p *backend.CompleteOrchestrationStepParams) {
				p.Status = backend.StatusCompleted
				p.Window = &backend.WindowUpdate{Add: entries(e.at(time.Second), "b")}
			})
			e.wantWindowIDs(rw, "w", []string{"a", "b"})
			e.noErr("CreateInstance(IfExistsReplaceFinished)", e.b.CreateInstance(e.ctx, &backend.CreateInstanceParams{
				ID: "w", Name: orchName, ExecutionID: "w-e2", IfExists: backend.IfExistsReplaceFinished, Now: e.at(time.Minute)}))
			e.wantWindowIDs(rw, "w", []string{"a", "b"})
			e.windowStep("w", 2*time.Minute, &backend.WindowUpdate{Add: entries(e.at(2*time.Minute), "c")})
			e.wantWindowIDs(rw, "w", []string{"a", "b", "c"}, "c")
			e.end("w", backend.StatusFailed, e.at(3*time.Minute))
			e.noErr("PurgeInstance", e.b.PurgeInstance(e.ctx, "w"))
			e.wantWindowIDs(rw, "w", []string{"a", "b", "c"})
		}},
	}
}

// requestWindow returns the backend's RequestWindow or skips the test.
func (e *env) requestWindow() backend.RequestWindow {
	e.t.Helper()
	rw, ok := e.b.(backend.RequestWindow)
	if !ok {
		e.t.Skip("backend does not implement backend.RequestWindow")
	}
	return rw
}

// entries are window entries processed at at.
func entries(at time.Time, ids ...string) []backend.ProcessedRequest {
	out := make([]backend.ProcessedRequest, len(ids))
	for i, id := range ids {
		out[i] = backend.ProcessedRequest{ID: id, At: at}
	}
	return out
}

// windowStep commits a step of instance id at t0+d with the window update
// w, woken by an external event (the instance's first step when it has
// its start message).
func (e *env) windowStep(id string, d time.Duration, w *backend.WindowUpdate) {
	e.t.Helper()
	now := e.at(d)
	if e.instance(id).Status != backend.StatusPending {
		e.enqueue(raised(id, fmt.Sprintf("%s/w/%d", id, d), "w"))
	}
	e.commit(e.claimStep(id, now), now, func(p *backend.CompleteOrchestrationStepParams) { p.Window = w })
}

// wantWindow checks ProcessedRequests(id, ids): exactly the entries in want,
// with their times.
func (e *env) wantWindow(rw backend.RequestWindow, id string, ids []string, want map[string]time.Time) {
	e.t.Helper()
	got, err := rw.ProcessedRequests(e.ctx, id, ids)
	if err != nil {
		e.t.Fatalf("ProcessedRequests(%q): %v", id, err)
	}
	gotMap := map[string]time.Time{}
	for _, r := range got {
		if _, dup := gotMap[r.ID]; dup {
			e.t.Fatalf("ProcessedRequests(%q) returned %q twice", id, r.ID)
		}
		gotMap[r.ID] = r.At
	}
	if len(gotMap) != len(want) {
		e.t.Fatalf("ProcessedRequests(%q, %v) = %v, want %v", id, ids, gotMap, want)
	}
	for k, at := range want {
		if g, ok := gotMap[k]; !ok || !g.Equal(at) {
			e.t.Fatalf("ProcessedRequests(%q, %v) = %v, want %v", id, ids, gotMap, want)
		}
	}
}

// wantWindowIDs checks that of ids exactly want are in the window.
func (e *env) wantWindowIDs(rw backend.RequestWindow, id string, ids []string, want ...string) {
	e.t.Helper()
	got, err := rw.ProcessedRequests(e.ctx, id, ids)
	if err != nil {
		e.t.Fatalf("ProcessedRequests(%q): %v", id, err)
	}
	var gotIDs []string
	for _, r := range got {
		gotIDs = append(gotIDs, r.ID)
	}
	slices.Sort(gotIDs)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(gotIDs, want) {
		e.t.Fatalf("window of %q holds %v of %v, want %v", id, gotIDs, ids, want)
	}
}
