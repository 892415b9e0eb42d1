package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
)

// demoLines must appear in the demo's output, in this order.
var demoLines = []string{
	"[worker]   worker-1 started",
	"[activity] ReserveStock (attempt 1): reserving 2 × duro mug",
	"[activity] ChargePayment (attempt 1): charging $59.80 to Ada's card",
	"[demo]     stopping worker-1 in the middle of the charge",
	"[worker]   worker-2 started",
	"[activity] ChargePayment (attempt 2): an earlier delivery may have charged the card",
	"[activity] ChargePayment (attempt 2): charged: PAY-order-1001",
	`[client]   custom status "awaiting shipment"`,
	`[client]   raised event "shipped"`,
	"[activity] RenderInvoice (attempt 1): invoice INV-1001",
	"[client]   status Completed",
	"order-1001 Completed in ",
	`"payment": "PAY-order-1001"`,
	`"tracking": "DHL JD014600006281"`,
	`"invoice": "INV-1001"`,
	"History of order-1001",
	"Part 2: a payment that must not be made twice.",
	"[activity] ChargeCard (attempt 1): charging $14.90 to Grace's card",
	"[demo]     stopping worker-2 in the middle of the card charge",
	"[activity] ChargeCard (attempt 1): interrupted",
	"[worker]   worker-3 started",
	"[worker]   worker-3: at-most-once activity not run again: possible duplicate",
	"[client]   status Suspended",
	"What waits for a decision (duro decisions",
	"  1 task waits for a decision:",
	"  order-1002 (PayOrder), suspended since ",
	`    reason:   possible duplicate: activity "ChargeCard" (task 0) attempt 2`,
	"    task #0:  ChargeCard, attempt 2, previous delivery ",
	"    resume:   duro resume order-1002 --task 0 --retry",
	"[operator] asks the payment provider",
	`[operator] duro resume order-1002 --task 0 --result '"PAY-order-1002"' --reason 'the provider has the charge'`,
	"[client]   status Completed",
	`order-1002 Completed in `,
	`, charged once: output "PAY-order-1002".`,
	"History of order-1002",
	"duro history order-1002 ",
}

// demoPatterns must match somewhere in the demo's output.
// The client's "started" lines race with the worker's first activity line, so
// they are checked without order.
var demoPatterns = []string{
	`\[client\]   started ProcessOrder instance order-1001`,
	`\[client\]   started PayOrder instance order-1002`,
	`(?m)^ *\d+\.\d{3}s  \[activity\] SendNotification \(attempt 1\): email `,
	`(?m)^ *\d+\.\d{3}s  \[activity\] SendNotification \(attempt 1\): sms `,
	`(?m)^ *\d+\.\d{3}s  \[activity\] SendNotification \(attempt 1\): push `,
	`\[activity\] ChargePayment \(attempt 1\): interrupted`,
	`TaskCompleted +#1  ChargePayment +attempt 2`,
	`TimerFired +#6  timer +after 5\d\dms`,
	`EventRaised +"shipped" +data=\{"carrier":"DHL"`,
	`SubOrchestrationCompleted +#7  IssueInvoice .*result="INV-1001"`,
	`ExecutionCompleted +Completed +after`,
	`TaskScheduled +#0  ChargeCard +at-most-once/Suspend  input=`,
	`TaskDuplicate +#0  ChargeCard +attempt 2  previous delivery at \+\d\.\d{3}s`,
	`ExecutionSuspended +reason: possible duplicate: .* awaits a decision on task #0 \(ChargeCard, attempt 2\)`,
	`ExecutionResumed +reason: the provider has the charge  decisions: #0 result="PAY-order-1002"`,
	`TaskCompleted +#0  ChargeCard +decided by an operator .*result="PAY-order-1002"`,
}

// demoAbsent must not match the demo's output.
var demoAbsent = []string{
	`ChargeCard \(attempt [2-9]\)`, // the at-most-once charge never runs again
}

