package duro_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/memory"
)

// The versioning tests change an orchestration while instances of it are in
// flight. testdata/versioning holds histories recorded with the first
// version of the code (orderV1); -update re-records them.
const versioningDir = "testdata/versioning"

// orderCode is a version of the "Order" orchestration: it waits for "Pay",
// charges, waits for "Approve" and ships.
type orderCode func(ctx *duro.OrchestrationContext, order string) ([]string, error)

// orderSteps runs the steps of an order: before runs between the charge
// and the wait for approval.
func orderSteps(ctx *duro.OrchestrationContext, order string, before func(did []string) ([]string, error)) ([]string, error) {
	if err := ctx.WaitForEvent("Pay", -1).Await(nil); err != nil {
		return nil, err
	}
	var s string
	if err := ctx.CallActivity("Charge", order).Await(&s); err != nil {
		return nil, err
	}
	did, err := before([]string{s})
	if err != nil {
		return nil, err
	}
	if err := ctx.WaitForEvent("Approve", -1).Await(nil); err != nil {
		return nil, err
	}
	if err := ctx.CallActivity("Ship", order).Await(&s); err != nil {
		return nil, err
	}
	return append(did, s), nil
}

// fraudCheck is the change: a fraud check after the charge.
func fraudCheck(ctx *duro.OrchestrationContext, order string, did []string) ([]string, error) {
	var s string
	err := ctx.CallActivity("FraudCheck", order).Await(&s)
	return append(did, s), err
}

var (
	// orderV1 is the code the histories were recorded with.
	orderV1 orderCode = func(ctx *duro.OrchestrationContext, order string) ([]string, error) {
		return orderSteps(ctx, order, func(did []string) ([]string, error) { return did, nil })
	}
	// orderPatched adds the fraud check behind Patched.
	orderPatched orderCode = func(ctx *duro.OrchestrationContext, order string) ([]string, error) {
		return orderSteps(ctx, order, func(did []string) ([]string, error) {
			if ctx.Patched("fraud-check") {
				return fraudCheck(ctx, order, did)
			}
			return did, nil
		})
	}
	// orderUnpatched adds it without Patched: instances of orderV1 that
	// passed the charge no longer replay. It is also the last deployment
	// of the change, once no instance has a marker Patched recorded.
	orderUnpatched orderCode = func(ctx *duro.OrchestrationContext, order string) ([]string, error) {
		return orderSteps(ctx, order, func(did []string) ([]string, error) { return fraudCheck(ctx, order, did) })
	}
	// orderDeprecated is the next deployment, once no instance of orderV1
	// runs: the old path is gone.
	orderDeprecated orderCode = func(ctx *duro.OrchestrationContext, order string) ([]string, error) {
		return orderSteps(ctx, order, func(did []string) ([]string, error) {
			ctx.DeprecatePatch("fraud-check")
			return fraudCheck(ctx, order, did)
		})
	}
)

func orderRegistry(code orderCode) *duro.Registry {
	reg := duro.NewRegistry()
	for _, name := range []string{"Charge", "FraudCheck", "Ship"} {
		duro.RegisterActivity(reg, name, func(ctx duro.ActivityContext, order string) (string, error) {
			return name + " " + order, nil
		})
	}
	duro.RegisterOrchestration(reg, "Order", code)
	return reg
}

// orderFleet runs one version of the code on a store, as a deployment.
type orderFleet struct {
	t  *testing.T
	be *memory.Backend
	c  *duro.Client
	w  *duro.Worker
}

func newOrderStore(t *testing.T) *orderFleet {
	t.Helper()
	be, err := memory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return &orderFleet{t: t, be: be, c: duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 5 * time.Millisecond})}
}

