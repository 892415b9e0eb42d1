package duro_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/memory"
	"github.com/durohq/duro/backend/sqlite"
)

// stepRecorder is a SQLite backend (every capability promoted) that
// records the size of each committed step of one instance: its params
// encoded as JSON, everything the step hands the store to write.
type stepRecorder struct {
	*sqlite.Backend
	instance string
	mu       sync.Mutex
	sizes    []int
	status   []int // bytes of CustomStatus
}

func (r *stepRecorder) record(p *backend.CompleteOrchestrationStepParams, err error) {
	if err != nil || p.InstanceID != r.instance {
		return
	}
	b, jerr := json.Marshal(p)
	if jerr != nil {
		panic(jerr)
	}
	r.mu.Lock()
	r.sizes = append(r.sizes, len(b))
	r.status = append(r.status, len(p.CustomStatus))
	r.mu.Unlock()
}

func (r *stepRecorder) CompleteOrchestrationStep(ctx context.Context, p *backend.CompleteOrchestrationStepParams) error {
	err := r.Backend.CompleteOrchestrationStep(ctx, p)
	r.record(p, err)
	return err
}

func (r *stepRecorder) CompleteOrchestrationStepClaim(ctx context.Context, p *backend.CompleteOrchestrationStepParams,
	claim *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	wis, err := r.Backend.CompleteOrchestrationStepClaim(ctx, p, claim, max)
	r.record(p, err)
	return wis, err
}

// count returns how many steps are recorded.
func (r *stepRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sizes)
}

// take returns the recorded sizes and forgets them.
func (r *stepRecorder) take() (sizes, status []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sizes, status, r.sizes, r.status = r.sizes, r.status, nil, nil
	return sizes, status
}

// TestEntityBatchWritesWhatChanged fills an entity's window of processed
// request IDs (1,000 IDs) and then sends it one request at a time: each of
// those batches hands the store a few hundred bytes, the request it
// processed and the state, not the whole window (about 90 bytes per
// remembered ID, rewritten by every batch while the window was kept in the
// entity's custom status).
func TestEntityBatchWritesWhatChanged(t *testing.T) {
	t.Parallel()
	const window = 1000
	mem, err := memory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	id := duro.EntityID{Name: "counter", Key: "busy"}
	be := &stepRecorder{Backend: mem.Backend, instance: id.String()}
	defer be.Close()
	reg := duro.NewRegistry()
	duro.RegisterEntityOperation(reg, "counter", "add", func(ctx duro.EntityContext, n *int, d int) (int, error) {
		*n += d
		return *n, nil
	})
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{PollInterval: 5 * time.Millisecond, EntityDedupWindow: window,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	c := duro.NewClient(be, nil)
	value := func() int {
		st, err := c.GetEntity(ctx, id)
		if err != nil {
			return -1
		}
		var v int
		_ = st.State(&v)
		return v
	}
	waitValue := func(want int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for value() != want {
			if time.Now().After(deadline) {
				t.Fatalf("counter %d, want %d", value(), want)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Go(func() {
			for i := range window / 10 {
				if err := c.SignalEntity(ctx, id, "add", 1, duro.SignalOptions{IdempotencyKey: fmt.Sprintf("fill-%d-%d", g, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitValue(window)
	be.take()
	for i := range 5 {
		if err := c.SignalEntity(ctx, id, "add", 1, duro.SignalOptions{IdempotencyKey: fmt.Sprint("one-", i)}); err != nil {
			t.Fatal(err)
		}
		waitValue(window + i + 1)
	}
	// The recorder sees a batch after the store's call returns, which may be
	// after the new value is readable: wait for the fifth record.
	for deadline := time.Now().Add(30 * time.Second); be.count() < 5 && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
	sizes, status := be.take()
	if len(sizes) < 5 {
		t.Fatalf("%d batches recorded for 5 requests sent one at a time", len(sizes))
	}
	t.Logf("after %d requests, each batch of one request hands the store %v bytes (custom status %v)", window, sizes, status)
	for i, n := range sizes {
		if n > 2048 {
			t.Fatalf("batch %d of one request after %d processed hands the store %d bytes (custom status %d): it rewrites the window",
				i, window, n, status[i])
		}
	}
}
