package postgres_test

import (
	"context"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
)

// TestFinishAcrossBackends: two Backends on one hub (two pools, two
// listening connections, as two processes have): a watch on one fires
// when the other commits the step that ends the instance.
func TestFinishAcrossBackends(t *testing.T) {
	url := testURL(t)
	schema := freshSchema(t, url)
	a := open(t, url, schema, nil)
	b := open(t, url, schema, nil)
	ctx := t.Context()
	waitListening(t, a)
	now := time.Now().UTC()
	if err := b.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "i", Name: "o", ExecutionID: "i-e1", Now: now}); err != nil {
		t.Fatal(err)
	}
	fired, stop := a.WatchFinish("i")
	defer stop()
	wi, err := b.ClaimOrchestrationStep(ctx, &backend.ClaimParams{Owner: "t", LeaseDuration: time.Minute, Now: now})
	if err != nil || wi == nil {
		t.Fatalf("claim: %v, %v", wi, err)
	}
	if err := b.CompleteOrchestrationStep(ctx, &backend.CompleteOrchestrationStepParams{
		InstanceID: "i", ExecutionID: wi.Instance.ExecutionID, Attempt: wi.Attempt, Now: now,
		Status: backend.StatusCompleted, ConsumedMessageIDs: msgIDs(wi),
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("the other Backend's finish did not fire the watch within 10s")
	}
	stop()
	if n := a.WatchingFinish(); n != 0 {
		t.Fatalf("WatchingFinish = %d after the watch fired and was stopped", n)
	}
}

func msgIDs(wi *backend.OrchestrationWorkItem) []string {
	ids := make([]string, len(wi.Messages))
	for i, m := range wi.Messages {
		ids[i] = m.ID
	}
	return ids
}

// parkedReads wraps a backend for a Client: it reports when the client
// read the instance while holding a finish watch (so it is about to wait
// on it), and counts the reads.
type parkedReads struct {
	*postgres.Backend
	live   atomic.Int64
	reads  atomic.Int64
	parked chan struct{}
}

func (p *parkedReads) WatchFinish(id string) (<-chan struct{}, func()) {
	ch, stop := p.Backend.WatchFinish(id)
	p.live.Add(1)
	var done atomic.Bool
	return ch, func() {
		if done.CompareAndSwap(false, true) {
			p.live.Add(-1)
			stop()
		}
	}
}

func (p *parkedReads) GetInstance(ctx context.Context, id string) (*backend.Instance, error) {
	inst, err := p.Backend.GetInstance(ctx, id)
	p.reads.Add(1)
	if err == nil && !inst.Status.IsTerminal() && p.live.Load() > 0 {
		select {
		case p.parked <- struct{}{}:
		default:
		}
	}
	return inst, err
}

// TestClientWaitAcrossProcesses: a Client in this process, with a
// fallback poll of an hour, returns from Wait when a worker in another
// process finishes the instance: the other process's finish notification
// wakes it.
func TestClientWaitAcrossProcesses(t *testing.T) {
	url := testURL(t)
	schema := freshSchema(t, url)
	be := open(t, url, schema, nil)
	pr := &parkedReads{Backend: be, parked: make(chan struct{}, 10)}
	client := duro.NewClient(pr, &duro.ClientOptions{WaitPollInterval: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	id, err := client.Start(ctx, "Sequence", duro.AtLeastOnce)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		inst *duro.Instance
		err  error
	}
	done := make(chan result, 1)
	go func() {
		inst, err := client.Wait(ctx, id)
		done <- result{inst, err}
	}()
	select {
	case <-pr.parked:
	case <-time.After(30 * time.Second):
		t.Fatalf("Client.Wait never read the instance while watching it (%d reads)", pr.reads.Load())
	}
	before := pr.reads.Load()
	// The worker process starts only now: the instance cannot have
	// finished before Wait was waiting on its watch.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DURO_PG_WORKER=1", "DURO_PG_WORKLOAD=bench", "DURO_PG_URL="+url,
		"DURO_PG_SCHEMA="+schema, "DURO_PG_NAME=finisher")
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var r result
	select {
	case r = <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("Client.Wait did not return within 90s (fallback poll 1h; %d reads)", pr.reads.Load())
	}
	if r.err != nil {
		t.Fatalf("Wait: %v", r.err)
	}
	if r.inst.Status != duro.StatusCompleted {
		t.Fatalf("status %s, failure %v", r.inst.Status, r.inst.Failure)
	}
	// One read per wake-up: the finish, and any spurious ones (a restored
	// listening connection fires every watch); never a poll.
	if n := pr.reads.Load() - before; n > 3 {
		t.Fatalf("Wait read the instance %d times while the other process ran it", n)
	}
	if n := pr.live.Load(); n != 0 {
		t.Fatalf("%d watches live after Wait returned", n)
	}
	if n := be.WatchingFinish(); n != 0 {
		t.Fatalf("WatchingFinish = %d after Wait returned", n)
	}
}
