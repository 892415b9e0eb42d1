package backendtest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/durohq/duro"
)

// entitySuspendTests: an at-most-once operation with OnDuplicateSuspend in a
// redelivered batch suspends the entity until an operator decides.
func entitySuspendTests() []test {
	return []test{
		{"AtMostOnceOperationSuspendsForDecision", func(t *testing.T, e *env) {
			for _, tc := range []struct {
				name     string
				decision duro.Decision
				want     string
				runs     []int
			}{
				{"retry", duro.RetryTask(0), "-5", []int{1, 3}},
				{"result", duro.CompleteTask(0, 42), "42", []int{1}},
				{"fail", duro.FailTask(0, "refunded"), "failed OperatorFailed", []int{1}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					fb := &failingCommits{Backend: e.fresh(t), prefix: "@wallet@"}
					var mu sync.Mutex
					var runs []int
					env := newSDKEnv(t, fb, func(r *duro.Registry) {
						duro.RegisterEntityOperation(r, "wallet", "debit", func(ctx duro.EntityContext, s *counter, n int) (int, error) {
							mu.Lock()
							runs = append(runs, ctx.Attempt())
							mu.Unlock()
							s.Value -= n
							return s.Value, nil
						}, duro.OperationOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend})
						duro.RegisterOrchestration(r, "Debit", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
							var v int
							err := ctx.CallEntity(duro.EntityID{Name: "wallet", Key: "w"}, "debit", 5).Await(&v)
							var te *duro.TaskError
							if errors.As(err, &te) {
								return "failed " + te.Type, nil
							}
							return fmt.Sprint(v), err
						})
					})
					fb.left.Store(5) // the first batch runs the debit, then its commit fails
					ctx := bg(t)
					id, err := env.client.Start(ctx, "Debit", nil)
					if err != nil {
						t.Fatal(err)
					}
					waitStatus(t, env.client, "@wallet@w", duro.StatusSuspended)
					pend, err := env.client.PendingDecisions(ctx)
					if err != nil || len(pend) != 1 || pend[0].InstanceID != "@wallet@w" || pend[0].Name != "debit" || pend[0].Attempt != 2 {
						t.Fatalf("pending %+v %v", pend, err)
					}
					if err := env.client.Resume(ctx, "@wallet@w", "checked"); !errors.Is(err, duro.ErrDecisionRequired) {
						t.Fatalf("resume without a decision: %v", err)
					}
					if err := env.client.Resume(ctx, "@wallet@w", "checked", tc.decision); err != nil {
						t.Fatal(err)
					}
					inst, err := env.client.Wait(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					if got := mustOutput[string](t, inst); got != tc.want {
						t.Fatalf("got %q, want %q", got, tc.want)
					}
					mu.Lock()
					defer mu.Unlock()
					if fmt.Sprint(runs) != fmt.Sprint(tc.runs) {
						t.Fatalf("debit ran on attempts %v, want %v", runs, tc.runs)
					}
				})
			}
		}},
	}
}
