package sqlite

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// TestStartMarksSyncWAL checks where synchronous=NORMAL pays for
// at-most-once code: claims of at-most-once tasks (batch, eager) do not
// sync the WAL; the start mark of a delivery does, before it returns, and
// concurrent start marks share syncs; a step's start mark syncs too. Under
// FULL (whose commits sync) nothing syncs the WAL.
func TestStartMarksSyncWAL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sync   string
		normal bool
	}{{"NORMAL", true}, {"FULL", false}} {
		t.Run(tc.sync, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			b, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"), &Options{Synchronous: tc.sync})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = b.Close() }()
			syncs := func(want func(n int64) bool, what string) {
				t.Helper()
				if n := b.walSyncs.Load(); !want(n) {
					t.Fatalf("%s: %d WAL syncs", what, n)
				}
			}
			if err := b.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "i", Name: "o", ExecutionID: "e"}); err != nil {
				t.Fatal(err)
			}
			claim := &backend.ClaimParams{Owner: "w", LeaseDuration: time.Minute}
			wi, err := b.ClaimOrchestrationStep(ctx, claim)
			if err != nil || wi == nil {
				t.Fatal(wi, err)
			}
			p := &backend.CompleteOrchestrationStepParams{InstanceID: "i", ExecutionID: "e", Attempt: wi.Attempt,
				Status: backend.StatusRunning, ConsumedMessageIDs: []string{wi.Messages[0].ID}}
			const n = 8
			for i := range n {
				p.ActivityTasks = append(p.ActivityTasks, &backend.ActivityTask{ID: backend.TaskMessageID("i", "e", i),
					InstanceID: "i", ExecutionID: "e", TaskID: i, Name: "a", Options: backend.ActivityOptions{AtMostOnce: true}})
			}
			eager, err := b.CompleteOrchestrationStepClaim(ctx, p, claim, 2)
			if err != nil || len(eager) != 2 {
				t.Fatalf("%d claimed eagerly, %v", len(eager), err)
			}
			wis, err := b.ClaimActivities(ctx, claim, n)
			if err != nil || len(wis) != n-2 {
				t.Fatalf("%d claimed, %v", len(wis), err)
			}
			syncs(func(n int64) bool { return n == 0 }, "after claiming at-most-once tasks")
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for _, wi := range append(eager, wis...) {
				wg.Go(func() {
					errs <- b.StartActivity(ctx, &backend.StartParams{ID: wi.Task.ID, Attempt: int64(wi.Attempt)})
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if tc.normal {
				syncs(func(k int64) bool { return k >= 1 && k <= n }, "after concurrent starts")
			} else {
				syncs(func(k int64) bool { return k == 0 }, "after concurrent starts")
			}
			before := b.walSyncs.Load()
			st, err := b.ClaimOrchestrationStep(ctx, claim)
			if err != nil {
				t.Fatal(err)
			}
			if st != nil {
				t.Fatalf("claimed %+v; the instance has no message", st)
			}
			if err := b.EnqueueMessage(ctx, &backend.Message{ID: "m", InstanceID: "i",
				Event: &backend.Event{Type: backend.EventEventRaised, Name: "x"}}); err != nil {
				t.Fatal(err)
			}
			if st, err = b.ClaimOrchestrationStep(ctx, claim); err != nil || st == nil {
				t.Fatal(st, err)
			}
			if err := b.StartOrchestrationStep(ctx, &backend.StartParams{ID: "i", ExecutionID: "e", Attempt: st.Attempt}); err != nil {
				t.Fatal(err)
			}
			want := before
			if tc.normal {
				want++
			}
			syncs(func(k int64) bool { return k == want }, "after a step's start mark")
		})
	}
}
