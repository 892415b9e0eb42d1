package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// WorkAvailable implements backend.WorkNotifier: the channel is closed when
// work may have become claimable: after a commit in this process that made
// some (a new instance, message or activity task, a completed step, an
// abandoned lease), on a notification from another process sharing the hub,
// when a timer or retry time announced by any process comes due, every
// Options.PollInterval as a fallback, when the listening connection is
// restored, and on Close. After Close it is always closed.
func (b *Backend) WorkAvailable() <-chan struct{} {
	return b.work.Wait()
}

// signal wakes this process's waiters at once and asks the notifier to
// tell the other processes. now is set if the commit made work claimable
// at once; wakeAt lists the future times (Unix ns) at which it makes more
// claimable (timers, retry delays).
func (b *Backend) signal(now bool, wakeAt []int64) {
	if !now && len(wakeAt) == 0 {
		return
	}
	if now {
		b.work.Notify()
	}
	for _, at := range wakeAt {
		b.work.WakeAt(at)
	}
	b.out.request(now, wakeAt)
}

// WatchFinish implements backend.FinishNotifier: the channel is closed
// after a step that ends instance id (completes, fails or terminates it)
// commits through this Backend, on the finish notification another
// process (or another Backend of this process) sends after committing
// one, when the listening connection is restored (a notification may
// have been missed), and on Close. While the listening connection is down
// no other process's finish is heard: Client.Wait finds it on its fallback
// poll (ClientOptions.WaitPollInterval).
func (b *Backend) WatchFinish(id string) (<-chan struct{}, func()) {
	return b.finished.Watch(id)
}

// WatchingFinish returns the number of live finish watches: for tests
// that check a waiter released its watch.
func (b *Backend) WatchingFinish() int { return b.finished.Len() }

// signalFinish fires this Backend's watches of instance id at once and
// asks the notifier to tell the other processes.
func (b *Backend) signalFinish(id string) {
	b.finished.Notify(id)
	b.out.requestFinish(id)
}

// The payloads on the hub's channel: "" (work is claimable now), a
// decimal Unix ns time (work becomes claimable then), and
// finishPrefix + token + ":" + instance ID (the instance may have
// finished; an empty ID: any instance may have). The token is a random
// one per Backend, so that a listener skips its own finish notifications,
// whose watches fired at the commit. Listeners of older versions ignore
// the finish payloads.
const (
	finishPrefix = "f:"
	tokenLen     = 16 // hex digits
	// maxFinishID is the longest instance ID a finish payload names: a
	// NOTIFY payload must stay under 8000 bytes. A longer ID is sent as
	// "any instance".
	maxFinishID = 7000
	// maxFinishes bounds the instance IDs one round of NOTIFYs names; past
	// it, one "any instance" payload replaces them.
	maxFinishes = 256
)

func newToken() string {
	var r [tokenLen / 2]byte
	_, _ = rand.Read(r[:]) // never fails (crypto/rand)
	return hex.EncodeToString(r[:])
}

func finishPayload(token, id string) string {
	return finishPrefix + token + ":" + id
}

// parseFinish reads a finish payload: ok is false if p is none.
func parseFinish(p string) (token, id string, ok bool) {
	rest, found := strings.CutPrefix(p, finishPrefix)
	if !found || len(rest) < tokenLen+1 || rest[tokenLen] != ':' {
		return "", "", false
	}
	return rest[:tokenLen], rest[tokenLen+1:], true
}

// notifier sends the NOTIFYs of this process's commits, outside those
// commits: a NOTIFY inside a transaction takes a database-wide lock until
// the commit is flushed, which would serialize every committing
// transaction of every process. Requests that arrive while a NOTIFY is in
// flight are coalesced into the next one, so under load a process sends
// about one NOTIFY per round trip, however many commits it makes. A NOTIFY
// that fails (the database is away) is dropped: the fallback poll and the
// listeners' reconnection wake-up cover it.
type notifier struct {
	b      *Backend
	mu     sync.Mutex
	now    bool
	wakeAt []int64
	// finished lists the instances whose finish to announce; anyFinish
	// replaces them when there were too many.
	finished  []string
	anyFinish bool
	kick      chan struct{}
}

func newNotifier(b *Backend) *notifier {
	return &notifier{b: b, kick: make(chan struct{}, 1)}
}

func (n *notifier) request(now bool, wakeAt []int64) {
	n.mu.Lock()
	n.now = n.now || now
	for _, at := range wakeAt {
		if len(n.wakeAt) < 64 {
			n.wakeAt = append(n.wakeAt, at)
		}
	}
	n.mu.Unlock()
	n.wake()
}

