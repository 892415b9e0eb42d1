package postgres

// Listening reports whether b's listening connection is up.
func Listening(b *Backend) bool { return b.listening.Load() }

// ListenerPID is the server PID of b's listening connection.
func ListenerPID(b *Backend) uint32 { return b.listenerPID.Load() }

// CachedHistory is the length of instance id's history as b's history
// cache holds it (0: not cached).
func CachedHistory(b *Backend, id, exec string) int {
	ev, _, _ := b.hist.Get(id, exec)
	return len(ev)
}
