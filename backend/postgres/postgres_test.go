package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/durohq/duro/internal/syncbuf"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestOptionsValidation(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		opts  postgres.Options
		field string
	}{
		{postgres.Options{Schema: "Bad-Name"}, "Options.Schema"},
		{postgres.Options{Schema: "pg_mine"}, "Options.Schema"},
		{postgres.Options{MaxConns: -1}, "Options.MaxConns"},
		{postgres.Options{PollInterval: time.Millisecond}, "Options.PollInterval"},
		{postgres.Options{MaxStepMessages: -1}, "Options.MaxStepMessages"},
		{postgres.Options{ConnectTimeout: -time.Second}, "Options.ConnectTimeout"},
	} {
		_, err := postgres.Open(ctx, defaultURL, &tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Open(%+v) = %v, want an error naming %s", tc.opts, err, tc.field)
		}
	}
}

// TestMigrateConcurrently opens one new schema from several goroutines at
// once: every Open succeeds and each migration is applied once.
func TestMigrateConcurrently(t *testing.T) {
	url := testURL(t)
	schema := freshSchema(t, url)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() {
			b, err := postgres.Open(t.Context(), url, &postgres.Options{Schema: schema, MaxConns: 2})
			if err != nil {
				errs <- err
				return
			}
			errs <- b.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM `+schema+`.duro_migration`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if want := len(postgres.Migrations()); n != want {
		t.Fatalf("duro_migration has %d rows, want %d", n, want)
	}
	st, err := postgres.MigrationStatus(t.Context(), pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Pending() || s.Name == "" {
			t.Fatalf("status %+v: want every migration applied", st)
		}
	}
}

// TestSkipMigrate: a schema nobody migrated cannot be opened with
// SkipMigrate; after Migrate it can, and MigrationStatus reports it.
func TestSkipMigrate(t *testing.T) {
	url := testURL(t)
	schema := freshSchema(t, url)
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st, err := postgres.MigrationStatus(t.Context(), pool, schema)
	if err != nil || len(st) == 0 || !st[0].Pending() {
		t.Fatalf("status of a new schema: %+v %v; want all pending", st, err)
	}
	if _, err := postgres.Open(t.Context(), url, &postgres.Options{Schema: schema, SkipMigrate: true}); err == nil ||
		!strings.Contains(err.Error(), "duro migrate") {
		t.Fatalf("Open with SkipMigrate on an empty schema: %v, want an error saying to migrate", err)
	}
	if err := postgres.Migrate(t.Context(), pool, schema); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Migrate(t.Context(), pool, schema); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	open(t, url, schema, &postgres.Options{SkipMigrate: true})
}

// TestHubsAreSeparate: two schemas in one database do not see each other.
func TestHubsAreSeparate(t *testing.T) {
	url := testURL(t)
	a := open(t, url, freshSchema(t, url), nil)
	b := open(t, url, freshSchema(t, url), nil)
	create(t, a, "x")
	if _, err := b.GetInstance(t.Context(), "x"); !errors.Is(err, backend.ErrInstanceNotFound) {
		t.Fatalf("hub b sees hub a's instance: %v", err)
	}
	if wi, err := b.ClaimOrchestrationStep(t.Context(), claim(t0)); err != nil || wi != nil {
		t.Fatalf("hub b claimed %+v, %v", wi, err)
	}
}

func create(t testing.TB, b *postgres.Backend, id string) {
	t.Helper()
	if err := b.CreateInstance(context.Background(), &backend.CreateInstanceParams{
		ID: id, Name: "orch", ExecutionID: id + "-e1", Input: []byte(`"in"`), Now: t0,
	}); err != nil {
		t.Fatal(err)
	}
}

func claim(now time.Time) *backend.ClaimParams {
	return &backend.ClaimParams{Owner: "test", LeaseDuration: time.Minute, Now: now}
}

// waitListening waits until b's listening connection is up.
func waitListening(t testing.TB, b *postgres.Backend) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !postgres.Listening(b); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the listening connection did not come up within 10s")
		}
	}
}

// TestNotifyWakesOtherBackend: a commit through one Backend closes the
// WorkAvailable channel of another Backend of the same hub (another
// process, as far as the database can tell) within milliseconds, and a
// timer announced by one wakes the other when it comes due.
func TestNotifyWakesOtherBackend(t *testing.T) {
	url := testURL(t)
	schema := freshSchema(t, url)
	// A long fallback poll, so that only a notification can wake.
	opts := &postgres.Options{PollInterval: time.Hour}
	a, b := open(t, url, schema, opts), open(t, url, schema, opts)
	waitListening(t, b)
	var worst time.Duration
	for i := range 20 {
		ch := b.WorkAvailable()
		start := time.Now()
		create(t, a, fmt.Sprint("i", i))
		select {
		case <-ch:
			worst = max(worst, time.Since(start))
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: no wake-up within 5s of a commit by another backend", i)
		}
	}
	t.Logf("worst wake-up latency over 20 commits (commit included): %v", worst)
	if worst > time.Second {
		t.Fatalf("wake-up took %v", worst)
	}

	// A message visible in 300ms wakes the other backend then, not before.
	time.Sleep(50 * time.Millisecond) // let our own NOTIFYs drain
	ch := b.WorkAvailable()
	due := time.Now().Add(300 * time.Millisecond)
	if err := a.EnqueueMessage(t.Context(), &backend.Message{ID: "timer", InstanceID: "i0", VisibleAt: due,
		Event: &backend.Event{Type: backend.EventTimerFired, TaskID: 1, FireAt: due}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		if early := time.Until(due); early > 20*time.Millisecond {
			t.Fatalf("woken %v before the timer was due", early)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up when the timer came due")
	}
}

// terminate kills the server connections whose application_name is app,
// as an operator (or a failover) would.
func terminate(t testing.TB, url, app string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND pid <> pg_backend_pid()`, app).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestConnectionsTerminated kills every connection of a Backend (pool and
// listener) mid-run: methods return errors or succeed (a transaction that
// failed before its commit is retried), never hang or panic; they work
// again at once; the listener logs the loss, reconnects and logs that too;
// notifications work again.
func TestConnectionsTerminated(t *testing.T) {
	base := testURL(t)
	schema := freshSchema(t, base)
	app := "duro_kill_" + schema
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	b := open(t, withAppName(base, app), schema, &postgres.Options{Logger: log, PollInterval: time.Hour})
	other := open(t, base, schema, nil)
	waitListening(t, b)
	pid := postgres.ListenerPID(b)
	ctx := t.Context()
	for i := range 30 {
		create(t, b, fmt.Sprint("before-", i))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := b.CreateInstance(cctx, &backend.CreateInstanceParams{ID: fmt.Sprintf("w%d-%d", w, i),
					Name: "orch", ExecutionID: "e", Now: t0})
				if err == nil {
					var wi *backend.OrchestrationWorkItem
					wi, err = b.ClaimOrchestrationStep(cctx, claim(t0))
					if err == nil && wi != nil {
						err = b.CompleteOrchestrationStep(cctx, &backend.CompleteOrchestrationStepParams{
							InstanceID: wi.Instance.ID, ExecutionID: wi.Instance.ExecutionID, Attempt: wi.Attempt,
							Status: backend.StatusRunning, Now: t0})
					}
				}
				cancel()
				if err != nil {
					if errors.Is(err, context.DeadlineExceeded) {
						err = fmt.Errorf("a call hung: %w", err)
					}
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	n := terminate(t, base, app)
	time.Sleep(300 * time.Millisecond)
	n += terminate(t, base, app)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("terminated %d connections; %d calls failed meanwhile", n, len(errs))
	for _, err := range errs {
		if strings.Contains(err.Error(), "hung") || errors.Is(err, backend.ErrClosed) {
			t.Fatalf("call during the outage: %v", err)
		}
		if !strings.HasPrefix(err.Error(), "postgres: ") {
			t.Fatalf("unwrapped error: %v", err)
		}
	}
	// Every method works again.
	create(t, b, "after")
	if _, err := b.GetInstance(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	// The listener is back on a new connection, and said so.
	for deadline := time.Now().Add(10 * time.Second); postgres.ListenerPID(b) == pid || !postgres.Listening(b); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the listener did not reconnect; logs:\n%s", logs)
		}
	}
	ch := b.WorkAvailable()
	create(t, other, "wake")
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up after the listener reconnected")
	}
	out := logs.String()
	if !strings.Contains(out, "lost the notification connection") || !strings.Contains(out, "notification connection restored") {
		t.Fatalf("logs lack the lost/restored lines:\n%s", out)
	}
}

// TestMethodsFailFastWhenUnreachable: a backend whose database is gone
// returns errors within the caller's deadline.
func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := postgres.Open(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", nil)
	if err == nil {
		t.Fatal("Open of an unreachable database succeeded")
	}
	if time.Since(start) > 4*time.Second {
		t.Fatalf("Open took %v", time.Since(start))
	}
}

// TestBatchClaimsNeverShareADelivery: concurrent batch claimers, with a
// clock that keeps expiring leases, never get the same (task, attempt) or
// (instance, attempt) twice.
func TestBatchClaimsNeverShareADelivery(t *testing.T) {
	url := testURL(t)
	b := open(t, url, freshSchema(t, url), &postgres.Options{MaxConns: 8})
	ctx := t.Context()
	const instances, tasksPer = 20, 5
	for i := range instances {
		id := fmt.Sprint("i", i)
		create(t, b, id)
	}
	for _, wi := range claimAllSteps(t, b, t0) {
		p := &backend.CompleteOrchestrationStepParams{InstanceID: wi.Instance.ID, ExecutionID: wi.Instance.ExecutionID,
			Attempt: wi.Attempt, Status: backend.StatusRunning, Now: t0}
		for n := range tasksPer {
			p.ActivityTasks = append(p.ActivityTasks, &backend.ActivityTask{
				ID: backend.TaskMessageID(wi.Instance.ID, wi.Instance.ExecutionID, n), InstanceID: wi.Instance.ID,
				ExecutionID: wi.Instance.ExecutionID, TaskID: n, Name: "act"})
		}
		if err := b.CompleteOrchestrationStep(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for i := range instances { // messages make every instance claimable again
		if err := b.EnqueueMessage(ctx, &backend.Message{ID: fmt.Sprint("m", i), InstanceID: fmt.Sprint("i", i),
			Event: &backend.Event{Type: backend.EventEventRaised, Name: "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu       sync.Mutex
		acts     = map[string]int{}
		steps    = map[string]int{}
		failures []error
		clock    sync.Mutex
		tick     int
		wg       sync.WaitGroup
	)
	next := func() time.Time {
		clock.Lock()
		defer clock.Unlock()
		tick++
		return t0.Add(time.Duration(tick) * 30 * time.Second) // a lease lapses every other tick
	}
	for w := range 6 {
		wg.Go(func() {
			for range 15 {
				p := &backend.ClaimParams{Owner: fmt.Sprint("w", w), LeaseDuration: time.Minute, Now: next()}
				as, err := b.ClaimActivities(ctx, p, 7)
				ss, err2 := b.ClaimOrchestrationSteps(ctx, p, 3)
				mu.Lock()
				for _, e := range []error{err, err2} {
					if e != nil {
						failures = append(failures, e)
					}
				}
				for _, a := range as {
					acts[fmt.Sprint(a.Task.ID, "#", a.Attempt)]++
				}
				for _, s := range ss {
					steps[fmt.Sprint(s.Instance.ID, "#", s.Attempt)]++
					if len(s.Messages) == 0 {
						failures = append(failures, fmt.Errorf("step of %s without messages", s.Instance.ID))
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatal(failures[0])
	}
	for k, n := range acts {
		if n > 1 {
			t.Fatalf("activity delivery %s handed out %d times", k, n)
		}
	}
	for k, n := range steps {
		if n > 1 {
			t.Fatalf("step delivery %s handed out %d times", k, n)
		}
	}
	if len(acts) < instances*tasksPer || len(steps) < instances {
		t.Fatalf("only %d activity and %d step deliveries", len(acts), len(steps))
	}
	t.Logf("%d activity deliveries, %d step deliveries, none twice", len(acts), len(steps))
}

func claimAllSteps(t *testing.T, b *postgres.Backend, now time.Time) []*backend.OrchestrationWorkItem {
	t.Helper()
	var all []*backend.OrchestrationWorkItem
	for {
		wis, err := b.ClaimOrchestrationSteps(t.Context(), claim(now), 8)
		if err != nil {
			t.Fatal(err)
		}
		if len(wis) == 0 {
			return all
		}
		all = append(all, wis...)
	}
}

// TestSchemaInURL: the duro_schema URL parameter names the hub, for Open
// and OpenPool; it must agree with Options.Schema when both are set.
func TestSchemaInURL(t *testing.T) {
	url := testURL(t)
	schema := freshSchema(t, url)
	u := url + "&" + postgres.SchemaParam + "=" + schema
	b, err := postgres.Open(t.Context(), u, &postgres.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Schema() != schema {
		t.Fatalf("Schema() = %q, want %q", b.Schema(), schema)
	}
	if _, err := postgres.Open(t.Context(), u, &postgres.Options{Schema: "other"}); err == nil {
		t.Fatal("Open with a URL schema and a different Options.Schema succeeded")
	}
	pool, s, err := postgres.OpenPool(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st, err := postgres.MigrationStatus(t.Context(), pool, s)
	if err != nil || s != schema || st[0].Pending() {
		t.Fatalf("OpenPool: schema %q, status %+v, %v", s, st, err)
	}
}