// requestFinish asks for a finish notification of instance id.
func (n *notifier) requestFinish(id string) {
	n.mu.Lock()
	switch {
	case n.anyFinish:
	case len(n.finished) >= maxFinishes || len(id) > maxFinishID:
		n.finished, n.anyFinish = nil, true
	default:
		n.finished = append(n.finished, id)
	}
	n.mu.Unlock()
	n.wake()
}

func (n *notifier) wake() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// notifySQL sends the notifications $2 on channel $1.
const notifySQL = `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`

func (n *notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		}
		n.mu.Lock()
		var payloads []string
		if n.now {
			payloads = append(payloads, "")
		}
		for _, at := range n.wakeAt {
			payloads = append(payloads, strconv.FormatInt(at, 10))
		}
		if n.anyFinish {
			payloads = append(payloads, finishPayload(n.b.token, ""))
		}
		for _, id := range n.finished {
			payloads = append(payloads, finishPayload(n.b.token, id))
		}
		n.now, n.wakeAt, n.finished, n.anyFinish = false, nil, nil, false
		n.mu.Unlock()
		if len(payloads) == 0 {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.b.pool.Exec(sctx, notifySQL, n.b.channel, payloads)
		cancel()
		if err != nil && ctx.Err() == nil {
			n.b.log.Debug("postgres: NOTIFY failed; waiters in other processes will poll", "err", err)
		}
	}
}

// listen holds the listening connection: it LISTENs on the hub's channel,
// wakes the waiters on every notification, and wakes them every
// PollInterval anyway. When the connection is lost it logs one line,
// reconnects with backoff (waking the waiters every PollInterval
// meanwhile), and logs one line when it is back.
func (b *Backend) listen(ctx context.Context, cfg *pgx.ConnConfig) {
	var backoff time.Duration
	down := false // the loss was logged
	for ctx.Err() == nil {
		conn, err := b.listenConnect(ctx, cfg)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !down {
				b.log.Warn("postgres: cannot open the notification connection; workers fall back to polling; retrying",
					"schema", b.schema, "err", err)
				down = true
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			b.waitPolling(ctx, backoff)
			continue
		}
		if down {
			b.log.Info("postgres: notification connection restored", "schema", b.schema)
			down = false
		}
		backoff = 0
		b.listening.Store(true)
		b.listenerPID.Store(conn.PgConn().PID())
		// Work may have arrived, and instances finished, while nobody
		// listened.
		b.work.Notify()
		b.finished.NotifyAll()
		err = b.receive(ctx, conn)
		b.listening.Store(false)
		closeConn(conn)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("postgres: lost the notification connection; workers fall back to polling; reconnecting",
			"schema", b.schema, "err", err)
		down = true
	}
}

func (b *Backend) listenConnect(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout+time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(cctx, "LISTEN "+b.channel); err != nil {
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// pingEvery is how long the listening connection may stay silent before it
// is checked with a ping, so that a connection lost without a word (a
// network partition) is noticed.
const pingEvery = 30 * time.Second

// receive waits for notifications until ctx is done or the connection
// fails; it returns the failure.
func (b *Backend) receive(ctx context.Context, conn *pgx.Conn) error {
	lastHeard := time.Now()
	for {
		wctx, cancel := context.WithTimeout(ctx, b.pollInterval)
		n, err := conn.WaitForNotification(wctx)
		timedOut := err != nil && errors.Is(wctx.Err(), context.DeadlineExceeded) && !conn.IsClosed()
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			lastHeard = time.Now()
			b.heard(n.Payload)
		case timedOut:
			// The fallback poll.
			b.work.Notify()
			if time.Since(lastHeard) >= pingEvery {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := conn.Ping(pctx)
				cancel()
				if err != nil {
					return err
				}
				lastHeard = time.Now()
			}
		default:
			return err
		}
	}
}

// heard acts on one notification's payload; payloads of an unknown form
// (from a newer version) are ignored.
func (b *Backend) heard(payload string) {
	if payload == "" {
		b.work.Notify()
		return
	}
	if token, id, ok := parseFinish(payload); ok {
		switch {
		case token == b.token:
			// Fired at the commit already.
		case id == "":
			b.finished.NotifyAll()
		default:
			b.finished.Notify(id)
		}
		return
	}
	if at, err := strconv.ParseInt(payload, 10, 64); err == nil {
		b.work.WakeAt(at)
	}
}

// waitPolling waits for d, waking the waiters every PollInterval.
func (b *Backend) waitPolling(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		if !sleepCtx(ctx, min(left, b.pollInterval)) {
			return
		}
		b.work.Notify()
	}
}
