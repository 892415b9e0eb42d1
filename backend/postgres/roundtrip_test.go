package postgres_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
)

// flightProxy forwards TCP connections to the database and counts the
// client's flights: the reads of client bytes, each a write by pgx of one
// statement, one batch or one pipeline. On loopback a small write arrives
// as one read, so a flight is a round trip.
type flightProxy struct {
	ln      net.Listener
	target  string
	flights atomic.Int64
	wg      sync.WaitGroup
}

// notifyMarks are what the notifier's flights carry: its statement's text
// (when pgx prepares it) or the name pgx prepared it under.
var notifyMarks = func() [][]byte {
	digest := sha256.Sum256([]byte(postgres.NotifySQL))
	return [][]byte{[]byte("pg_notify("), []byte("stmtcache_" + hex.EncodeToString(digest[0:24]))}
}()

// notifying reports whether a flight is the notifier's NOTIFY, which
// follows any write that makes work and is sent on its own, in the
// background: the proxy does not count it.
func notifying(flight []byte) bool {
	for _, m := range notifyMarks {
		if bytes.Contains(flight, m) {
			return true
		}
	}
	return false
}

func newFlightProxy(t *testing.T, target string) *flightProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flightProxy{ln: ln, target: target}
	var mu sync.Mutex
	var conns []net.Conn
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			p.wg.Add(2)
			go func() {
				defer p.wg.Done()
				buf := make([]byte, 1<<16)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if !notifying(buf[:n]) {
							p.flights.Add(1)
						}
						if _, werr := s.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				_ = s.Close()
			}()
			go func() {
				defer p.wg.Done()
				_, _ = io.Copy(c, s)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// proxied opens a backend on a fresh schema whose connections go through
// a counting proxy.
func proxied(t *testing.T) (*postgres.Backend, *flightProxy) {
	raw := testURL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFlightProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	return open(t, u.String(), freshSchema(t, raw), nil), proxy
}

// TestStepRoundTrips counts the round trips of a claim and of a simple
// step's commit (one that schedules an activity and makes no work
// claimable at once, so that no NOTIFY follows it), through a counting
// proxy. Eager dispatch off (CompleteOrchestrationStep) keeps the counts
// to the step's own statements.
func TestStepRoundTrips(t *testing.T) {
	be, proxy := proxied(t)
	s := stepper{t, t.Context()}
	for i := range 6 {
		id := fmt.Sprint("i", i+1)
		create(t, be, id)
	}
	// Each try claims one instance, then commits its step.
	minClaim, minStep := int64(1<<62), int64(1<<62)
	for range 6 {
		f0 := proxy.flights.Load()
		wi, err := be.ClaimOrchestrationStep(s.ctx, claim(t0))
		if err != nil || wi == nil {
			t.Fatalf("claim: %+v %v", wi, err)
		}
		f1 := proxy.flights.Load()
		p := s.params(wi, "x", backend.StatusRunning)
		p.ActivityTasks = []*backend.ActivityTask{{ID: wi.Instance.ID + "-t1", InstanceID: wi.Instance.ID,
			ExecutionID: wi.Instance.ExecutionID, TaskID: 1, Name: "act"}}
		if err := be.CompleteOrchestrationStep(s.ctx, p); err != nil {
			t.Fatal(err)
		}
		f2 := proxy.flights.Load()
		minClaim, minStep = min(minClaim, f1-f0), min(minStep, f2-f1)
		t.Logf("try: claim %d, step %d", f1-f0, f2-f1)
	}
	t.Logf("round trips: claim %d, simple step commit %d", minClaim, minStep)
	if minStep != 1 {
		t.Errorf("a simple step's commit took %d round trips, want 1", minStep)
	}
}

// TestFusedCommitRoundTrips counts the round trips of CompleteActivityStep
// whose step commits with the completion: two (the completion, the claim
// and the step's data; the step's writes with the COMMIT) when the
// completion names the task's instance, three when it does not (the
// step's data then takes a round trip of its own), and a hint that names
// another instance is read past.
func TestFusedCommitRoundTrips(t *testing.T) {
	be, proxy := proxied(t)
	s := stepper{t, t.Context()}
	for _, c := range []struct {
		name string
		hint func(*backend.ActivityTask) (string, string)
		want int64
	}{
		{"hint", func(tk *backend.ActivityTask) (string, string) { return tk.InstanceID, tk.ExecutionID }, 2},
		{"no hint", func(*backend.ActivityTask) (string, string) { return "", "" }, 3},
		{"wrong hint", func(tk *backend.ActivityTask) (string, string) { return "other", tk.ExecutionID }, 3},
	} {
		best := int64(1 << 62)
		for i := range 6 {
			id := fmt.Sprintf("%s-%d", strings.ReplaceAll(c.name, " ", "-"), i)
			create(t, be, id)
			wi, err := be.ClaimInstanceStep(s.ctx, id, claim(t0))
			if err != nil || wi == nil {
				t.Fatalf("claim %s: %+v %v", id, wi, err)
			}
			if err := be.CompleteOrchestrationStep(s.ctx, withTask(s.params(wi, "start", backend.StatusRunning))); err != nil {
				t.Fatal(err)
			}
			awi, err := be.ClaimActivity(s.ctx, claim(t0))
			if err != nil || awi == nil || awi.Task.InstanceID != id {
				t.Fatalf("claim activity of %s: %+v %v", id, awi, err)
			}
			p := &backend.CompleteActivityParams{TaskID: awi.Task.ID, Attempt: awi.Attempt,
				Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: 1, Result: []byte(`1`), Timestamp: t0}}
			p.InstanceID, p.ExecutionID = c.hint(awi.Task)
			var history int
			f0 := proxy.flights.Load()
			out, err := be.CompleteActivityStep(s.ctx, p, claim(t0), func(wi *backend.OrchestrationWorkItem) *backend.StepCommit {
				history = len(wi.History)
				return &backend.StepCommit{Params: s.params(wi, "next", backend.StatusRunning)}
			})
			f1 := proxy.flights.Load()
			if err != nil || !out.Committed {
				t.Fatalf("%s: CompleteActivityStep: %+v %v", c.name, out, err)
			}
			if history != 2 || len(out.Step.Messages) != 1 {
				t.Fatalf("%s: the step had %d history events and %d messages; want 2 and the result", c.name, history, len(out.Step.Messages))
			}
			best = min(best, f1-f0)
		}
		t.Logf("%s: %d round trips", c.name, best)
		if best != c.want {
			t.Errorf("%s: a fused commit took %d round trips, want %d", c.name, best, c.want)
		}
	}
}

