package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
)

// BenchmarkCycle measures the store alone: per op, one instance runs a
// one-activity sequence through the backend (create, claim and complete a
// step that schedules a task, claim and complete the task, claim and
// complete the final step): 7 write operations. "serial" issues them from
// one goroutine (no group commit possible); "parallel" from 8, so that
// operations share commits.
func BenchmarkCycle(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) *sqlite.Backend
	}{
		{"memory", func(b *testing.B) *sqlite.Backend {
			be, err := sqlite.OpenMemory(context.Background(), nil)
			if err != nil {
				b.Fatal(err)
			}
			return be
		}},
		{"normal", func(b *testing.B) *sqlite.Backend {
			be, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "b.db"), &sqlite.Options{Synchronous: "NORMAL"})
			if err != nil {
				b.Fatal(err)
			}
			return be
		}},
		{"full", func(b *testing.B) *sqlite.Backend {
			be, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "b.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			return be
		}},
	}
	for _, st := range stores {
		for _, par := range []int{1, 8} {
			name := st.name + "/serial"
			if par > 1 {
				name = st.name + "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				be := st.open(b)
				defer func() { _ = be.Close() }()
				var wg sync.WaitGroup
				var mu sync.Mutex
				next := 0
				cpu0 := cpuTime()
				b.ResetTimer()
				for g := range par {
					wg.Go(func() {
						for {
							mu.Lock()
							i := next
							next++
							mu.Unlock()
							if i >= b.N {
								return
							}
							if err := cycle(be, fmt.Sprintf("g%d-%d", g, i)); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
				ws := be.WriteStats()
				b.ReportMetric(float64(ws.Ops)/float64(ws.Commits), "ops/commit")
				b.ReportMetric(float64(ws.Statements)/float64(ws.Ops), "stmts/op")
			})
		}
	}
}

// cpuTime is the CPU time the process used so far: on a loaded machine it
// compares versions better than elapsed time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cycle runs one instance through a one-activity sequence. Claims name no
// instance, so concurrent cycles may take each other's work items; each
// cycle completes whatever it claimed.
func cycle(be *sqlite.Backend, id string) error {
	ctx := context.Background()
	claim := &backend.ClaimParams{Owner: "b", LeaseDuration: time.Minute}
	if err := be.CreateInstance(ctx, &backend.CreateInstanceParams{ID: id, Name: "o", ExecutionID: "e", Input: []byte(`"x"`)}); err != nil {
		return err
	}
	step := func(final bool) error {
		wi, err := be.ClaimOrchestrationStep(ctx, claim)
		if err != nil || wi == nil {
			return err
		}
		inst := wi.Instance.ID
		p := &backend.CompleteOrchestrationStepParams{InstanceID: inst, ExecutionID: wi.Instance.ExecutionID,
			Attempt: wi.Attempt, Status: backend.StatusRunning}
		for _, m := range wi.Messages {
			p.ConsumedMessageIDs = append(p.ConsumedMessageIDs, m.ID)
			p.NewEvents = append(p.NewEvents, m.Event)
		}
		now := time.Now()
		if len(wi.History) == 0 {
			p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventTaskScheduled, TaskID: 0, Name: "a", Timestamp: now})
			p.ActivityTasks = []*backend.ActivityTask{{ID: backend.TaskMessageID(inst, "e", 0), InstanceID: inst,
				ExecutionID: "e", Name: "a", Input: []byte(`"x"`)}}
		} else {
			p.Status, p.Output = backend.StatusCompleted, []byte(`"y"`)
			p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventExecutionCompleted, Status: backend.StatusCompleted, Result: p.Output, Timestamp: now})
		}
		return be.CompleteOrchestrationStep(ctx, p)
	}
	if err := step(false); err != nil {
		return err
	}
	wi, err := be.ClaimActivity(ctx, claim)
	if err != nil || wi == nil {
		return err
	}
	if err := be.CompleteActivity(ctx, &backend.CompleteActivityParams{TaskID: wi.Task.ID, Attempt: wi.Attempt,
		Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: wi.Task.TaskID, Result: []byte(`"r"`), Timestamp: time.Now()}}); err != nil {
		return err
	}
	return step(true)
}