func checkDemo(t *testing.T, r result) {
	t.Helper()
	r.ok(t)
	if r.stderr != "" {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	rest := r.stdout
	for _, line := range demoLines {
		i := strings.Index(rest, line)
		if i < 0 {
			t.Fatalf("demo output lacks %q (or has it out of order):\n%s", line, r.stdout)
		}
		rest = rest[i+len(line):]
	}
	for _, p := range demoPatterns {
		if !regexp.MustCompile(p).MatchString(r.stdout) {
			t.Errorf("demo output does not match %s:\n%s", p, r.stdout)
		}
	}
	for _, p := range demoAbsent {
		if regexp.MustCompile(p).MatchString(r.stdout) {
			t.Errorf("demo output matches %s:\n%s", p, r.stdout)
		}
	}
	checkDemoTimes(t, r.stdout)
}

// checkDemoTimes fails if a history the demo prints has a time before the
// line above it.
func checkDemoTimes(t *testing.T, out string) {
	t.Helper()
	line := regexp.MustCompile(`^ +\+(\d+\.\d{3})s  `)
	histories := 0
	for _, block := range strings.Split(out, "History of ")[1:] {
		histories++
		last := -1.0
		for _, l := range strings.Split(block, "\n")[1:] {
			m := line.FindStringSubmatch(l)
			if m == nil {
				break
			}
			v, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			if v < last {
				t.Errorf("a history's times go back (+%.3fs after +%.3fs):\n%s", v, last, block)
				break
			}
			last = v
		}
	}
	if histories != 2 {
		t.Errorf("the demo printed %d histories, want 2", histories)
	}
}

// TestDemoFinishesLeftovers: an earlier run of the demo on the same store,
// interrupted, left its instances unfinished; the next run finishes them
// and runs the demo, instead of refusing the store.
func TestDemoFinishesLeftovers(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	cli(t, "start", demoOrchestration, "--store", store, "--id", demoInstanceID, "--input", `{"id":"order-1001"}`).ok(t)
	cli(t, "start", demoPayOrch, "--store", store, "--id", demoPayInstanceID, "--input", `{"id":"order-1002"}`).ok(t)
	r := cli(t, "demo", "--store", store)
	for _, id := range []string{demoInstanceID, demoPayInstanceID} {
		if want := "an earlier, interrupted demo left " + id + " Pending: terminating it"; !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	checkDemo(t, r)
}

func TestDemoOnGivenStore(t *testing.T) {
	t.Parallel()
	store := filepath.Join(t.TempDir(), "demo store.db")
	r := cli(t, "demo", "--store", store)
	checkDemo(t, r)
	for _, w := range []string{"store: " + store + "\n", "duro list --store '" + store + "'", "duro history order-1001 --store '",
		"(duro decisions --store '" + store + "')", "--reason 'the provider has the charge' --store '" + store + "'"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("demo output lacks %q", w)
		}
	}
	// The store is kept and holds the demo's instances.
	l := cli(t, "list", "--store", store, "--status", "Completed").ok(t)
	if !strings.Contains(l.stdout, "order-1001") || !strings.Contains(l.stdout, "IssueInvoice") || !strings.Contains(l.stdout, "order-1002") {
		t.Fatalf("list after the demo:\n%s", l.stdout)
	}
	// A second run replaces the finished demo instance.
	checkDemo(t, cli(t, "demo", "--store", store))
}

func TestDemoTemporaryStore(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			t.Parallel()
			args := []string{"demo"}
			if keep {
				args = append(args, "--keep")
			}
			r := cli(t, args...)
			checkDemo(t, r)
			m := regexp.MustCompile(`store: (\S+) \(temporary, (removed at the end|kept)\)`).FindStringSubmatch(r.stdout)
			if m == nil {
				t.Fatalf("no store line:\n%s", r.stdout)
			}
			_, err := os.Stat(m[1])
			switch {
			case keep && err != nil:
				t.Errorf("--keep: store %s: %v", m[1], err)
			case !keep && !errors.Is(err, fs.ErrNotExist):
				t.Errorf("temporary store %s not removed: %v", m[1], err)
			}
			if keep {
				if !strings.Contains(r.stdout, "duro list --store "+m[1]) {
					t.Errorf("no list command for the kept store:\n%s", r.stdout)
				}
				_ = os.RemoveAll(filepath.Dir(m[1]))
			} else if !strings.Contains(r.stdout, "duro demo --store demo.db") {
				t.Errorf("no hint to keep a store:\n%s", r.stdout)
			}
		})
	}
}

func TestDemoStoreFromEnv(t *testing.T) {
	t.Parallel()
	store := filepath.Join(t.TempDir(), "env.db")
	checkDemo(t, cliEnv(t, map[string]string{"DURO_STORE": store}, "demo"))
	if _, err := os.Stat(store); err != nil {
		t.Fatalf("DURO_STORE not used: %v", err)
	}
}

func TestDemoRefusesForeignWork(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	cli(t, "start", "Payroll", "--store", store, "--id", "p1").ok(t)
	cli(t, "demo", "--store", store).fails(t, exitFailure, "unfinished instances of other orchestrations (Payroll p1, Pending)")
	// The instance is untouched.
	r := cli(t, "status", "p1", "--store", store, "-o", "json").ok(t)
	var got instanceJSON
	decodeJSON(t, r.stdout, &got)
	if got.Status != duro.StatusPending {
		t.Fatalf("p1 is %s", got.Status)
	}
}

// TestDemoBinary builds the real command and runs its demo.
func TestDemoBinary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildDuro(ctx, t)
	cmd := exec.CommandContext(ctx, bin, "demo")
	cmd.Env = append(os.Environ(), "DURO_STORE=")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	checkDemo(t, result{stdout: stdout.String(), stderr: stderr.String(), code: code})

	// Usage errors exit 2 from the real binary too.
	cmd = exec.CommandContext(ctx, bin, "start")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != exitUsage {
		t.Errorf("duro start without a name: %v, want exit %d", err, exitUsage)
	}
}

// buildDuro builds the real command into a temporary directory, for tests
// that run the binary (it skips them in -short mode), and marks the test
// parallel.
func buildDuro(ctx context.Context, t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "duro")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
