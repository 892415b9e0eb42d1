package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// bundle is a server over a fresh SQLite store with a worker running the
// test orchestrations:
//
//	Echo      returns its input
//	WaitForGo waits for the event "go" and returns its data
//	Boom      fails
//	Pay       calls Charge (AtMostOnce, OnDuplicateSuspend) and returns its result
//	Stage     sets its input as its custom status and waits for the event "go"
//
// and the entity "counter" with the operation "add".
type bundle struct {
	t       *testing.T
	be      backend.Backend
	c       *duro.Client
	srv     *Server
	http    *httptest.Server
	metrics *Metrics
	// charges counts the runs of Charge's code on the worker.
	charges atomic.Int32
	// hang makes Charge block until its context is done (a worker to kill).
	hang    atomic.Bool
	running chan struct{}
}

type setupOptions struct {
	token      string
	maxBody    int64
	maxPayload int
	noWorker   bool
}

func setup(t *testing.T, o setupOptions) *bundle {
	t.Helper()
	be, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "duro.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{t: t, be: be, running: make(chan struct{}, 16)}
	b.c = duro.NewClient(be, &duro.ClientOptions{MaxPayloadBytes: o.maxPayload, WaitPollInterval: 10 * time.Millisecond})
	b.metrics = NewMetrics(b.c)
	b.metrics.storeTTL = 0
	b.srv, err = New(Options{Client: b.c, Token: o.token, MaxBodyBytes: o.maxBody, Metrics: b.metrics,
		Info: Info{Version: "test"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	b.http = httptest.NewServer(b.srv)
	t.Cleanup(func() {
		b.http.Close()
		_ = be.Close()
	})
	if !o.noWorker {
		b.startWorker()
	}
	return b
}

// registry returns the test orchestrations and activities.
func (b *bundle) registry() *duro.Registry {
	reg := duro.NewRegistry()
	duro.RegisterOrchestration(reg, "Echo", func(_ *duro.OrchestrationContext, in json.RawMessage) (json.RawMessage, error) {
		return in, nil
	})
	duro.RegisterOrchestration(reg, "WaitForGo", func(ctx *duro.OrchestrationContext, _ any) (json.RawMessage, error) {
		var data json.RawMessage
		err := ctx.WaitForEvent("go", -1).Await(&data)
		return data, err
	})
	duro.RegisterOrchestration(reg, "Stage", func(ctx *duro.OrchestrationContext, stage json.RawMessage) (any, error) {
		if err := ctx.SetCustomStatus(stage); err != nil {
			return nil, err
		}
		return nil, ctx.WaitForEvent("go", -1).Await(nil)
	})
	duro.RegisterOrchestration(reg, "Boom", func(*duro.OrchestrationContext, any) (any, error) {
		return nil, duro.NewError("Boom", "it broke")
	})
	duro.RegisterActivity(reg, "Charge", func(ctx duro.ActivityContext, order string) (string, error) {
		if b.hang.Load() {
			b.running <- struct{}{}
			<-ctx.Done() // the provider never answers
			return "", ctx.Err()
		}
		b.charges.Add(1)
		return fmt.Sprintf("charged %s on attempt %d", order, ctx.Attempt()), nil
	}, duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend})
	duro.RegisterOrchestration(reg, "Pay", func(ctx *duro.OrchestrationContext, order string) (string, error) {
		var out string
		err := ctx.CallActivity("Charge", order).Await(&out)
		return out, err
	})
	duro.RegisterEntityOperation(reg, "counter", "add", func(_ duro.EntityContext, n *int, d int) (int, error) {
		*n += d
		return *n, nil
	})
	return reg
}

// startWorker starts a worker on the metered backend, stopped at cleanup.
func (b *bundle) startWorker() *duro.Worker {
	b.t.Helper()
	w, err := duro.NewWorker(b.metrics.Backend(b.be), b.registry(), &duro.WorkerOptions{
		PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.t.Fatal(err)
	}
	b.metrics.AddWorker(w)
	if err := w.Start(context.Background()); err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { stopWorker(w, 5*time.Second) })
	return w
}

func stopWorker(w *duro.Worker, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_ = w.Stop(ctx)
}

// suspendedPayments starts Pay instances with the given IDs on a worker
// that is stopped while every charge runs (as a crash would), then starts a
// second worker, which gets each charge again as attempt 2 and suspends its
// instance for a decision. It returns once every instance waits for one.
// Use it on a bundle set up with noWorker.
func (b *bundle) suspendedPayments(ids ...string) {
	b.t.Helper()
	b.hang.Store(true)
	first := b.startWorker()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range ids {
		if _, err := b.c.Start(ctx, "Pay", id, duro.StartOptions{InstanceID: id}); err != nil {
			b.t.Fatal(err)
		}
	}
	for range ids {
		select {
		case <-b.running:
		case <-ctx.Done():
			b.t.Fatal("the charges never ran on the first worker")
		}
	}
	stopWorker(first, 0) // abandons the charges, as a crash would
	b.hang.Store(false)
	b.startWorker()
	for _, id := range ids {
		b.waitFor(b.t, id, func(i *duro.Instance) bool {
			return i.Status == duro.StatusSuspended && i.Suspension != nil && len(i.Suspension.Pending) == 1
		})
	}
}

// waitFor waits until the instance satisfies ok.
func (b *bundle) waitFor(t testing.TB, id string, ok func(*duro.Instance) bool) *duro.Instance {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		inst, err := b.c.Get(context.Background(), id)
		if err == nil && ok(inst) {
			return inst
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s: gave up waiting (%v, %+v)", id, err, inst)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (b *bundle) waitStatus(t testing.TB, id string, s duro.Status) *duro.Instance {
	t.Helper()
	return b.waitFor(t, id, func(i *duro.Instance) bool { return i.Status == s })
}

// reply is an answer of the server.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// code returns the error code of an error answer.
func (r reply) code() string {
	var eb ErrorBody
	if json.Unmarshal(r.body, &eb) != nil || eb.Error == nil {
		return ""
	}
	return eb.Error.Code
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer is not JSON (%v): %s", err, r.body)
	}
}

// do sends a request; body is sent as it is when it is a string or []byte,
// else as JSON. hdr are extra headers, as "Name: value".
func (b *bundle) do(method, path string, body any, hdr ...string) reply {
	b.t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	default:
		j, err := json.Marshal(v)
		if err != nil {
			b.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, b.http.URL+path, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ":")
		if strings.EqualFold(k, "Host") {
			req.Host = strings.TrimSpace(v)
			continue
		}
		req.Header.Set(k, strings.TrimSpace(v))
	}
	res, err := b.http.Client().Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return reply{status: res.StatusCode, header: res.Header, body: out}
}
