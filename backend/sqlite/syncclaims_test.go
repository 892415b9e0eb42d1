package sqlite

import (
	"path/filepath"
	"testing"
	"time"

	"duro/backend"
)

// TestSyncClaims checks backend.ClaimSyncer: under synchronous=NORMAL it
// syncs the WAL once for every claim committed before it, a second call
// with nothing committed since does not sync again, and under FULL (whose
// commits sync) it never syncs.
func TestSyncClaims(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sync  string
		syncs int64
	}{{"NORMAL", 1}, {"FULL", 0}} {
		t.Run(tc.sync, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			b, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"), &Options{Synchronous: tc.sync})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = b.Close() }()
			if err := b.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "@e@k", Name: "@e", ExecutionID: "x"}); err != nil {
				t.Fatal(err)
			}
			wi, err := b.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: "w", LeaseDuration: time.Minute})
			if err != nil || wi == nil {
				t.Fatal(wi, err)
			}
			if n := b.walSyncs.Load(); n != 0 {
				t.Fatalf("%d WAL syncs after a step claim, want 0", n)
			}
			for range 2 {
				if err := b.SyncClaims(ctx); err != nil {
					t.Fatal(err)
				}
				if n := b.walSyncs.Load(); n != tc.syncs {
					t.Fatalf("%d WAL syncs, want %d", n, tc.syncs)
				}
			}
			if got := b.WriteStats().WALSyncs; got != uint64(tc.syncs) {
				t.Fatalf("WriteStats().WALSyncs = %d, want %d", got, tc.syncs)
			}
		})
	}
}
