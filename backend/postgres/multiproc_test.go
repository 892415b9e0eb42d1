package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend/postgres"
)

// The multi-process tests run workers as real processes: the test binary
// re-executes itself with DURO_PG_WORKER set, and TestMain hands control to
// workerMain instead of the tests.

func TestMain(m *testing.M) {
	if os.Getenv("DURO_PG_WORKER") != "" {
		workerMain()
		return
	}
	os.Exit(m.Run())
}

const (
	fanInstances = 300
	fanOut       = 5
)

// registerFanOut registers the workflow of the multi-process tests:
// FanOut calls Charge fanOut times in parallel. Charge is at most once:
// before its work it appends a row to the ledger table, outside duro's
// schema, with a nonce per delivery (so a retried insert of one delivery
// is not counted twice). FanOut returns how many calls failed as possible
// duplicates.
func registerFanOut(reg *duro.Registry, ledger *pgxpool.Pool, table string) {
	duro.RegisterActivity(reg, "Charge", func(ctx duro.ActivityContext, n int) (int, error) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		nonce := hex.EncodeToString(b[:])
		var err error
		for try := 0; try < 50; try++ {
			_, err = ledger.Exec(context.Background(), `INSERT INTO `+table+` (nonce, instance_id, task, attempt, pid)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT (nonce) DO NOTHING`,
				nonce, ctx.InstanceID(), n, ctx.Attempt(), os.Getpid())
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return 0, err
		}
		time.Sleep(20 * time.Millisecond) // the work
		return n, nil
	}, duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateFail})
	duro.RegisterOrchestration(reg, "FanOut", func(ctx *duro.OrchestrationContext, _ any) (int, error) {
		tasks := make([]*duro.Task, fanOut)
		for i := range tasks {
			tasks[i] = ctx.CallActivity("Charge", i)
		}
		dups := 0
		for _, tk := range tasks {
			var v int
			if err := tk.Await(&v); err != nil {
				if errors.Is(err, duro.ErrPossibleDuplicate) {
					dups++
					continue
				}
				return 0, err
			}
		}
		return dups, nil
	})
}

