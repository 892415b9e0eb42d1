package wake

import (
	"testing"
	"time"
)

func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func TestBroadcaster(t *testing.T) {
	var w Broadcaster
	ch := w.Wait()
	select {
	case <-ch:
		t.Fatal("Wait's channel closed before any wake-up")
	default:
	}
	w.Notify()
	if !closedWithin(ch, time.Second) {
		t.Fatal("Notify did not close the waiters' channel")
	}
	// A wake-up in the past fires at once; one in the future when due.
	ch = w.Wait()
	w.WakeAt(time.Now().Add(-time.Second).UnixNano())
	if !closedWithin(ch, time.Second) {
		t.Fatal("WakeAt in the past did not wake at once")
	}
	ch = w.Wait()
	w.WakeAt(time.Now().Add(50 * time.Millisecond).UnixNano())
	if !closedWithin(ch, 5*time.Second) {
		t.Fatal("WakeAt in the future never woke")
	}
	w.Shutdown()
	if !closedWithin(w.Wait(), time.Second) {
		t.Fatal("Wait after Shutdown did not return a closed channel")
	}
	w.WakeAt(time.Now().Add(time.Hour).UnixNano()) // ignored, no timer left behind
}
