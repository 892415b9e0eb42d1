package postgres

// Listening reports whether b's listening connection is up.
func Listening(b *Backend) bool { return b.listening.Load() }

// ListenerPID is the server PID of b's listening connection.
func ListenerPID(b *Backend) uint32 { return b.listenerPID.Load() }
