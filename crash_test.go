package duro_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/sqlite"
	"github.com/durohq/duro/internal/fault"
)

// The crash test runs workers as real processes: the test binary re-executes
// itself with DURO_CRASH_WORKER set, and TestMain hands control to
// crashWorkerMain instead of the tests.

const crashActivities = 5

// crashWorkerMain is a worker process: it runs the "Crashy" orchestration on
// the SQLite file in DURO_CRASH_STORE and appends every activity delivery to
// the ledger file DURO_CRASH_LEDGER before doing its work. Activity 3 blocks
// forever on its first attempt, so the test can kill the process there.
func crashWorkerMain() {
	ctx := context.Background()
	store, ledger := os.Getenv("DURO_CRASH_STORE"), os.Getenv("DURO_CRASH_LEDGER")
	be, err := sqlite.Open(ctx, store, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	reg := duro.NewRegistry()
	duro.RegisterActivity(reg, "Step", func(ctx duro.ActivityContext, n int) (int, error) {
		f, err := os.OpenFile(ledger, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return 0, err
		}
		fmt.Fprintf(f, "step=%d attempt=%d pid=%d\n", n, ctx.Attempt(), os.Getpid())
		if err := f.Sync(); err != nil {
			return 0, err
		}
		f.Close()
		if n == 3 && ctx.Attempt() == 1 {
			<-ctx.Done() // hang until killed
		}
		return n * 10, nil
	})
	registerPay(reg, ledger)
	registerCountFan(reg, ledger)
	registerImport(reg, ledger)
	duro.RegisterOrchestration(reg, "Crashy", func(ctx *duro.OrchestrationContext, _ any) (int, error) {
		sum := 0
		for i := 1; i <= crashActivities; i++ {
			var v int
			if err := ctx.CallActivity("Step", i).Await(&v); err != nil {
				return 0, err
			}
			sum += v
		}
		return sum, nil
	})
	fault.EnableFromEnv()
	w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{
		ActivityLeaseDuration: time.Second, OrchestrationLeaseDuration: time.Second, PollInterval: 20 * time.Millisecond,
		ActivityConcurrency: 128, DisableEagerActivities: os.Getenv("DURO_CRASH_NO_EAGER") != "",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(2)
	}
	if err := w.Start(ctx); err != nil {
		os.Exit(2)
	}
	c := duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 20 * time.Millisecond})
	inst, err := c.Wait(ctx, os.Getenv("DURO_CRASH_INSTANCE"))
	if err != nil || inst.Status != duro.StatusCompleted {
		fmt.Fprintln(os.Stderr, "wait:", inst, err)
		os.Exit(3)
	}
	_ = w.Stop(ctx)
	_ = be.Close()
	os.Exit(0)
}

func TestCrashKillWorkerMidOrchestration(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	c := newCrashEnv(t, 60*time.Second, "Crashy", nil, duro.StartOptions{InstanceID: "crashy-1"})
	ctx, client, ledger, id := c.ctx, c.client, c.ledger, c.id
	spawn := func() *exec.Cmd {
		cmd := c.worker(t)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	first := spawn()
	// Wait until the first process is inside activity 3, attempt 1.
	waitFor(t, ctx, func() bool { return strings.Contains(readFile(ledger), "step=3 attempt=1") })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	second := spawn()
	if err := second.Wait(); err != nil {
		t.Fatalf("second worker: %v", err)
	}
	inst, err := client.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var sum int
	if err := inst.Output(&sum); err != nil || inst.Status != duro.StatusCompleted || sum != 150 {
		t.Fatalf("instance %s output %d err %v", inst.Status, sum, err)
	}

	// The ledger, outside the engine: each completed step ran once, the
	// interrupted one ran twice with attempts 1 and 2.
	counts := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(readFile(ledger)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		counts[f[0]+" "+f[1]]++
	}
	want := map[string]int{
		"step=1 attempt=1": 1, "step=2 attempt=1": 1, "step=3 attempt=1": 1,
		"step=3 attempt=2": 1, "step=4 attempt=1": 1, "step=5 attempt=1": 1,
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("ledger:\n%s\nwant %v", readFile(ledger), want)
	}
	// History records the attempt that produced each result.
	h, err := client.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range h {
		if ev.Type == "TaskCompleted" && ev.TaskID == 2 && ev.Attempt != 2 {
			t.Fatalf("task 2 (step 3) completed by attempt %d, want 2", ev.Attempt)
		}
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("timed out waiting")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// prefixWriter forwards a child process's stderr to the test log.
type prefixWriter struct{ t *testing.T }

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.t.Logf("worker: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// crashEnv is a SQLite store in a temporary directory, a ledger file beside
// it, and an instance started there, for tests that run workers as
// processes (crashWorkerMain).
type crashEnv struct {
	ctx           context.Context
	store, ledger string
	id            string
	client        *duro.Client
	env           []string
}

// newCrashEnv starts an instance of name with input (opts as for Start),
// bounded by timeout.
func newCrashEnv(t *testing.T, timeout time.Duration, name string, input any, opts ...duro.StartOptions) *crashEnv {
	t.Helper()
	dir := t.TempDir()
	c := &crashEnv{store: filepath.Join(dir, "duro.db"), ledger: filepath.Join(dir, "ledger.txt")}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	c.ctx = ctx
	be, err := sqlite.Open(ctx, c.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	c.client = duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 20 * time.Millisecond})
	if c.id, err = c.client.Start(ctx, name, input, opts...); err != nil {
		t.Fatal(err)
	}
	c.env = []string{"DURO_CRASH_WORKER=1", "DURO_CRASH_STORE=" + c.store,
		"DURO_CRASH_LEDGER=" + c.ledger, "DURO_CRASH_INSTANCE=" + c.id}
	return c
}

// worker returns a worker process on the store, with extra environment.
func (c *crashEnv) worker(t *testing.T, extra ...string) *exec.Cmd {
	cmd := exec.CommandContext(c.ctx, os.Args[0], "-test.run=^$")
	cmd.Env = slices.Concat(os.Environ(), c.env, extra)
	cmd.Stderr = &prefixWriter{t: t}
	return cmd
}

// runKilled runs a worker that must die by SIGKILL.
func (c *crashEnv) runKilled(t *testing.T, extra ...string) {
	t.Helper()
	err := c.worker(t, extra...).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("worker with %v should have died by SIGKILL, got %v", extra, err)
	}
}