// TestCreateRoundTrips counts the round trips of a start that may not
// replace an instance: two with the database clock (BEGIN with its read,
// then the creation with the COMMIT), one with the caller's time; and one
// that finds the instance there still fails with ErrInstanceExists,
// naming its status, and writes nothing.
func TestCreateRoundTrips(t *testing.T) {
	be, proxy := proxied(t)
	ctx := t.Context()
	for _, c := range []struct {
		name string
		now  time.Time
		want int64
	}{{"database clock", time.Time{}, 2}, {"caller's time", t0, 1}} {
		best := int64(1 << 62)
		for i := range 6 {
			f0 := proxy.flights.Load()
			id := fmt.Sprintf("%s-%d", strings.ReplaceAll(c.name, " ", "-"), i)
			if err := be.CreateInstance(ctx, &backend.CreateInstanceParams{ID: id, Name: "orch", ExecutionID: id + "-e1", Now: c.now}); err != nil {
				t.Fatal(err)
			}
			best = min(best, proxy.flights.Load()-f0)
		}
		t.Logf("%s: %d round trips", c.name, best)
		if best != c.want {
			t.Errorf("a start with the %s took %d round trips, want %d", c.name, best, c.want)
		}
	}
	err := be.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "database-clock-0", Name: "other", ExecutionID: "x"})
	if !errors.Is(err, backend.ErrInstanceExists) || !strings.Contains(err.Error(), "Pending") {
		t.Fatalf("creating an existing instance: %v, want ErrInstanceExists naming Pending", err)
	}
	inst, err := be.GetInstance(ctx, "database-clock-0")
	if err != nil || inst.Name != "orch" || inst.ExecutionID != "database-clock-0-e1" {
		t.Fatalf("the existing instance after the refused start: %+v %v", inst, err)
	}
}
