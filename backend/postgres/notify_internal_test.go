package postgres

import (
	"strings"
	"testing"
	"time"
)

func fired(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestHeardPayloads: the listener acts on each payload form: finish
// notifications of other Backends fire the named watch (or all of them),
// its own are skipped (their watches fired at the commit), and the work
// payloads of this and older versions still wake the workers.
func TestHeardPayloads(t *testing.T) {
	b := &Backend{token: newToken()}
	other := newToken()
	if len(b.token) != tokenLen || b.token == other {
		t.Fatalf("tokens %q and %q: want two different %d-digit tokens", b.token, other, tokenLen)
	}

	a, stopA := b.finished.Watch("a")
	defer stopA()
	b.heard(finishPayload(b.token, "a"))
	if fired(a) {
		t.Fatal("a finish notification this Backend sent fired its watch again")
	}
	b.heard(finishPayload(other, "b"))
	if fired(a) {
		t.Fatal("another instance's finish fired the watch of a")
	}
	b.heard(finishPayload(other, "a"))
	if !fired(a) {
		t.Fatal("another Backend's finish of a did not fire the watch of a")
	}

	// IDs with colons, and the "any instance" form.
	c, stopC := b.finished.Watch("x:y:z")
	defer stopC()
	b.heard(finishPayload(other, "x:y:z"))
	if !fired(c) {
		t.Fatal("the finish of an ID with colons did not fire its watch")
	}
	d, stopD := b.finished.Watch("d")
	defer stopD()
	e, stopE := b.finished.Watch("e")
	defer stopE()
	b.heard(finishPayload(other, ""))
	if !fired(d) || !fired(e) {
		t.Fatal("a finish payload naming no instance did not fire every watch")
	}

	// The work payloads.
	w := b.work.Wait()
	b.heard("")
	if !fired(w) {
		t.Fatal(`the payload "" did not wake the workers`)
	}
	w = b.work.Wait()
	b.heard("12") // long past: at once
	if !fired(w) {
		t.Fatal("a past wake-up time did not wake the workers")
	}
	w = b.work.Wait()
	b.heard(time.Now().Add(time.Hour).Format(time.RFC3339)) // no form duro sends: ignored
	b.heard("f:short")
	if fired(w) {
		t.Fatal("a payload of unknown form woke the workers")
	}
	b.work.Shutdown()
}

// TestFinishPayloadBounds: one round names at most maxFinishes instances
// and no ID too long for a NOTIFY payload; past either it names none (any
// instance may have finished).
func TestFinishPayloadBounds(t *testing.T) {
	n := newNotifier(&Backend{token: newToken()})
	n.requestFinish("a")
	if len(n.finished) != 1 || n.anyFinish {
		t.Fatalf("after one request: %d IDs, any %v", len(n.finished), n.anyFinish)
	}
	n.requestFinish(strings.Repeat("x", maxFinishID+1))
	if len(n.finished) != 0 || !n.anyFinish {
		t.Fatalf("after an over-long ID: %d IDs, any %v; want none, any", len(n.finished), n.anyFinish)
	}
	n.requestFinish("b")
	if len(n.finished) != 0 {
		t.Fatal("an ID was kept after the round became 'any instance'")
	}
	n = newNotifier(&Backend{token: newToken()})
	for i := range maxFinishes + 1 {
		n.requestFinish(strings.Repeat("i", i+1))
	}
	if len(n.finished) != 0 || !n.anyFinish {
		t.Fatalf("after %d requests: %d IDs, any %v; want none, any", maxFinishes+1, len(n.finished), n.anyFinish)
	}
}
