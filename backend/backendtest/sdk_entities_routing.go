package backendtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// failingCommits is a backend whose step commits for instances with a prefix
// fail a number of times, so the worker hands the step back and it is
// delivered again — a crash between a batch's work and its commit.
type failingCommits struct {
	backend.Backend
	prefix string
	left   atomic.Int32
}

func (f *failingCommits) CompleteOrchestrationStep(ctx context.Context, p *backend.CompleteOrchestrationStepParams) error {
	if strings.HasPrefix(p.InstanceID, f.prefix) && f.left.Add(-1) >= 0 {
		return errors.New("injected: the commit did not happen")
	}
	return f.Backend.CompleteOrchestrationStep(ctx, p)
}

func (f *failingCommits) WorkAvailable() <-chan struct{} {
	if n, ok := f.Backend.(backend.WorkNotifier); ok {
		return n.WorkAvailable()
	}
	return nil
}

// entityRoutingTests cover what entities send and at-most-once operations.
func entityRoutingTests() []test {
	return []test{
		{"EntitySignalsEntityAndStartsOrchestration", func(t *testing.T, e *env) {
			env := newSDKEnv(t, e.b, func(r *duro.Registry) {
				registerCounter(r)
				duro.RegisterEntityOperation(r, "router", "route", func(ctx duro.EntityContext, s *struct{ N int }, n int) (string, error) {
					s.N++
					if err := ctx.SignalEntity(duro.EntityID{Name: "counter", Key: "routed"}, "add", n); err != nil {
						return "", err
					}
					return ctx.StartOrchestration("Report", n, duro.StartOptions{InstanceID: fmt.Sprintf("report-%d", n)})
				})
				duro.RegisterOrchestration(r, "Report", func(ctx *duro.OrchestrationContext, n int) (int, error) { return n * 10, nil })
			})
			ctx := bg(t)
			for n := 1; n <= 3; n++ {
				if err := env.client.SignalEntity(ctx, duro.EntityID{Name: "router", Key: "r"}, "route", n); err != nil {
					t.Fatal(err)
				}
			}
			waitEntity(t, env.client, duro.EntityID{Name: "counter", Key: "routed"}, 6)
			for n := 1; n <= 3; n++ {
				inst, err := env.client.Wait(ctx, fmt.Sprintf("report-%d", n))
				if err != nil {
					t.Fatal(err)
				}
				if got := mustOutput[int](t, inst); got != n*10 {
					t.Fatalf("report-%d = %d", n, got)
				}
			}
		}},
		{"AtMostOnceOperationInRedeliveredBatch", func(t *testing.T, e *env) {
			fb := &failingCommits{Backend: e.b, prefix: "@wallet@"}
			var mu sync.Mutex
			var attempts []int
			env := newSDKEnv(t, fb, func(r *duro.Registry) {
				duro.RegisterEntityOperation(r, "wallet", "debit", func(ctx duro.EntityContext, s *counter, n int) (int, error) {
					mu.Lock()
					attempts = append(attempts, ctx.Attempt())
					mu.Unlock()
					s.Value -= n
					return s.Value, nil
				}, duro.OperationOptions{Guarantee: duro.AtMostOnce})
				duro.RegisterEntityOperation(r, "wallet", "peek", func(ctx duro.EntityContext, s *counter, _ any) (int, error) {
					return s.Value, nil
				})
				duro.RegisterOrchestration(r, "Debit", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
					var v int
					err := ctx.CallEntity(duro.EntityID{Name: "wallet", Key: "w"}, "debit", 5).Await(&v)
					var dup *duro.PossibleDuplicateError
					if errors.As(err, &dup) {
						return fmt.Sprintf("duplicate attempt=%d", dup.Attempt), nil
					}
					return fmt.Sprint(v), err
				})
			})
			// The first batch that holds the debit runs it and then fails to
			// commit (five tries), so the batch is delivered again.
			fb.left.Store(5)
			inst := env.run(t, "Debit", nil)
			if got := mustOutput[string](t, inst); got != "duplicate attempt=2" {
				t.Fatalf("got %q", got)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(attempts) != 1 || attempts[0] != 1 {
				t.Fatalf("debit ran on attempts %v; want once, on attempt 1", attempts)
			}
			// Its state change was not committed: the batch's commit failed.
			if v := entityValue(t, env.client, duro.EntityID{Name: "wallet", Key: "w"}); v != 0 {
				t.Fatalf("wallet %d", v)
			}
		}},
	}
}
