package histlru

import (
	"testing"

	"github.com/durohq/duro/backend"
)

func events(n int) []*backend.Event {
	out := make([]*backend.Event, n)
	for i := range out {
		out[i] = &backend.Event{Type: backend.EventEventRaised}
	}
	return out
}

// TestCache checks the cache's rules: an entry is served for its
// execution only, with its tag; a fill read before an invalidation is
// ignored; a shorter fill does not replace a longer entry but one of the
// same length does (a re-read after a doubt, with a new tag); the least
// recently used entries go when the bound is passed; a history over half
// the bound is not cached; a nil cache caches nothing.
func TestCache(t *testing.T) {
	c := New(10)
	_, _, epoch := c.Get("a", "e")
	c.Fill("a", "e", events(3), "t1", epoch)
	if h, tag, _ := c.Get("a", "e"); len(h) != 3 || tag != "t1" {
		t.Fatalf("got %d events, tag %q", len(h), tag)
	}
	c.Fill("a", "e", events(2), "t0", epoch)
	if h, tag, _ := c.Get("a", "e"); len(h) != 3 || tag != "t1" {
		t.Fatalf("a shorter fill replaced the entry: %d events, tag %q", len(h), tag)
	}
	c.Fill("a", "e", events(3), "t2", epoch)
	if _, tag, _ := c.Get("a", "e"); tag != "t2" {
		t.Fatalf("a fill of the same length kept tag %q", tag)
	}
	if h, _, _ := c.Get("a", "other"); h != nil {
		t.Fatal("another execution was served")
	}
	if h, _, _ := c.Get("a", "e"); h != nil {
		t.Fatal("an entry of another execution survived a miss")
	}
	_, _, old := c.Get("b", "e")
	c.Invalidate("b")
	c.Fill("b", "e", events(2), "", old)
	if h, _, _ := c.Get("b", "e"); h != nil {
		t.Fatal("a fill read before an invalidation was kept")
	}
	_, _, epoch = c.Get("x", "e")
	c.Fill("a", "e", events(5), "", epoch)
	c.Fill("b", "e", events(4), "", epoch)
	c.Get("a", "e") // a is the most recent
	c.Fill("c", "e", events(2), "", epoch)
	if h, _, _ := c.Get("b", "e"); h != nil {
		t.Fatal("the least recently used entry was not evicted")
	}
	if h, _, _ := c.Get("a", "e"); len(h) != 5 {
		t.Fatal("the most recently used entry was evicted")
	}
	if n, ev := c.Len(); n != 2 || ev != 7 {
		t.Fatalf("Len = %d, %d; want 2, 7", n, ev)
	}
	c.Fill("d", "e", events(6), "", epoch)
	if h, _, _ := c.Get("d", "e"); h != nil {
		t.Fatal("a history over half the bound was cached")
	}
	c.Drop("a")
	if h, _, _ := c.Get("a", "e"); h != nil {
		t.Fatal("a dropped entry was served")
	}
	c.Clear()
	if !c.Empty() {
		t.Fatal("not empty after Clear")
	}
	none := New(0)
	none.Fill("a", "e", events(1), "", 0)
	if h, _, _ := none.Get("a", "e"); h != nil || !none.Empty() {
		t.Fatal("a disabled cache cached")
	}
}
