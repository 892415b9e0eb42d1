package chaos

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// registered reports whether reg has activity name, by trying to register
// it again (RegisterActivity panics for a name taken).
func registered(reg *duro.Registry, name string) (yes bool) {
	defer func() {
		if recover() != nil {
			yes = true
		}
	}()
	duro.RegisterActivity(reg, name, func(duro.ActivityContext, any) (any, error) { return nil, nil })
	return false
}

// TestRegisterRoleMissing registers a worker's code without one activity,
// as an older build in a rolling deploy: that activity is absent, the
// others and the orchestrations are there; a name that is not one of the
// workload's, or a missing activity for a worker that runs none, is
// refused with a clear error.
func TestRegisterRoleMissing(t *testing.T) {
	l, err := OpenLedger(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		role, missing string
		want          map[string]bool // activity → registered
		err           string
	}{
		{role: RoleAll, want: map[string]bool{ActivityStep: true, ActivityCharge: true}},
		{role: RoleAll, missing: ActivityCharge, want: map[string]bool{ActivityStep: true, ActivityCharge: false}},
		{role: RoleAll, missing: ActivityStep, want: map[string]bool{ActivityStep: false, ActivityCharge: true}},
		{role: RoleActivities, missing: ActivityCharge, want: map[string]bool{ActivityStep: true, ActivityCharge: false}},
		{role: RoleOrchestrations, want: map[string]bool{ActivityStep: false, ActivityCharge: false}},
		{role: RoleAll, missing: "ChaosRefund", err: "not an activity of the workload"},
		{role: RoleOrchestrations, missing: ActivityCharge, err: "registers no activity"},
		{role: "everything", err: "unknown worker role"},
	} {
		t.Run(tc.role+"/"+tc.missing, func(t *testing.T) {
			reg := duro.NewRegistry()
			err := RegisterRole(reg, l, tc.role, tc.missing)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if tc.missing == "ChaosRefund" && !errors.Is(err, ErrUnknownActivity) {
					t.Fatalf("err = %v, want ErrUnknownActivity", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				if got := registered(reg, name); got != want {
					t.Errorf("%s registered = %v, want %v", name, got, want)
				}
			}
		})
	}
}

// TestDeliveriesFromEngine runs a real worker (SQLite) with the delivery
// recorder as its tracer: the engine's activity spans name the charge's
// delivery and its outcome, which is what the false-alarm breakdown reads.
// A worker without ChaosCharge leaves the charge to a worker that has it.
func TestDeliveriesFromEngine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	be, err := sqlite.Open(ctx, filepath.Join(dir, "store.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ledger := filepath.Join(dir, "ledger.db")
	l, err := OpenLedger(ledger)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tr, err := newDeliveryTracer(deliveriesPath(ledger, os.Getpid()), ActivityCharge)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	start := func(missing string) *duro.Worker {
		reg := duro.NewRegistry()
		if err := RegisterRole(reg, l, RoleAll, missing); err != nil {
			t.Fatal(err)
		}
		w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{PollInterval: 20 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Tracer: tr})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return w
	}
	old := start(ActivityCharge)
	defer old.Stop(ctx)
	c := duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 20 * time.Millisecond})
	pay, err := startShape(ctx, c, WorkPayFail, 0)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := startShape(ctx, c, WorkSequence, 1)
	if err != nil {
		t.Fatal(err)
	}
	if inst, err := c.Wait(ctx, seq); err != nil || inst.Status != duro.StatusCompleted {
		t.Fatalf("sequence on the worker without %s: %+v, %v", ActivityCharge, inst, err)
	}
	full := start("")
	defer full.Stop(ctx)
	if inst, err := c.Wait(ctx, pay); err != nil || inst.Status != duro.StatusCompleted {
		t.Fatalf("payment: %+v, %v", inst, err)
	}
	got, err := readDeliveries(ledger)
	if err != nil {
		t.Fatal(err)
	}
	// The recorded deliveries of the charge: the last one completed it on
	// the full worker; any earlier one (a worker without the activity
	// that handed it back, say) ended.
	ds := got[taskKey{pay, 0}]
	last := 0
	for attempt := range ds {
		last = max(last, attempt)
	}
	if len(got) != 1 || last == 0 {
		t.Fatalf("deliveries %+v: want the charge's", got)
	}
	for attempt, d := range ds {
		for _, one := range d {
			if one.PID != os.Getpid() || !one.Ended || (attempt == last) != (one.Outcome == "completed") {
				t.Fatalf("attempt %d (last %d): %+v", attempt, last, d)
			}
		}
	}
	ex, err := l.Executions(ctx, policyAMO)
	if err != nil {
		t.Fatal(err)
	}
	if ex[taskKey{pay, 0}] != 1 {
		t.Fatalf("charge executions %v, want 1", ex)
	}
}

// TestOtherFullWorker checks the rule that keeps a worker with every
// activity running: a rolling restart may drop an activity from worker i
// only while another worker that runs activities has them all (and will
// after its own pending restart).
func TestOtherFullWorker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		split bool
		procs []proc // missing / nextMissing of each worker
		want  bool
	}{
		{name: "two others full", procs: []proc{{}, {}, {}}, want: true},
		{name: "one other full", procs: []proc{{}, {missing: ActivityStep}, {}}, want: true},
		{name: "others missing", procs: []proc{{}, {missing: ActivityStep}, {missing: ActivityCharge}}, want: false},
		{name: "other about to restart missing", procs: []proc{{}, {nextMissing: ActivityCharge}}, want: false},
		{name: "a single worker", procs: []proc{{}}, want: false},
		// Split fleet: even workers run the activities; worker 1 runs only
		// orchestrations, so it does not count.
		{name: "split: the other activity worker is full", split: true, procs: []proc{{}, {}, {}}, want: true},
		{name: "split: the other activity worker misses one", split: true, procs: []proc{{}, {}, {missing: ActivityStep}}, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &run{cfg: Config{SplitFleet: tc.split}}
			for i := range tc.procs {
				r.procs = append(r.procs, &tc.procs[i])
			}
			if got := r.otherFullWorker(0); got != tc.want {
				t.Fatalf("otherFullWorker(0) = %v, want %v", got, tc.want)
			}
		})
	}
}
