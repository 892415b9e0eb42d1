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

// StepReadQueries returns the statements a claim reads its steps' messages
// and histories with, on b's schema, each with SQL literals of arguments
// for one instance.
func StepReadQueries(b *Backend) map[string][2]string {
	return map[string][2]string{
		"history": {b.q(stepHistoryQuery), `'{i}'::text[], '{0}'::int[]`},
		"inbox":   {b.q(stepMessagesQuery), `'{i}'::text[], '{f}'::bool[], 0::bigint, 1000`},
		// The forms for one instance.
		"history/one": {b.q(stepHistoryOneQuery), `'i', 0`},
		"inbox/one":   {b.q(stepMessagesOneQuery), `'i', false, 0::bigint, 1000`},
	}
}

// NotifySQL is the statement the notifier sends notifications with.
const NotifySQL = notifySQL
