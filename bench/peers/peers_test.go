package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/bench/workload"
)

// pgURL returns the test database's URL. When PostgreSQL is unreachable
// the test fails if CI=true (CI must never skip it) and is skipped
// otherwise.
func pgURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("DURO_POSTGRES_URL")
	if url == "" {
		url = defaultPG
	}
	if err := pingPG(context.Background(), url); err != nil {
		msg := "PostgreSQL is unreachable (set DURO_POSTGRES_URL, or start it): " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return url
}

// dbosSchemas counts the run schemas in DBOS's database.
func dbosSchemas(t *testing.T, url string) int {
	t.Helper()
	st, err := dbosStore(context.Background(), url) // creates the database if missing
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), st.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT COUNT(*) FROM pg_namespace WHERE nspname LIKE 'bench\_dbos\_%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkRun checks a run's counts and figures; no timed assertions.
func checkRun(t *testing.T, res *workload.Result, name string, n int) {
	t.Helper()
	inst, act := n, 3*n
	switch name {
	case workload.FanOut, workload.Chain:
		inst, act = 1, n
	case workload.Latency:
		act = n
	}
	switch {
	case !res.OK():
		t.Fatalf("%s failed: %+v", name, res)
	case res.Instances != inst || res.Completed != inst || res.Activities != act:
		t.Fatalf("%s counts: %+v", name, res)
	case res.P50Ms <= 0 || res.P99Ms < res.P50Ms || res.ElapsedSeconds <= 0 || res.InstancesPerSec <= 0:
		t.Fatalf("%s figures: %+v", name, res)
	case res.PeakRSSBytes <= 0 || res.StoreBytes <= 0:
		t.Fatalf("%s RSS %d, store %d", name, res.PeakRSSBytes, res.StoreBytes)
	}
	if c := res.Chain; (name == workload.Chain) != (c != nil) ||
		c != nil && (c.Steps != n || c.MsPerStep <= 0 || c.FirstMsPerStep <= 0 || c.LastMsPerStep <= 0) {
		t.Fatalf("%s chain figures %+v", name, c)
	}
}

// TestDBOSWorkloads runs every DBOS workload small on the real PostgreSQL,
// each on a fresh schema of dbos_bench that is dropped afterwards.
func TestDBOSWorkloads(t *testing.T) {
	url := pgURL(t)
	before := dbosSchemas(t, url)
	for _, name := range []string{workload.Sequence, workload.FanOut, workload.FanOut + "-go", workload.Chain, workload.Latency} {
		t.Run(name, func(t *testing.T) {
			fan := "queue"
			if name == workload.FanOut+"-go" {
				name, fan = workload.FanOut, "go"
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := childRun(ctx, dbosName, workload.KindPostgres, url, workload.Spec{Workload: name, N: 6, Poll: 5 * time.Millisecond}, &config{actPar: 32, dbosFan: fan})
			if err != nil {
				t.Fatal(err)
			}
			if res.Engine != dbosName || res.Backend != workload.KindPostgres {
				t.Fatalf("identity %+v", res)
			}
			checkRun(t, res, name, 6)
		})
	}
	if after := dbosSchemas(t, url); after != before {
		t.Fatalf("%d run schemas left in %s (before: %d)", after, dbosDatabase, before)
	}
}

// TestDBOSRefuses checks the workloads DBOS does not run.
func TestDBOSRefuses(t *testing.T) {
	if why := skipReason(dbosName, workload.Mixed, workload.KindPostgres); !strings.Contains(why, "not implemented") {
		t.Fatalf("mixed: %q", why)
	}
	if why := skipReason(dbosName, workload.Sequence, workload.KindSQLite); !strings.Contains(why, "PostgreSQL only") {
		t.Fatalf("sqlite: %q", why)
	}
	if why := skipReason(peerName, workload.Mixed, workload.KindSQLite) + skipReason("duro", workload.Chain, workload.KindSQLite); why != "" {
		t.Fatalf("duro and durabletask-go run everything: %q", why)
	}
	if e, err := parseEngines("duro, dtgo,dbos"); err != nil || strings.Join(e, ",") != "duro,"+peerName+",dbos" {
		t.Fatalf("engines %v %v", e, err)
	}
	if _, err := parseEngines("duro,temporal"); err == nil {
		t.Fatal("unknown engine accepted")
	}
}

// TestDtgoChainLatency runs durabletask-go's chain and latency small on
// SQLite, and duro's beside it.
func TestDtgoChainLatency(t *testing.T) {
	for _, engine := range []string{peerName, "duro"} {
		for _, name := range []string{workload.Chain, workload.Latency} {
			t.Run(engine+"/"+name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				db := filepath.Join(t.TempDir(), "run.db")
				res, err := childRun(ctx, engine, workload.KindSQLite, db, workload.Spec{Workload: name, N: 4, Poll: 5 * time.Millisecond},
					&config{actPar: 32, journal: "WAL"})
				if err != nil {
					t.Fatal(err)
				}
				checkRun(t, res, name, 4)
			})
		}
	}
}

