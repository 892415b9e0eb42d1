package duro

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/replay"
)

// ErrNonDeterminism is wrapped by ReplayHistory when the code takes another
// path than the recorded history. At run time the same condition fails the
// instance with a failure of type "NonDeterminism".
var ErrNonDeterminism = errors.New("non-deterministic orchestration")

// ReplayHistory re-runs the orchestration code registered in reg against a
// recorded history (from Client.History, or a file of testdata) and reports
// whether the code still makes the decisions the history recorded. Use it in
// tests before deploying a change to orchestration code that has instances in
// flight. It returns an error wrapping ErrNonDeterminism on a divergence, and
// other errors for histories it cannot replay.
func ReplayHistory(reg *Registry, history []*HistoryEvent) error {
	var started *HistoryEvent
	for _, ev := range history {
		if ev == nil {
			return errors.New("duro: replay: nil event in history")
		}
		if ev.Type == backend.EventExecutionStarted {
			started = ev
			break
		}
	}
	if started == nil {
		return errors.New("duro: replay: history has no ExecutionStarted event")
	}
	if _, ok := reg.orchestration(started.Name); !ok {
		return fmt.Errorf("duro: replay: orchestration %q: %w", started.Name, ErrNotRegistered)
	}
	w := &Worker{reg: reg, p: payloads{codec: JSONCodec{}}, now: time.Now}
	inst := &backend.Instance{ID: "replay", Name: started.Name, ExecutionID: started.ExecutionID, Status: backend.StatusRunning, Parent: started.Parent}
	params, err := replay.Execute(&replay.Params{
		WorkItem: &backend.OrchestrationWorkItem{Instance: inst, History: history},
		Lookup:   w.lookup, Now: time.Now(),
		FailureFromError: func(err error) *backend.Failure { return failureFromError(w.p.codec, err) },
	})
	if err != nil {
		return fmt.Errorf("duro: replay: %w", err)
	}
	last := history[len(history)-1]
	for _, ev := range params.NewEvents {
		if ev.Type == backend.EventExecutionCompleted && ev.Failure != nil && ev.Failure.Type == replay.FailureTypeNonDeterminism {
			return fmt.Errorf("duro: replay: %w: %s", ErrNonDeterminism,
				strings.TrimPrefix(ev.Failure.Message, "non-deterministic orchestration "))
		}
	}
	for _, ev := range params.NewEvents {
		if last.Type == backend.EventExecutionCompleted && replay.IsScheduling(ev.Type) {
			return fmt.Errorf("duro: replay: %w: history ends with %s but the code also schedules %s %q (task %d)",
				ErrNonDeterminism, last.Status, ev.Type, ev.Name, ev.TaskID)
		}
	}
	if last.Type == backend.EventExecutionCompleted && params.Status != last.Status {
		return fmt.Errorf("duro: replay: %w: history ends with %s but the code ended %s",
			ErrNonDeterminism, last.Status, params.Status)
	}
	return nil
}
