package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// These tests drive the group-commit writer directly: a blocker operation
// holds the writer while others queue, so that the next batch is known.

func openTest(t *testing.T) *Backend {
	t.Helper()
	b, err := Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if _, err := b.wdb.ExecContext(t.Context(), `CREATE TABLE t (k TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return b
}

// block queues an operation that holds the writer until release is called.
func block(t *testing.T, b *Backend) (release func()) {
	t.Helper()
	started, hold := make(chan struct{}), make(chan struct{})
	go func() {
		_ = b.write(context.Background(), "block", time.Time{}, 0, func(t *txn) error {
			close(started)
			<-hold
			return nil
		})
	}()
	<-started
	var once sync.Once
	release = func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	return release
}

// waitQueued waits until n operations are queued behind the blocker.
func waitQueued(t *testing.T, b *Backend, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.w.mu.Lock()
		got := len(b.w.queue)
		b.w.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d operations queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func insertKey(k string, fail error) func(t *txn) error {
	return func(t *txn) error {
		if _, err := t.exec(`INSERT INTO t (k) VALUES (?)`, k); err != nil {
			return err
		}
		return fail
	}
}

func keys(t *testing.T, b *Backend) map[string]bool {
	t.Helper()
	rows, err := b.rdb.QueryContext(t.Context(), `SELECT k FROM t`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		got[k] = true
	}
	if err := closeRows(rows); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestGroupCommitIsolation runs operations in one batch, one of which fails
// after writing and one of which panics: only theirs are rolled back, the
// others commit together, in one transaction.
func TestGroupCommitIsolation(t *testing.T) {
	t.Parallel()
	b := openTest(t)
	release := block(t, b)
	before := b.WriteStats()
	boom := errors.New("boom")
	fns := map[string]func(t *txn) error{
		"a":   insertKey("a", nil),
		"bad": insertKey("bad", boom),
		"dup": insertKey("a", nil), // a constraint error, after "a" in the same batch
		"c":   insertKey("c", nil),
		"panic": func(t *txn) error {
			if err := insertKey("panic", nil)(t); err != nil {
				return err
			}
			panic("in an operation")
		},
	}
	order := []string{"a", "bad", "dup", "c", "panic"}
	errs := make(map[string]error)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, name := range order {
		waitQueued(t, b, i)
		wg.Go(func() {
			err := b.write(context.Background(), name, time.Time{}, 0, fns[name])
			mu.Lock()
			errs[name] = err
			mu.Unlock()
		})
	}
	waitQueued(t, b, len(order))
	release()
	wg.Wait()
	for name, want := range map[string]bool{"a": true, "c": true} {
		if (errs[name] == nil) != want {
			t.Errorf("%s: %v", name, errs[name])
		}
	}
	if !errors.Is(errs["bad"], boom) || errs["dup"] == nil || errs["panic"] == nil {
		t.Errorf("failing operations: bad %v, dup %v, panic %v", errs["bad"], errs["dup"], errs["panic"])
	}
	got := keys(t, b)
	if !got["a"] || !got["c"] || got["bad"] || got["panic"] || len(got) != 2 {
		t.Errorf("committed keys %v, want a and c", got)
	}
	after := b.WriteStats()
	if c := after.Commits - before.Commits; c != 2 { // the blocker's batch and the five
		t.Errorf("%d commits, want 2", c)
	}
}

// TestGroupCommitCancel checks that an operation whose context ends while it
// is queued is not run, and that its caller gets the context's error at
// once.
func TestGroupCommitCancel(t *testing.T) {
	t.Parallel()
	b := openTest(t)
	release := block(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.write(ctx, "cancelled", time.Time{}, 0, insertKey("x", nil)) }()
	waitQueued(t, b, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled operation: %v, want context.Canceled", err)
	}
	// Cancelled before it was queued: refused at once.
	if err := b.write(ctx, "late", time.Time{}, 0, insertKey("y", nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("operation with a done context: %v", err)
	}
	release()
	if err := b.write(context.Background(), "after", time.Time{}, 0, insertKey("z", nil)); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, b); got["x"] || got["y"] || !got["z"] {
		t.Fatalf("committed keys %v, want only z", got)
	}
}

// TestGroupCommitBounds checks that a batch holds at most maxBatchOps
// operations and, beyond its first, maxBatchBytes.
func TestGroupCommitBounds(t *testing.T) {
	t.Parallel()
	b := openTest(t)
	release := block(t, b)
	before := b.WriteStats()
	const n = maxBatchOps + 10
	var wg sync.WaitGroup
	for i := range n {
		waitQueued(t, b, i)
		size := 0
		if i >= maxBatchOps { // big operations: one batch each
			size = maxBatchBytes
		}
		wg.Go(func() {
			if err := b.write(context.Background(), "op", time.Time{}, size, func(*txn) error { return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, b, n)
	release()
	wg.Wait()
	// The blocker's batch, maxBatchOps small ones, then the big ones one by
	// one (the first big one cannot join a full batch).
	if c := b.WriteStats().Commits - before.Commits; c != 1+1+10 {
		t.Errorf("%d commits, want %d", c, 12)
	}
}

// TestCloseDrains checks that Close lets the writer finish what was queued
// before it, refuses what comes after, and leaves no goroutine behind (the
// package's TestMain checks leaks).
func TestCloseDrains(t *testing.T) {
	t.Parallel()
	b := openTest(t)
	release := block(t, b)
	var wg sync.WaitGroup
	for _, k := range []string{"a", "b", "c"} {
		wg.Go(func() {
			if err := b.write(context.Background(), k, time.Time{}, 0, insertKey(k, nil)); err != nil {
				t.Errorf("%s queued before Close: %v", k, err)
			}
		})
	}
	waitQueued(t, b, 3)
	closed := make(chan error)
	go func() { closed <- b.Close() }()
	for !b.closed.Load() {
		time.Sleep(time.Millisecond)
	}
	if err := b.write(context.Background(), "late", time.Time{}, 0, insertKey("late", nil)); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("write after Close: %v, want ErrClosed", err)
	}
	release()
	wg.Wait()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// TestStaleSummaryRepaired claims an instance whose ready summary says it
// has a message when it has none: the claim undoes itself, repairs the
// summary, and hands out nothing, without spending an attempt number.
func TestStaleSummaryRepaired(t *testing.T) {
	t.Parallel()
	b, err := OpenMemory(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	ctx := t.Context()
	if err := b.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "i", Name: "o", ExecutionID: "e"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.wdb.ExecContext(ctx, `DELETE FROM inbox`); err != nil {
		t.Fatal(err)
	}
	claim := &backend.ClaimParams{Owner: "w", LeaseDuration: time.Minute}
	if wi, err := b.ClaimOrchestrationStep(ctx, claim); err != nil || wi != nil {
		t.Fatalf("claim of a stale instance: %+v, %v", wi, err)
	}
	var attempt int64
	var ready sql.NullInt64
	if err := b.wdb.QueryRowContext(ctx, `SELECT step_attempt, ready_at FROM instances WHERE id = 'i'`).
		Scan(&attempt, &ready); err != nil {
		t.Fatal(err)
	}
	if attempt != 0 || ready.Valid {
		t.Fatalf("after the repair: step_attempt %d, ready_at %v", attempt, ready)
	}
	if err := b.EnqueueMessage(ctx, &backend.Message{ID: "m", InstanceID: "i",
		Event: &backend.Event{Type: backend.EventEventRaised, Name: "x"}}); err != nil {
		t.Fatal(err)
	}
	if wi, err := b.ClaimOrchestrationStep(ctx, claim); err != nil || wi == nil || wi.Attempt != 1 {
		t.Fatalf("claim after a message: %+v, %v", wi, err)
	}
}

// TestHistCache checks the cache's rules: a fill read before an
// invalidation is ignored, a shorter fill does not replace a longer one, a
// different execution misses, and the size bound evicts the least recently
// used instance.
func TestHistCache(t *testing.T) {
	t.Parallel()
	ev := func(n int) []*backend.Event {
		h := make([]*backend.Event, n)
		for i := range h {
			h[i] = &backend.Event{Type: backend.EventEventRaised, Name: "x"}
		}
		return h
	}
	c := newHistCache()
	_, epoch := c.get("a", "e")
	c.invalidate("other")
	c.fill("a", "e", ev(3), epoch) // read before the invalidation
	if h, _ := c.get("a", "e"); h != nil {
		t.Fatal("a stale fill was kept")
	}
	_, epoch = c.get("a", "e")
	c.fill("a", "e", ev(3), epoch)
	c.fill("a", "e", ev(2), epoch)
	if h, _ := c.get("a", "e"); len(h) != 3 {
		t.Fatalf("cached %d events, want 3", len(h))
	}
	if h, _ := c.get("a", "e2"); h != nil {
		t.Fatal("another execution hit the cache")
	}
	if h, _ := c.get("a", "e"); h != nil {
		t.Fatal("an entry of another execution survived a miss")
	}
	c.fill("a", "e", ev(maxCachedEvents/2), epoch)
	c.fill("b", "e", ev(maxCachedEvents/2), epoch)
	c.get("a", "e") // a is now the most recent
	c.fill("c", "e", ev(1), epoch)
	if h, _ := c.get("b", "e"); h != nil {
		t.Fatal("the least recently used entry was not evicted")
	}
	if h, _ := c.get("a", "e"); h == nil {
		t.Fatal("the most recently used entry was evicted")
	}
	c.drop("a")
	if _, n := c.Len(); n != 1 {
		t.Fatalf("after drop: %d events cached", n)
	}
	if h, _ := c.get("a", "e"); h != nil {
		t.Fatal("a dropped entry was served")
	}
}

// TestCacheKiB checks that Options.CacheKiB sets the page cache of the
// writer and of the read connections.
func TestCacheKiB(t *testing.T) {
	for _, tt := range []struct {
		opts *Options
		want int64
	}{{nil, -DefaultCacheKiB}, {&Options{CacheKiB: 64}, -64}} {
		b, err := Open(t.Context(), filepath.Join(t.TempDir(), "c.db"), tt.opts)
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		err = b.write(t.Context(), "test", time.Time{}, 0, func(tx *txn) error {
			return tx.queryRow(`PRAGMA cache_size`).Scan(&got)
		})
		if err != nil || got != tt.want {
			t.Errorf("writer: cache_size = %d (%v), want %d", got, err, tt.want)
		}
		err = b.read(t.Context(), "test", func(d *dbtx) error {
			return d.queryRow(`PRAGMA cache_size`).Scan(&got)
		})
		if err != nil || got != tt.want {
			t.Errorf("reader: cache_size = %d (%v), want %d", got, err, tt.want)
		}
		_ = b.Close()
	}
}
