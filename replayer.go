package duro

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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

// ReplayHistoryDir replays, as ReplayHistory does, every history file of
// dir (the files named *.json, as `duro history export --dir` writes them
// or WriteHistory does; subdirectories are left alone) against the code
// registered in reg. Run it in CI over histories exported from production
// before deploying a change to orchestration code: it returns nil when
// every history replays, and otherwise one error per failing file (joined;
// errors.Is finds ErrNonDeterminism), each naming its file. A directory
// without history files is an error, so that a wrong path cannot pass.
func ReplayHistoryDir(reg *Registry, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return fmt.Errorf("duro: replay %s: %w", dir, err)
	}
	if len(files) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("duro: replay: %w", err)
		}
		return fmt.Errorf("duro: replay: no history files (*.json) in %s", dir)
	}
	slices.Sort(files)
	var errs []error
	for _, file := range files {
		if err := replayHistoryFile(reg, file); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
		}
	}
	return errors.Join(errs...)
}

func replayHistoryFile(reg *Registry, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := ReadHistory(f)
	if err != nil {
		return err
	}
	return ReplayHistory(reg, h)
}

// ReadHistory reads a history file as WriteHistory writes it: a JSON array
// of events. Each event is checked as a backend checks a stored one; a bad
// one is an error wrapping backend.ErrMalformedEvent that gives its index.
func ReadHistory(r io.Reader) ([]*HistoryEvent, error) {
	var raw []json.RawMessage
	dec := json.NewDecoder(r)
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("duro: read history: want a JSON array of events: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("duro: read history: data after the array of events")
	}
	h := make([]*HistoryEvent, len(raw))
	for i, b := range raw {
		ev, err := backend.DecodeEvent(b)
		if err != nil {
			return nil, fmt.Errorf("duro: read history: event %d: %w", i, err)
		}
		h[i] = ev
	}
	return h, nil
}

// WriteHistory writes the history h (Client.History) as an indented JSON
// array of events, the file format ReadHistory and ReplayHistoryDir read.
// It refuses an event a backend would not store.
func WriteHistory(w io.Writer, h []*HistoryEvent) error {
	for i, ev := range h {
		if _, err := backend.EncodeEvent(ev); err != nil {
			return fmt.Errorf("duro: write history: event %d: %w", i, err)
		}
	}
	if h == nil {
		h = []*HistoryEvent{}
	}
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return fmt.Errorf("duro: write history: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
