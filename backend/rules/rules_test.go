package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/durohq/duro/backend"
)

func TestFences(t *testing.T) {
	step := &StepFence{Attempt: 3, Completed: 2, ExecutionID: "e1"}
	for _, c := range []struct {
		name    string
		check   func() error
		fenced  bool
		message string
	}{
		{"step: newest delivery", func() error { return step.Check("i", "e1", 3) }, false, ""},
		{"step: any execution", func() error { return step.Check("i", "", 3) }, false, ""},
		{"step: gone", func() error { return (*StepFence)(nil).Check("i", "e1", 3) }, true, "is gone"},
		{"step: other execution", func() error { return step.Check("i", "e0", 3) }, true, `current execution is "e1"`},
		{"step: stale attempt", func() error { return step.Check("i", "e1", 2) }, true, "newest delivery is 3"},
		{"step: attempt 0", func() error { return (&StepFence{}).Check("i", "", 0) }, true, "attempt 0"},
		{"step: already committed", func() error { return (&StepFence{Attempt: 2, Completed: 2}).Check("i", "", 2) }, true, "already completed"},
		{"task: newest delivery", func() error { return FenceTask("t", 2, true, 2, 100) }, false, ""},
		{"task: gone", func() error { return FenceTask("t", 2, false, 0, 0) }, true, "is gone"},
		{"task: never delivered", func() error { return FenceTask("t", 2, true, 2, 0) }, true, "not been delivered"},
		{"task: stale attempt", func() error { return FenceTask("t", 1, true, 2, 100) }, true, "newest delivery is 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.check()
			if got := errors.Is(err, backend.ErrLeaseLost); got != c.fenced {
				t.Fatalf("err = %v, fenced %v, want %v", err, got, c.fenced)
			}
			if c.fenced && !strings.Contains(err.Error(), c.message) {
				t.Fatalf("err = %q, want it to say %q", err, c.message)
			}
		})
	}
}

func TestPurgeStatuses(t *testing.T) {
	for _, c := range []struct {
		name    string
		p       *backend.PurgeInstancesParams
		want    []backend.Status
		wantErr bool
	}{
		{"nil", nil, nil, true},
		{"empty filter", &backend.PurgeInstancesParams{}, nil, true},
		{"unknown status", &backend.PurgeInstancesParams{Statuses: []backend.Status{"Sleeping"}}, nil, true},
		{"by name: every terminal status", &backend.PurgeInstancesParams{Name: "X"},
			[]backend.Status{backend.StatusCompleted, backend.StatusFailed, backend.StatusTerminated}, false},
		{"live statuses match nothing", &backend.PurgeInstancesParams{Statuses: []backend.Status{backend.StatusRunning}}, nil, false},
		{"failed only", &backend.PurgeInstancesParams{Statuses: []backend.Status{backend.StatusFailed, backend.StatusRunning}},
			[]backend.Status{backend.StatusFailed}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := PurgeStatuses(c.p)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("statuses = %v, want %v", got, c.want)
			}
		})
	}
}

// rows is a result set in memory.
type rows struct {
	data [][]any
	i    int
	err  error
}

func (r *rows) Next() bool { r.i++; return r.i <= len(r.data) }
func (r *rows) Err() error { return r.err }
func (r *rows) Scan(dest ...any) error {
	row := r.data[r.i-1]
	if len(dest) != len(row) {
		return fmt.Errorf("scan: %d destinations for %d columns", len(dest), len(row))
	}
	for i, v := range row {
		switch d := dest[i].(type) {
		case *string:
			*d = v.(string)
		case *int64:
			*d = v.(int64)
		case *int:
			*d = v.(int)
		default:
			if s, ok := d.(interface{ Scan(any) error }); ok {
				if err := s.Scan(v); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("scan: destination %T", d)
		}
	}
	return nil
}

func TestScanProcessed(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	got, err := ScanProcessed(&rows{data: [][]any{{"r1", at.UnixNano()}, {"r2", int64(0)}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "r1" || !got[0].At.Equal(at) || got[1].ID != "r2" || !got[1].At.IsZero() {
		t.Fatalf("got %+v", got)
	}
	broken := errors.New("connection reset")
	if _, err := ScanProcessed(&rows{err: broken}); !errors.Is(err, broken) {
		t.Fatalf("err = %v, want the rows' error", err)
	}
}

func TestTaskOptions(t *testing.T) {
	plain := backend.ActivityOptions{}
	amo := backend.ActivityOptions{AtMostOnce: true, OnDuplicate: "Suspend", LeaseDuration: time.Minute}
	tasks := []*backend.ActivityTask{{ID: "a", Options: plain}, {ID: "b", Options: plain}, {ID: "c", Options: amo},
		{ID: "d", Options: amo}, {ID: "e", Options: plain}}
	got, err := TaskOptions(tasks)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range tasks {
		var back backend.ActivityOptions
		if err := json.Unmarshal([]byte(got[i]), &back); err != nil || back != a.Options {
			t.Errorf("task %s: %q decodes to %+v (%v), want %+v", a.ID, got[i], back, err, a.Options)
		}
	}
	// Equal options in a row share one string; others are encoded anew.
	same := func(i, j int) bool { return unsafe.StringData(got[i]) == unsafe.StringData(got[j]) }
	for _, c := range []struct {
		i, j int
		want bool
	}{{0, 1, true}, {2, 3, true}, {1, 2, false}, {3, 4, false}} {
		if same(c.i, c.j) != c.want {
			t.Errorf("tasks %d and %d share a string: %v, want %v", c.i, c.j, !c.want, c.want)
		}
	}
	if got, err := TaskOptions(nil); err != nil || len(got) != 0 {
		t.Errorf("no tasks: %v, %v", got, err)
	}
}
