package duro_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/memory"
)

// The determinism tests replay recorded histories against the current
// orchestration code, as ReplayHistory does for users before a deployment.
// Run with -update to re-record testdata/histories from the code (and derive
// the bad histories from them); without it the recorded files are checked.
var update = flag.Bool("update", false, "re-record testdata/histories/*.json by running the orchestrations of TestReplayHistories")

const historyDir = "testdata/histories"

// historyCase is a recorded history: the orchestration run to record it and
// what the recording does while it runs.
type historyCase struct {
	// name is the file name without .json and the instance ID.
	name  string
	orch  string
	input any
	// drive runs after Start, while the orchestration runs.
	drive func(ctx context.Context, c *duro.Client, id string) error
	// children are sub-orchestration instances whose histories are recorded
	// too, as name-<child suffix>.json.
	children []string
}

var historyCases = []historyCase{
	{name: "sequence", orch: "Sequence", input: []string{"Tokyo", "Seattle", "London"}},
	{name: "fanout", orch: "FanOut", input: []string{"Tokyo", "Seattle"}},
	{name: "timer-event", orch: "TimerAndEvent", drive: func(ctx context.Context, c *duro.Client, id string) error {
		// Raise "Go" only once the code waits for it, so that the history
		// records the event resolving a wait with a pending timeout.
		for {
			inst, err := c.Get(ctx, id)
			if err != nil {
				return err
			}
			var status string
			if err := inst.CustomStatus(&status); err != nil {
				return err
			}
			if status == "waiting for Go" {
				return c.RaiseEvent(ctx, id, "Go", "green")
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}},
	{name: "suborchestration", orch: "Parent", input: "parcel", children: []string{"child"}},
	{name: "retry", orch: "Retry", input: "rates"},
	{name: "continueasnew-last", orch: "Countdown", input: 2},
}

// replayRegistry registers the orchestrations whose histories are recorded.
// Changing them in a way that changes their decisions breaks
// TestReplayHistories: that is the point.
func replayRegistry() *duro.Registry {
	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "Hello", func(ctx duro.ActivityContext, city string) (string, error) {
		return "Hello, " + city + "!", nil
	})
	duro.RegisterActivity(reg, "Weather", func(ctx duro.ActivityContext, city string) (string, error) {
		return "sunny in " + city, nil
	})
	var failedOnce sync.Map
	duro.RegisterActivity(reg, "Flaky", func(ctx duro.ActivityContext, what string) (string, error) {
		if _, again := failedOnce.LoadOrStore(ctx.InstanceID(), true); !again {
			return "", duro.NewError("Unavailable", what+" unavailable")
		}
		return what + " fetched", nil
	})

	duro.RegisterOrchestration(reg, "Sequence", func(ctx *duro.OrchestrationContext, cities []string) ([]string, error) {
		var out []string
		for _, c := range cities {
			var s string
			if err := ctx.CallActivity("Hello", c).Await(&s); err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	})
	duro.RegisterOrchestration(reg, "FanOut", func(ctx *duro.OrchestrationContext, cities []string) ([]string, error) {
		var tasks []*duro.Task
		for _, c := range cities {
			tasks = append(tasks, ctx.CallActivity("Hello", c), ctx.CallActivity("Weather", c))
		}
		if err := ctx.AwaitAll(tasks...); err != nil {
			return nil, err
		}
		out := make([]string, len(tasks))
		for i, t := range tasks {
			if err := t.Await(&out[i]); err != nil {
				return nil, err
			}
		}
		return out, nil
	})
	duro.RegisterOrchestration(reg, "TimerAndEvent", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
		if err := ctx.Sleep(10 * time.Millisecond); err != nil {
			return "", err
		}
		if err := ctx.WaitForEvent("Approval", 10*time.Millisecond).Await(nil); !errors.Is(err, duro.ErrTimeout) {
			return "", fmt.Errorf("approval: %v, want a timeout", err)
		}
		if err := ctx.SetCustomStatus("waiting for Go"); err != nil {
			return "", err
		}
		var light string
		if err := ctx.WaitForEvent("Go", time.Hour).Await(&light); err != nil {
			return "", err
		}
		return "light is " + light, nil
	})
	duro.RegisterOrchestration(reg, "Parent", func(ctx *duro.OrchestrationContext, what string) (string, error) {
		var out string
		err := ctx.CallSubOrchestration("Child", what, duro.CallOptions{InstanceID: ctx.InstanceID() + "-child"}).Await(&out)
		return "child said: " + out, err
	})
	duro.RegisterOrchestration(reg, "Child", func(ctx *duro.OrchestrationContext, what string) (string, error) {
		var out string
		err := ctx.CallActivity("Hello", what).Await(&out)
		return out, err
	})
	duro.RegisterOrchestration(reg, "Retry", func(ctx *duro.OrchestrationContext, what string) (string, error) {
		var out string
		err := ctx.CallActivity("Flaky", what, duro.CallOptions{RetryPolicy: &duro.RetryPolicy{
			MaxAttempts: 3, InitialInterval: 10 * time.Millisecond,
		}}).Await(&out)
		return out, err
	})
	duro.RegisterOrchestration(reg, "Countdown", func(ctx *duro.OrchestrationContext, n int) (string, error) {
		var out string
		if err := ctx.CallActivity("Hello", fmt.Sprint("stop ", n)).Await(&out); err != nil {
			return "", err
		}
		if n > 0 {
			return "", ctx.ContinueAsNew(n - 1)
		}
		return out, nil
	})
	return reg
}

// badCase is a history derived from a good one by a deliberate corruption,
// which replay must report as non-determinism naming what it found.
type badCase struct {
	name string
	from string
	// mutate corrupts a copy of the good history (events may be changed in
	// place).
	mutate func(t *testing.T, h []*backend.Event) []*backend.Event
	// want are substrings of the error message.
	want []string
	// knownBug, if set, says why replay does not detect the corruption
	// yet; the case is skipped while ReplayHistory returns nil.
	knownBug string
}

var badCases = []badCase{
	{
		name: "renamed-activity", from: "sequence",
		mutate: func(t *testing.T, h []*backend.Event) []*backend.Event {
			find(t, h, backend.EventTaskScheduled, 1).Name = "SayGoodbye"
			return h
		},
		want: []string{`history has activity "SayGoodbye" (task 1)`, `the code scheduled activity "Hello" (task 1)`},
	},
	{
		name: "swapped-task-ids", from: "fanout",
		mutate: func(t *testing.T, h []*backend.Event) []*backend.Event {
			hello, weather := find(t, h, backend.EventTaskScheduled, 0), find(t, h, backend.EventTaskScheduled, 1)
			hello.TaskID, weather.TaskID = 1, 0
			return h
		},
		want: []string{`history has activity "Hello" (task 1)`, `the code scheduled activity "Weather" (task 1)`},
	},
	{
		name: "extra-task-scheduled", from: "sequence",
		mutate: func(t *testing.T, h []*backend.Event) []*backend.Event {
			last := find(t, h, backend.EventTaskScheduled, 2)
			extra := *last
			extra.TaskID = 3
			i := slices.Index(h, last)
			return slices.Insert(h, i+1, &extra)
		},
		want: []string{`history has activity "Hello" (task 3) but the code did not schedule it`},
	},
	{
		name: "missing-task-scheduled", from: "sequence",
		mutate: func(t *testing.T, h []*backend.Event) []*backend.Event {
			sched := find(t, h, backend.EventTaskScheduled, 1)
			return slices.DeleteFunc(h, func(e *backend.Event) bool { return e == sched })
		},
		want: []string{`TaskCompleted`, `task 1`},
	},
	{
		name: "timer-instead-of-activity", from: "sequence",
		mutate: func(t *testing.T, h []*backend.Event) []*backend.Event {
			sched, done := find(t, h, backend.EventTaskScheduled, 1), find(t, h, backend.EventTaskCompleted, 1)
			fireAt := done.Timestamp
			*sched = backend.Event{Type: backend.EventTimerCreated, TaskID: 1, FireAt: fireAt, Timestamp: sched.Timestamp}
			*done = backend.Event{Type: backend.EventTimerFired, TaskID: 1, FireAt: fireAt, Timestamp: done.Timestamp}
			return h
		},
		want: []string{`history has timer "timer" (task 1)`, `the code scheduled activity "Hello" (task 1)`},
	},
	{
		name: "completed-while-waiting", from: "timer-event",
		mutate: func(t *testing.T, h []*backend.Event) []*backend.Event {
			return slices.DeleteFunc(h, func(e *backend.Event) bool {
				return e.Type == backend.EventEventRaised && e.Name == "Go"
			})
		},
		want: []string{`history ends with Completed but the code ended Running`},
	},
}

// find returns the event of type typ for task taskID.
func find(t *testing.T, h []*backend.Event, typ backend.EventType, taskID int) *backend.Event {
	t.Helper()
	for _, e := range h {
		if e.Type == typ && e.TaskID == taskID {
			return e
		}
	}
	t.Fatalf("history has no %s for task %d", typ, taskID)
	return nil
}

func TestReplayHistories(t *testing.T) {
	if *update {
		recordHistories(t)
	}
	reg := replayRegistry()
	files, err := filepath.Glob(filepath.Join(historyDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range historyCases {
		if !slices.Contains(files, filepath.Join(historyDir, c.name+".json")) {
			t.Errorf("no recorded history for %q; run go test -run TestReplayHistories -update", c.name)
		}
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			t.Parallel()
			if err := duro.ReplayHistory(reg, loadHistory(t, file)); err != nil {
				t.Fatalf("replay of %s: %v", file, err)
			}
		})
	}
}

func TestReplayBadHistories(t *testing.T) {
	reg := replayRegistry()
	dir := filepath.Join(historyDir, "bad")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, bc := range badCases {
			h := loadHistory(t, filepath.Join(historyDir, bc.from+".json"))
			writeHistory(t, filepath.Join(dir, bc.name+".json"), bc.mutate(t, h))
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		if !slices.ContainsFunc(badCases, func(bc badCase) bool { return bc.name == name }) {
			t.Errorf("%s is not described in badCases", file)
		}
	}
	for _, bc := range badCases {
		t.Run(bc.name, func(t *testing.T) {
			t.Parallel()
			err := duro.ReplayHistory(reg, loadHistory(t, filepath.Join(dir, bc.name+".json")))
			if err == nil && bc.knownBug != "" {
				t.Skip("known bug: " + bc.knownBug)
			}
			if !errors.Is(err, duro.ErrNonDeterminism) {
				t.Fatalf("ReplayHistory = %v; want an error wrapping ErrNonDeterminism", err)
			}
			for _, w := range bc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// loadHistory reads a history file with duro.ReadHistory, which decodes
// each event with backend.DecodeEvent so that the files are validated as
// stored events are.
func loadHistory(t *testing.T, file string) []*backend.Event {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := duro.ReadHistory(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return h
}

func writeHistory(t *testing.T, file string, h []*backend.Event) {
	t.Helper()
	var b bytes.Buffer
	if err := duro.WriteHistory(&b, h); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// recordHistories runs every historyCase on a fresh in-memory backend and
// writes the histories it leaves.
func recordHistories(t *testing.T) {
	if err := os.MkdirAll(historyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, hc := range historyCases {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		be, err := memory.Open(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer be.Close()
		w, err := duro.NewWorker(be, replayRegistry(), &duro.WorkerOptions{
			PollInterval: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer w.Stop(ctx)
		c := duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 5 * time.Millisecond})
		id, err := c.Start(ctx, hc.orch, hc.input, duro.StartOptions{InstanceID: hc.name})
		if err != nil {
			t.Fatal(err)
		}
		if hc.drive != nil {
			if err := hc.drive(ctx, c, id); err != nil {
				t.Fatalf("%s: %v", hc.name, err)
			}
		}
		inst, err := c.Wait(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if inst.Status != duro.StatusCompleted {
			t.Fatalf("%s ended %s: %v", hc.name, inst.Status, inst.Err())
		}
		for _, suffix := range append([]string{""}, hc.children...) {
			name := hc.name
			if suffix != "" {
				name += "-" + suffix
			}
			h, err := c.History(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			writeHistory(t, filepath.Join(historyDir, name+".json"), h)
		}
	}
}

// changedCode is a change to an orchestration that alters its decisions, so
// that its recorded histories no longer replay.
type changedCode struct {
	name string
	// file is the recorded history replayed against the changed code.
	file string
	orch func(ctx *duro.OrchestrationContext, cities []string) ([]string, error)
	want []string
	// knownBug, if set, says why replay does not detect the change yet; the
	// case is skipped while ReplayHistory returns nil.
	knownBug string
}

// greetAll calls activity for each city in turn.
func greetAll(ctx *duro.OrchestrationContext, activity string, cities []string) ([]string, error) {
	out := make([]string, len(cities))
	for i, c := range cities {
		if err := ctx.CallActivity(activity, c).Await(&out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

var changedCodeCases = []changedCode{
	{
		name: "RenamedActivity", file: "sequence",
		orch: func(ctx *duro.OrchestrationContext, cities []string) ([]string, error) {
			return greetAll(ctx, "Greet", cities)
		},
		want: []string{`history has activity "Hello" (task 0)`, `the code scheduled activity "Greet" (task 0)`},
	},
	{
		name: "ActivityInsertedFirst", file: "sequence",
		orch: func(ctx *duro.OrchestrationContext, cities []string) ([]string, error) {
			if err := ctx.CallActivity("Weather", cities[0]).Await(nil); err != nil {
				return nil, err
			}
			return greetAll(ctx, "Hello", cities)
		},
		want: []string{`history has activity "Hello" (task 0)`, `the code scheduled activity "Weather" (task 0)`},
	},
	{
		name: "LastActivityRemoved", file: "sequence",
		orch: func(ctx *duro.OrchestrationContext, cities []string) ([]string, error) {
			return greetAll(ctx, "Hello", cities[:len(cities)-1])
		},
		want: []string{`history has activity "Hello" (task 2) but the code did not schedule it`},
	},
	{
		name: "TimerInsertedFirst", file: "sequence",
		orch: func(ctx *duro.OrchestrationContext, cities []string) ([]string, error) {
			if err := ctx.Sleep(time.Second); err != nil {
				return nil, err
			}
			return greetAll(ctx, "Hello", cities)
		},
		want: []string{`history has activity "Hello" (task 0)`, `the code scheduled timer "timer" (task 0)`},
	},
	{
		name: "ParallelMadeSequential", file: "fanout",
		orch: func(ctx *duro.OrchestrationContext, cities []string) ([]string, error) {
			var out []string
			for _, c := range cities {
				for _, a := range []string{"Hello", "Weather"} {
					var s string
					if err := ctx.CallActivity(a, c).Await(&s); err != nil {
						return nil, err
					}
					out = append(out, s)
				}
			}
			return out, nil
		},
		want: []string{`history has activity "Weather" (task 1) but the code did not schedule it`},
	},
	{
		name: "FireAndForgetAddedAtEnd", file: "sequence",
		orch: func(ctx *duro.OrchestrationContext, cities []string) ([]string, error) {
			out, err := greetAll(ctx, "Hello", cities)
			ctx.CallActivity("Weather", "Tokyo") // not awaited
			return out, err
		},
		want: []string{`Weather`},
	},
}

func TestReplayChangedCode(t *testing.T) {
	t.Parallel()
	for _, cc := range changedCodeCases {
		t.Run(cc.name, func(t *testing.T) {
			t.Parallel()
			h := loadHistory(t, filepath.Join(historyDir, cc.file+".json"))
			i := slices.IndexFunc(h, func(e *backend.Event) bool { return e.Type == backend.EventExecutionStarted })
			if i < 0 {
				t.Fatalf("%s has no ExecutionStarted", cc.file)
			}
			reg := duro.NewRegistry()
			duro.RegisterOrchestration(reg, h[i].Name, cc.orch)
			err := duro.ReplayHistory(reg, h)
			if err == nil && cc.knownBug != "" {
				t.Skip("known bug: " + cc.knownBug)
			}
			if !errors.Is(err, duro.ErrNonDeterminism) {
				t.Fatalf("ReplayHistory = %v; want an error wrapping ErrNonDeterminism", err)
			}
			for _, w := range cc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
