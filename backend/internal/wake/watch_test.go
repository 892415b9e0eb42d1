package wake

import (
	"sync"
	"testing"
	"time"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestWatchers(t *testing.T) {
	var w Watchers
	a1, stopA1 := w.Watch("a")
	a2, stopA2 := w.Watch("a")
	b, stopB := w.Watch("b")
	if n := w.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	w.Notify("c") // nobody watches c
	if isClosed(a1) || isClosed(a2) || isClosed(b) {
		t.Fatal("a notification of c fired a watch of another key")
	}
	w.Notify("a")
	if !isClosed(a1) || !isClosed(a2) {
		t.Fatal("Notify(a) did not fire both watches of a")
	}
	if isClosed(b) {
		t.Fatal("Notify(a) fired the watch of b")
	}
	if n := w.Len(); n != 1 {
		t.Fatalf("Len after Notify(a) = %d, want 1", n)
	}
	stopA1() // after it fired: no effect
	stopA2()
	stopB()
	stopB() // twice: no effect
	if n := w.Len(); n != 0 {
		t.Fatalf("Len after every stop = %d, want 0", n)
	}
	if len(w.m) != 0 {
		t.Fatalf("stopped watches left %d keys in the map", len(w.m))
	}
	w.Notify("b")
	if isClosed(b) {
		t.Fatal("a stopped watch fired")
	}

	c, stopC := w.Watch("c")
	d, _ := w.Watch("d")
	w.NotifyKeys([]string{"x", "d"})
	if isClosed(c) || !isClosed(d) {
		t.Fatal("NotifyKeys fired the wrong watches")
	}
	w.NotifyAll()
	if !isClosed(c) || w.Len() != 0 {
		t.Fatal("NotifyAll left a watch live")
	}
	stopC()

	e, _ := w.Watch("e")
	w.Shutdown()
	if !isClosed(e) {
		t.Fatal("Shutdown did not fire a live watch")
	}
	f, stopF := w.Watch("f")
	if !isClosed(f) {
		t.Fatal("Watch after Shutdown returned an open channel")
	}
	stopF()
	if w.Len() != 0 {
		t.Fatalf("Len after Shutdown = %d", w.Len())
	}
}

// TestWatchersConcurrent races watches, stops and notifications; every
// watch ends fired or stopped and none is left behind.
func TestWatchersConcurrent(t *testing.T) {
	var w Watchers
	keys := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				k := keys[(g+i)%len(keys)]
				ch, stop := w.Watch(k)
				if i%3 == 0 {
					w.Notify(k)
					select {
					case <-ch:
					case <-time.After(10 * time.Second):
						t.Error("a notified watch did not fire")
						return
					}
				}
				stop()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			w.NotifyKeys(keys[:2])
		}
	}()
	wg.Wait()
	if n := w.Len(); n != 0 {
		t.Fatalf("Len after every watch was stopped = %d", n)
	}
}