// deploy stops the running worker, if any, and starts one with code.
func (f *orderFleet) deploy(ctx context.Context, code orderCode) {
	f.t.Helper()
	if f.w != nil {
		if err := f.w.Stop(ctx); err != nil {
			f.t.Fatal(err)
		}
	}
	w, err := duro.NewWorker(f.be, orderRegistry(code), &duro.WorkerOptions{
		PollInterval: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		f.t.Fatal(err)
	}
	f.w = w
	f.t.Cleanup(func() { w.Stop(context.Background()) })
}

// start starts an order and raises the events given, then waits until its
// history shows that the code took them in: for each event, its step.
func (f *orderFleet) start(ctx context.Context, id string, events ...string) {
	f.t.Helper()
	if _, err := f.c.Start(ctx, "Order", id, duro.StartOptions{InstanceID: id}); err != nil {
		f.t.Fatal(err)
	}
	f.waitFor(ctx, id, backend.EventExecutionStarted, "Order")
	f.raise(ctx, id, events...)
}

// raise raises events one by one, each once the instance took the previous
// one in.
func (f *orderFleet) raise(ctx context.Context, id string, events ...string) {
	f.t.Helper()
	for _, ev := range events {
		if err := f.c.RaiseEvent(ctx, id, ev, nil); err != nil {
			f.t.Fatal(err)
		}
		f.waitFor(ctx, id, backend.EventEventRaised, ev)
	}
}

// waitFor waits until the history of id holds an event of type typ and
// name: the step that took it in has committed.
func (f *orderFleet) waitFor(ctx context.Context, id string, typ backend.EventType, name string) {
	f.t.Helper()
	f.waitHistory(ctx, id, string(typ)+" "+name, func(e *backend.Event) bool { return e.Type == typ && e.Name == name })
}

// waitCharged waits until id's charge completed (it then waits for
// approval).
func (f *orderFleet) waitCharged(ctx context.Context, id string) {
	f.t.Helper()
	f.waitHistory(ctx, id, "the charge's result", func(e *backend.Event) bool {
		return e.Type == backend.EventTaskCompleted && e.TaskID == 0
	})
}

func (f *orderFleet) waitHistory(ctx context.Context, id, what string, match func(*backend.Event) bool) {
	f.t.Helper()
	for {
		h, err := f.c.History(ctx, id)
		if err != nil {
			f.t.Fatal(err)
		}
		if slices.ContainsFunc(h, match) {
			return
		}
		select {
		case <-ctx.Done():
			f.t.Fatalf("%s: no %s in history: %v", id, what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (f *orderFleet) output(ctx context.Context, id string) ([]string, *duro.Instance) {
	f.t.Helper()
	inst, err := f.c.Wait(ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	if inst.Status == duro.StatusCompleted {
		if err := inst.Output(&out); err != nil {
			f.t.Fatal(err)
		}
	}
	return out, inst
}

// recordOrders runs orderV1 and leaves three instances: one waiting for
// payment (before the change's point), one charged and waiting for approval
// (past it), one completed. It returns their IDs.
func recordOrders(ctx context.Context, f *orderFleet) []string {
	f.deploy(ctx, orderV1)
	f.start(ctx, "waiting-pay")
	f.start(ctx, "waiting-approve", "Pay")
	f.waitCharged(ctx, "waiting-approve")
	f.start(ctx, "completed", "Pay")
	f.waitCharged(ctx, "completed")
	f.raise(ctx, "completed", "Approve")
	if out, inst := f.output(ctx, "completed"); inst.Status != duro.StatusCompleted || len(out) != 2 {
		f.t.Fatalf("completed ended %s with %v", inst.Status, out)
	}
	return []string{"waiting-pay", "waiting-approve", "completed"}
}

func TestVersioningRecordedHistories(t *testing.T) {
	if *update {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		f := newOrderStore(t)
		if err := os.MkdirAll(versioningDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, id := range recordOrders(ctx, f) {
			h, err := f.c.History(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			writeHistory(t, filepath.Join(versioningDir, id+".json"), h)
		}
	}
	t.Parallel()
	for _, tc := range []struct {
		name string
		code orderCode
		// fail are the files that do not replay.
		fail []string
	}{
		{name: "V1", code: orderV1},
		{name: "Patched", code: orderPatched},
		{name: "Unpatched", code: orderUnpatched, fail: []string{"completed.json", "waiting-approve.json"}},
		{name: "Deprecated", code: orderDeprecated, fail: []string{"completed.json", "waiting-approve.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := duro.ReplayHistoryDir(orderRegistry(tc.code), versioningDir)
			if len(tc.fail) == 0 {
				if err != nil {
					t.Fatalf("ReplayHistoryDir: %v", err)
				}
				return
			}
			if !errors.Is(err, duro.ErrNonDeterminism) {
				t.Fatalf("ReplayHistoryDir = %v; want ErrNonDeterminism", err)
			}
			for _, file := range []string{"completed.json", "waiting-approve.json", "waiting-pay.json"} {
				if got, want := strings.Contains(err.Error(), file), slices.Contains(tc.fail, file); got != want {
					t.Errorf("error names %s: %v, want %v:\n%v", file, got, want, err)
				}
			}
			for _, want := range []string{
				// completed.json: the charge was followed by the shipment.
				`history has activity "Ship" (task 1) but the code scheduled activity "FraudCheck" (task 1)`,
				// waiting-approve.json: the charge was followed by nothing.
				`the code scheduled activity "FraudCheck" (task 1) in a step of history that did not record it`,
			} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q:\n%v", want, err)
				}
			}
		})
	}
}

// TestVersioningInFlight deploys the patched code over instances of the old
// one: each keeps the path it took, new ones take the new path, and every
// history replays against the patched code. The same change without
// Patched fails the instance that passed the change's point.
func TestVersioningInFlight(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		code orderCode
		// want are the outputs by instance; nil for an instance that fails.
		want map[string][]string
	}{
		{name: "Patched", code: orderPatched, want: map[string][]string{
			"waiting-pay":     {"Charge waiting-pay", "FraudCheck waiting-pay", "Ship waiting-pay"},
			"waiting-approve": {"Charge waiting-approve", "Ship waiting-approve"},
			"new":             {"Charge new", "FraudCheck new", "Ship new"},
		}},
		{name: "Unpatched", code: orderUnpatched, want: map[string][]string{
			"waiting-pay":     {"Charge waiting-pay", "FraudCheck waiting-pay", "Ship waiting-pay"},
			"waiting-approve": nil,
			"new":             {"Charge new", "FraudCheck new", "Ship new"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			f := newOrderStore(t)
			recordOrders(ctx, f)
			f.deploy(ctx, tc.code)
			f.start(ctx, "new", "Pay")
			f.raise(ctx, "waiting-pay", "Pay")
			for _, id := range []string{"waiting-pay", "waiting-approve", "new"} {
				if err := f.c.RaiseEvent(ctx, id, "Approve", nil); err != nil {
					t.Fatal(err)
				}
			}
			reg := orderRegistry(tc.code)
			for id, want := range tc.want {
				out, inst := f.output(ctx, id)
				if want == nil {
					if inst.Status != duro.StatusFailed || inst.Failure == nil || inst.Failure.Type != "NonDeterminism" {
						t.Errorf("%s ended %s (%v); want a NonDeterminism failure", id, inst.Status, inst.Err())
					}
					continue
				}
				if inst.Status != duro.StatusCompleted || !slices.Equal(out, want) {
					t.Errorf("%s ended %s with %q (%v); want %q", id, inst.Status, out, inst.Err(), want)
				}
				h, err := f.c.History(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if err := duro.ReplayHistory(reg, h); err != nil {
					t.Errorf("%s does not replay against the code that ran it: %v", id, err)
				}
			}
		})
	}
}

// TestVersioningDeprecate runs the deployments after the patch: the code
// with DeprecatePatch over instances the patched code started, then the
// code with neither, over instances started by both.
func TestVersioningDeprecate(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := newOrderStore(t)
	f.deploy(ctx, orderPatched)
	f.start(ctx, "patched", "Pay")
	f.waitCharged(ctx, "patched")
	f.deploy(ctx, orderDeprecated)
	f.start(ctx, "deprecated", "Pay")
	f.waitCharged(ctx, "deprecated")
	f.raise(ctx, "patched", "Approve")
	// The patch call goes once the instances with a marker the patched
	// code recorded have finished; those DeprecatePatch recorded may run.
	if _, inst := f.output(ctx, "patched"); inst.Status != duro.StatusCompleted {
		t.Fatalf("patched ended %s: %v", inst.Status, inst.Err())
	}
	f.deploy(ctx, orderUnpatched)
	f.raise(ctx, "deprecated", "Approve")
	for _, id := range []string{"patched", "deprecated"} {
		want := []string{"Charge " + id, "FraudCheck " + id, "Ship " + id}
		if out, inst := f.output(ctx, id); inst.Status != duro.StatusCompleted || !slices.Equal(out, want) {
			t.Errorf("%s ended %s with %q (%v); want %q", id, inst.Status, out, inst.Err(), want)
		}
	}
	h, err := f.c.History(ctx, "deprecated")
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(h, func(e *backend.Event) bool { return e.Type == backend.EventPatched }); i < 0 || !h[i].Deprecated {
		t.Errorf("the history of an instance DeprecatePatch ran has no deprecated marker: %v", h)
	}
	// A worker that still runs the patched code (a rolling deployment)
	// replays it on the new path.
	if err := duro.ReplayHistory(orderRegistry(orderPatched), h); err != nil {
		t.Errorf("the patched code does not replay a history DeprecatePatch recorded: %v", err)
	}
}