// workerMain is a worker process on the hub DURO_PG_SCHEMA; it runs until
// it is killed.
func workerMain() {
	ctx := context.Background()
	url, schema, table := os.Getenv("DURO_PG_URL"), os.Getenv("DURO_PG_SCHEMA"), os.Getenv("DURO_PG_LEDGER")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	be, err := postgres.Open(ctx, url, &postgres.Options{Schema: schema, MaxConns: 6,
		PollInterval: 250 * time.Millisecond, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	var ledger *pgxpool.Pool
	if u := os.Getenv("DURO_PG_LEDGER_URL"); u != "" {
		if ledger, err = pgxpool.New(ctx, u); err != nil {
			fmt.Fprintln(os.Stderr, "ledger:", err)
			os.Exit(2)
		}
	}
	reg := duro.NewRegistry()
	opts := &duro.WorkerOptions{
		Name: os.Getenv("DURO_PG_NAME"), ActivityConcurrency: 16, OrchestrationConcurrency: 4,
		ActivityLeaseDuration: 2 * time.Second, OrchestrationLeaseDuration: 2 * time.Second,
		PollInterval: time.Second, Logger: log,
	}
	if os.Getenv("DURO_PG_WORKLOAD") == "bench" {
		registerBench(reg)
		opts = &duro.WorkerOptions{Name: os.Getenv("DURO_PG_NAME"), Logger: log}
		if os.Getenv("DURO_PG_BENCH_CONCURRENCY") != "" {
			// Steps wait on the database, not the CPU: more of them at
			// once share its WAL flushes.
			opts.OrchestrationConcurrency = 16
		}
	} else {
		registerFanOut(reg, ledger, table)
	}
	w, err := duro.NewWorker(be, reg, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(2)
	}
	if err := w.Start(ctx); err != nil {
		os.Exit(2)
	}
	select {}
}

// fanOutRun is one multi-process run: a hub with fanInstances FanOut
// instances started, a ledger table, and worker processes.
type fanOutRun struct {
	t             *testing.T
	url, schema   string
	table, appURL string
	pool          *pgxpool.Pool
	client        *duro.Client
	workers       []*exec.Cmd
}

func newFanOutRun(t *testing.T) *fanOutRun {
	url := testURL(t)
	schema := freshSchema(t, url)
	r := &fanOutRun{t: t, url: url, schema: schema, table: "public.ledger_" + schema,
		appURL: withAppName(url, "duro_mp_"+schema)}
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	r.pool = pool
	if _, err := pool.Exec(ctx, `CREATE TABLE `+r.table+` (nonce text PRIMARY KEY, seq bigserial,
		instance_id text NOT NULL, task int NOT NULL, attempt int NOT NULL, pid int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), `DROP TABLE IF EXISTS `+r.table) })
	be := open(t, url, schema, nil)
	r.client = duro.NewClient(be, nil)
	for i := range fanInstances {
		if _, err := r.client.Start(ctx, "FanOut", nil, duro.StartOptions{InstanceID: fmt.Sprintf("fan-%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// spawn starts worker process i.
func (r *fanOutRun) spawn(i int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DURO_PG_WORKER=1", "DURO_PG_URL="+r.appURL, "DURO_PG_SCHEMA="+r.schema,
		"DURO_PG_LEDGER="+r.table, "DURO_PG_LEDGER_URL="+withAppName(r.url, "ledger"), fmt.Sprint("DURO_PG_NAME=w", i))
	cmd.Stderr = testWriter{r.t}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.workers = append(r.workers, cmd)
	r.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func (r *fanOutRun) count(query string, args ...any) int {
	r.t.Helper()
	var n int
	if err := r.pool.QueryRow(r.t.Context(), query, args...).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// waitLedger waits until the ledger holds at least n rows.
func (r *fanOutRun) waitLedger(n int, deadline time.Time) {
	for r.count(`SELECT count(*) FROM `+r.table) < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("the ledger did not reach %d rows in time", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDone waits until every instance has finished, and checks the
// results: every instance completed; every at-most-once call ran at most
// once (ledger) — on attempt 1, or on a later attempt when the earlier
// deliveries provably did not start the code; every call either ran or was reported to
// its orchestration as a possible duplicate. It returns the number of
// possible duplicates.
func (r *fanOutRun) waitDone(deadline time.Time) int {
	t := r.t
	for {
		done := r.count(`SELECT count(*) FROM ` + r.schema + `.instances WHERE status IN ('Completed', 'Failed', 'Terminated')`)
		if done == fanInstances {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d instances finished in time", done, fanInstances)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := r.count(`SELECT count(*) FROM ` + r.schema + `.instances WHERE status <> 'Completed'`); n > 0 {
		t.Fatalf("%d instances did not complete", n)
	}
	if n := r.count(`SELECT count(*) FROM (SELECT 1 FROM ` + r.table + ` GROUP BY instance_id, task HAVING count(*) > 1) d`); n > 0 {
		t.Fatalf("%d at-most-once calls ran more than once", n)
	}
	dups := 0
	for i := range fanInstances {
		inst, err := r.client.Get(t.Context(), fmt.Sprintf("fan-%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		var d int
		if err := inst.Output(&d); err != nil {
			t.Fatal(err)
		}
		dups += d
	}
	ran := r.count(`SELECT count(DISTINCT (instance_id, task)) FROM ` + r.table)
	if ran+dups < fanInstances*fanOut {
		t.Fatalf("%d calls ran and %d were reported as duplicates: %d calls are missing", ran, dups, fanInstances*fanOut-ran-dups)
	}
	return dups
}

// perWorker returns the ledger rows per worker pid after ledger row seq.
func (r *fanOutRun) perWorker(after int) map[int]int {
	rows, err := r.pool.Query(r.t.Context(), `SELECT pid, count(*) FROM `+r.table+` WHERE seq > $1 GROUP BY pid`, after)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	m := map[int]int{}
	for rows.Next() {
		var pid, n int
		if err := rows.Scan(&pid, &n); err != nil {
			r.t.Fatal(err)
		}
		m[pid] = n
	}
	return m
}

// TestMultiProcessSIGKILL: three worker processes on one hub run 300
// fan-out instances; one is SIGKILLed midway. Every instance completes,
// every at-most-once call ran at most once, and the surviving workers
// shared the rest of the work.
func TestMultiProcessSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	r := newFanOutRun(t)
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for i := range 3 {
		r.spawn(i)
	}
	r.waitLedger(fanInstances*fanOut/3, deadline)
	victim := r.workers[0]
	if err := victim.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = victim.Wait()
	// A ledger insert the victim had sent may still commit on the server.
	time.Sleep(300 * time.Millisecond)
	mark := r.count(`SELECT COALESCE(max(seq), 0)::int FROM ` + r.table)
	before := r.perWorker(0)
	dups := r.waitDone(deadline)
	after := r.perWorker(mark)
	t.Logf("done in %v; ledger rows per worker before the kill %v, after it %v; %d calls reported as possible duplicates",
		time.Since(start).Round(time.Millisecond), before, after, dups)
	if len(before) < 2 {
		t.Fatalf("work was not spread before the kill: %v", before)
	}
	if after[victim.Process.Pid] > 0 {
		t.Fatalf("the killed worker appears in the ledger after its death: %v", after)
	}
	for _, w := range r.workers[1:] {
		if after[w.Process.Pid] == 0 {
			t.Fatalf("surviving worker %d did no work after the kill: %v", w.Process.Pid, after)
		}
	}
	if dups > 32 {
		t.Fatalf("%d possible duplicates; at most the killed worker's in-flight calls may be", dups)
	}
}

// TestMultiProcessConnectionsKilled: two worker processes run the 300
// fan-out instances while every database connection of theirs is killed
// with pg_terminate_backend, three times: nothing is lost, nothing at most
// once is repeated.
func TestMultiProcessConnectionsKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	r := newFanOutRun(t)
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for i := range 2 {
		r.spawn(i)
	}
	killed := 0
	for k := 1; k <= 3; k++ {
		r.waitLedger(fanInstances*fanOut*k/5, deadline)
		killed += terminate(t, r.url, "duro_mp_"+r.schema)
	}
	dups := r.waitDone(deadline)
	t.Logf("done in %v; %d connections killed; %d calls reported as possible duplicates; per worker %v",
		time.Since(start).Round(time.Millisecond), killed, dups, r.perWorker(0))
	if killed == 0 {
		t.Fatal("no connection was killed")
	}
	for _, w := range r.workers {
		if w.ProcessState != nil {
			t.Fatalf("worker %d exited: %v", w.Process.Pid, w.ProcessState)
		}
	}
}