// fakeRun is a finished run with the given figures.
func fakeRun(engine string, ips, p50 float64, load float64) *run {
	return &run{Result: &workload.Result{Engine: engine, Backend: "postgres", Workload: workload.Sequence, N: 500, Runs: 1,
		Instances: 500, Completed: 500, Activities: 1500, InstancesPerSec: ips, ActivitiesPerSec: 3 * ips, P50Ms: p50, P99Ms: 2 * p50,
		PeakRSSBytes: 30 << 20, StoreBytes: 2 << 20}, LoadBefore: load, LoadAfter: load + 0.5}
}

// TestMarkdown renders a report with medians, ranges, ratios, a failed and
// a skipped engine, and checks the cells.
func TestMarkdown(t *testing.T) {
	cmp := &comparison{Workload: workload.Sequence, Backend: "postgres", Medians: map[string]*workload.Result{}, Runs: map[string][]*run{},
		Skipped: map[string]string{}}
	cmp.Runs["duro"] = []*run{fakeRun("duro", 150, 700, 1.0), fakeRun("duro", 170, 720, 2.0), fakeRun("duro", 160, 710, 1.5)}
	cmp.Runs["dbos"] = []*run{fakeRun("dbos", 480, 110, 1.2), fakeRun("dbos", 470, 100, 3.0), fakeRun("dbos", 400, 120, 1.1)}
	for e, rs := range cmp.Runs {
		var results []*workload.Result
		for _, r := range rs {
			results = append(results, r.Result)
		}
		cmp.Medians[e], _ = workload.Median(results)
	}
	failed := fakeRun(peerName, 0, 0, 1).Result
	failed.Error, failed.Completed = "ERROR: could not determine data type of parameter $1 (SQLSTATE 42P18)", 0
	cmp.Medians[peerName] = failed
	cmp.Runs[peerName] = []*run{{Result: failed, LoadBefore: 1.1, LoadAfter: 1.2}}
	chain := &comparison{Workload: workload.Chain, Backend: "sqlite", Medians: map[string]*workload.Result{}, Runs: map[string][]*run{},
		Skipped: map[string]string{"dbos": "dbos runs on PostgreSQL only here"}}
	for _, e := range []string{"duro", peerName} {
		r := &workload.Result{Engine: e, Workload: workload.Chain, N: 300, Runs: 1, Instances: 1, Completed: 1, Activities: 300,
			Chain: &workload.ChainFigures{Steps: 300, MsPerStep: 4, FirstMsPerStep: 2.5, LastMsPerStep: 5, LastOverFirst: 2}}
		if e == peerName {
			r.Chain = &workload.ChainFigures{Steps: 300, MsPerStep: 62, FirstMsPerStep: 61, LastMsPerStep: 63, LastOverFirst: 63.0 / 61}
		}
		chain.Medians[e] = r
		chain.Runs[e] = []*run{{Result: r, LoadBefore: 0.5, LoadAfter: 0.7}}
	}
	rep := &report{Machine: "test machine", Command: "go run . -reps 3", Engines: []string{"duro", "dbos", peerName},
		Versions: map[string]string{"dbos": "v1.8.0", peerName: "v0.6.0"}, Reps: 3, FsyncPerSec: []float64{900, 800},
		Comparisons: []*comparison{cmp, chain}}
	var b bytes.Buffer
	if err := writeMarkdown(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"- command: go run . -reps 3",
		"- peers:   dbos v1.8.0, durabletask-go v0.6.0",
		"**sequence, postgres, n=500** (load 1.00–3.50)",
		"| figure | duro | dbos | durabletask-go | duro/dbos | duro/durabletask-go |",
		"|---|---|---|---|---|---|",
		"| instances/s | 160 (150–170) | 470 (400–480) | FAILED [1] | 0.34× | - |",
		"| p50 latency ms | 710 (700–720) | 110 (100–120) | FAILED [1] | 6.45× | - |",
		"| peak RSS | 30.0 MiB | 30.0 MiB | FAILED [1] | 1.00× | - |",
		"**chain, sqlite, n=300** (load 0.50–0.70)",
		"| ms/step | 4.00 | not run [2] | 62.00 | - | 0.06× |",
		"| last/first | 2.00 | not run [2] | 1.03 | - | 1.94× |",
		"1. durabletask-go: ERROR: could not determine data type of parameter $1 (SQLSTATE 42P18)",
		"2. dbos: dbos runs on PostgreSQL only here",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}

	// -render reads the JSON back to the same tables.
	path := filepath.Join(t.TempDir(), "results", "x.json")
	if err := saveJSON(path, rep); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := render(&again, path, "markdown"); err != nil {
		t.Fatal(err)
	}
	if again.String() != out {
		t.Errorf("re-rendered markdown differs:\n%s\nwant:\n%s", again.String(), out)
	}
	var text bytes.Buffer
	if err := render(&text, path, "text"); err != nil || !strings.Contains(text.String(), "duro/dbos") {
		t.Errorf("text render: %v\n%s", err, text.String())
	}
}
