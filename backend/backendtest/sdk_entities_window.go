package backendtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/replay"
)

// entityWindowTests check an entity's window of processed request IDs
// across executions and the bound of its lock queue.
func entityWindowTests() []test {
	return []test{
		{"DedupAcrossContinueAsNew", func(t *testing.T, e *env) {
			const window = 5
			env := newSDKEnvOpts(t, e.b, &duro.WorkerOptions{EntityDedupWindow: window}, registerCounter)
			ctx := bg(t)
			id := duro.EntityID{Name: "counter", Key: "can"}
			send := func(key string, n int) {
				t.Helper()
				if err := env.client.SignalEntity(ctx, id, "add", n, duro.SignalOptions{IdempotencyKey: key}); err != nil {
					t.Fatal(err)
				}
			}
			send("k1", 1)
			waitEntity(t, env.client, id, 1)
			first := e.instance(id.String()).ExecutionID
			for i := 2; i <= 8; i++ {
				send(fmt.Sprint("k", i), 1)
				waitEntity(t, env.client, id, i)
			}
			if e.instance(id.String()).ExecutionID == first {
				t.Fatalf("the entity did not continue as new after %d requests with a window of %d", 8, window)
			}
			// The newest IDs are in the window, some consumed by the earlier
			// execution: every one is dropped. The last signal, processed
			// after them, shows that they were.
			for i := 8 - window + 1; i <= 8; i++ {
				send(fmt.Sprint("k", i), 1)
			}
			send("last", 100)
			waitEntity(t, env.client, id, 108)
		}},
		{"WindowOfAnOlderEnvelope", func(t *testing.T, e *env) {
			// An entity stored by a build that kept its window in the
			// envelope: the IDs there are still dropped, and move to the
			// backend's window.
			id := duro.EntityID{Name: "counter", Key: "old"}
			cp := replay.EntityCreation(id.String())
			e.noErr("CreateInstance", e.b.CreateInstance(e.ctx, cp))
			wi, err := e.b.ClaimOrchestrationStep(e.ctx, &backend.ClaimParams{Owner: "backendtest", LeaseDuration: lease})
			e.noErr("ClaimOrchestrationStep", err)
			if wi == nil || wi.Instance.ID != id.String() {
				t.Fatalf("claimed %+v", wi)
			}
			now := time.Now().UTC()
			old := map[string]any{"state": []byte(`{"value":5}`), "exists": true, "consumed": 1,
				"window": []map[string]any{{"id": "client/dup", "at": now}}}
			status, err := json.Marshal(old)
			e.noErr("marshal", err)
			e.noErr("CompleteOrchestrationStep", e.b.CompleteOrchestrationStep(e.ctx, &backend.CompleteOrchestrationStepParams{
				InstanceID: wi.Instance.ID, ExecutionID: wi.Instance.ExecutionID, Attempt: wi.Attempt,
				ConsumedMessageIDs: []string{wi.Messages[0].ID}, Status: backend.StatusRunning, CustomStatus: status,
			}))
			env := newSDKEnv(t, e.b, registerCounter)
			ctx := bg(t)
			// dup is dropped; new, processed after it, shows that it was.
			for _, r := range []struct {
				key string
				n   int
			}{{"dup", 1}, {"new", 100}} {
				if err := env.client.SignalEntity(ctx, id, "add", r.n, duro.SignalOptions{IdempotencyKey: r.key}); err != nil {
					t.Fatal(err)
				}
			}
			waitEntity(t, env.client, id, 105)
			if rw, ok := e.b.(backend.RequestWindow); ok {
				got, err := rw.ProcessedRequests(ctx, id.String(), []string{"client/dup", "client/new"})
				e.noErr("ProcessedRequests", err)
				if len(got) != 2 {
					t.Fatalf("the backend's window holds %v, want both requests", got)
				}
			}
		}},
		{"QueueLimit", func(t *testing.T, e *env) {
			const limit = 2
			z, y := duro.EntityID{Name: "counter", Key: "z"}, duro.EntityID{Name: "counter", Key: "y"}
			env := newSDKEnvOpts(t, e.b, &duro.WorkerOptions{EntityQueueLimit: limit}, func(r *duro.Registry) {
				registerCounter(r)
				duro.RegisterOrchestration(r, "Hold", func(ctx *duro.OrchestrationContext, _ any) (any, error) {
					cs, err := ctx.LockEntities(z)
					if err != nil {
						return nil, err
					}
					if err := ctx.WaitForEvent("go", -1).Await(nil); err != nil {
						return nil, err
					}
					cs.Unlock()
					return nil, nil
				})
				duro.RegisterOrchestration(r, "Call", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
					err := ctx.CallEntity(z, "add", 10).Await(nil)
					var qe *duro.EntityQueueFullError
					if !errors.Is(err, duro.ErrEntityQueueFull) || !errors.As(err, &qe) || qe.Limit != limit || qe.Entity != z.String() {
						return "", fmt.Errorf("call: want an EntityQueueFullError, got %v", err)
					}
					return qe.LockedBy, nil
				})
				duro.RegisterOrchestration(r, "Lock", func(ctx *duro.OrchestrationContext, _ any) (string, error) {
					_, err := ctx.LockEntities(z, y) // y first, then z refuses
					if !errors.Is(err, duro.ErrEntityQueueFull) {
						return "", fmt.Errorf("lock: want ErrEntityQueueFull, got %v", err)
					}
					// Still running: the test checks that y was released.
					return "refused", ctx.WaitForEvent("done", -1).Await(nil)
				})
			})
			ctx := bg(t)
			holder, err := env.client.Start(ctx, "Hold", nil)
			if err != nil {
				t.Fatal(err)
			}
			entity := func(id duro.EntityID) *duro.EntityState {
				st, err := env.client.GetEntity(context.Background(), id)
				if err != nil {
					return &duro.EntityState{}
				}
				return st
			}
			pollUntil(t, "z locked by the holder", func() bool { return entity(z).LockedBy == holder })
			for i := range limit + 2 {
				if err := env.client.SignalEntity(ctx, z, "add", 1, duro.SignalOptions{IdempotencyKey: fmt.Sprint("s", i)}); err != nil {
					t.Fatal(err)
				}
			}
			pollUntil(t, "two signals queued and two refused", func() bool {
				st := entity(z)
				return st.Queued == limit && st.Rejected == 2
			})
			if inst := env.run(t, "Call", nil); inst.Status != duro.StatusCompleted || mustOutput[string](t, inst) != holder {
				t.Fatalf("Call: %s %v", inst.Status, inst.Failure)
			}
			locker, err := env.client.Start(ctx, "Lock", nil)
			if err != nil {
				t.Fatal(err)
			}
			pollUntil(t, "the refused lock request reached z", func() bool { return entity(z).Rejected == 4 })
			pollUntil(t, "y released by the refused lock request", func() bool {
				st, err := env.client.GetEntity(context.Background(), y)
				return err == nil && st.LockedBy == ""
			})
			if inst, _ := env.client.Get(ctx, locker); inst.Status.IsTerminal() {
				t.Fatalf("Lock ended (%s %v) before the check", inst.Status, inst.Failure)
			}
			if err := env.client.RaiseEvent(ctx, locker, "done", nil); err != nil {
				t.Fatal(err)
			}
			if inst, err := env.client.Wait(ctx, locker); err != nil || inst.Status != duro.StatusCompleted || mustOutput[string](t, inst) != "refused" {
				t.Fatalf("Lock: %+v %v", inst, err)
			}
			if st := entity(z); st.Queued != limit || st.Rejected != 4 {
				t.Fatalf("z: %d queued, %d rejected; want %d and 4", st.Queued, st.Rejected, limit)
			}
			if n := env.worker.Stats().EntityRequestsRejected; n != 4 {
				t.Fatalf("EntityRequestsRejected = %d, want 4", n)
			}
			// The release runs the queued signals: nothing accepted is lost.
			if err := env.client.RaiseEvent(ctx, holder, "go", nil); err != nil {
				t.Fatal(err)
			}
			if inst, err := env.client.Wait(ctx, holder); err != nil || inst.Status != duro.StatusCompleted {
				t.Fatalf("holder: %+v %v", inst, err)
			}
			waitEntity(t, env.client, z, limit)
			if st := entity(z); st.LockedBy != "" || st.Queued != 0 {
				t.Fatalf("z after the release: locked by %q, %d queued", st.LockedBy, st.Queued)
			}
		}},
	}
}

// pollUntil waits for cond, observed every few milliseconds, for up to 30s.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !poll(30*time.Second, cond) {
		t.Fatalf("timed out waiting until %s", what)
	}
}
