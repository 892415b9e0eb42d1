// Command peers runs duro's benchmark workloads (duro/bench/workload) on
// duro and on its peers — DBOS Transact (github.com/dbos-inc/
// dbos-transact-golang) and github.com/microsoft/durabletask-go —
// alternately, on SQLite and on PostgreSQL, and prints each engine's
// figures (medians with min–max ranges) with duro's ratio to each peer.
//
//	cd bench/peers && go run . -workload sequence,fanout,chain,latency -backends postgres -engines duro,dbos -reps 3
//
// It lives in its own module so that duro does not depend on its peers.
// Every run is a fresh process (this program re-executed) on a fresh store,
// so peak RSS is that run's alone; runs of the engines alternate (their
// order reverses every repetition), the 1-minute load average is read
// before and after each run, and with -reps R each figure is the median of
// R runs, shown with its range. Every engine is measured the same way
// (workload.Run): from the start of an instance to the completion time its
// store records, read from the store's tables; the chain's steps are timed
// in its activity, and the latency workload is start to result as the
// caller sees it through the engine's own wait.
//
// Both SQLite stores run with the same durability: journal_mode=WAL and
// synchronous=FULL, duro's defaults (durabletask-go opens its file with
// SQLite's defaults, a rollback journal and synchronous=FULL; -peer-journal
// delete measures that). PostgreSQL runs with the server's settings for
// every engine (synchronous_commit=on by default). DBOS runs on PostgreSQL
// only, in its own database (dbos_bench, a new schema per run).
// durabletask-go has no at-most-once activities: its atmostonce row is its
// plain (at-least-once) sequence.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro"
	"github.com/durohq/duro/bench/workload"
)

const defaultPG = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

type config struct {
	workloads string
	n         int
	reps      int
	backends  string
	pg        string
	dir       string
	orchPar   int
	actPar    int
	engines   string
	journal   string
	output    string
	save      string
	timeout   time.Duration
	render    string
	dbosFan   string

	// child mode: one run of one engine, printed as JSON.
	child  bool
	engine string
	kind   string
}

func main() {
	var c config
	flag.StringVar(&c.workloads, "workload", "all", "workloads: "+strings.Join(workload.Names, ", ")+" (comma-separated) or all")
	flag.IntVar(&c.n, "n", 0, "instances per run (fan-out width for fanout, length for chain); 0: the workload's default")
	flag.IntVar(&c.reps, "reps", 3, "runs of each engine per workload and backend; figures are medians with their ranges")
	flag.StringVar(&c.backends, "backends", "sqlite,postgres", "backends: sqlite, postgres (comma-separated)")
	flag.StringVar(&c.pg, "pg", "", "PostgreSQL URL (default $DURO_POSTGRES_URL or "+defaultPG+")")
	flag.StringVar(&c.dir, "dir", "", "directory of the SQLite stores (default: a temporary directory)")
	flag.IntVar(&c.orchPar, "peer-orchestrations", 0, "durabletask-go's MaxParallelWorkItems for orchestrations (0: its best here, 32 on SQLite, 4 on PostgreSQL)")
	flag.IntVar(&c.actPar, "peer-activities", 32, "durabletask-go's MaxParallelWorkItems for activities")
	flag.StringVar(&c.engines, "engines", "duro,"+peerName, "engines to run, comma-separated: duro, dbos, "+peerName+" (or dtgo)")
	flag.StringVar(&c.journal, "peer-journal", "WAL", "durabletask-go's SQLite journal mode (duro's is WAL)")
	flag.StringVar(&c.output, "o", "text", "output: text, json or markdown")
	flag.StringVar(&c.save, "save", "", "also write the JSON report to this file (e.g. results/<label>/<name>.json)")
	flag.DurationVar(&c.timeout, "run-timeout", 10*time.Minute, "give up on one run after this long")
	flag.StringVar(&c.render, "render", "", "print the report (-o text or markdown) of a JSON report written by -o json or -save, and exit")
	flag.StringVar(&c.dbosFan, "dbos-fanout", "queue", "how DBOS fans out: queue (child workflows on a queue, its documented way) or go (dbos.Go steps in the parent)")
	flag.BoolVar(&c.child, "child", false, "internal: run one engine once and print the result as JSON")
	flag.StringVar(&c.engine, "engine", "", "internal: the engine of a child run")
	flag.StringVar(&c.kind, "kind", "", "internal: sqlite or postgres")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if c.render != "" {
		err = render(os.Stdout, c.render, c.output)
	} else if c.child {
		err = runChild(ctx, &c)
	} else {
		err = runParent(ctx, &c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		stop()
		os.Exit(1)
	}
}

// run is one run of one engine: its result and the 1-minute load average
// before and after it.
type run struct {
	*workload.Result
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
}

// comparison is one workload on one backend, every engine.
type comparison struct {
	Workload string `json:"workload"`
	Backend  string `json:"backend"`
	// Medians are each engine's median figures; Runs its runs in order.
	Medians map[string]*workload.Result `json:"medians"`
	Runs    map[string][]*run           `json:"runs"`
	// Skipped says why an engine did not run this comparison.
	Skipped map[string]string `json:"skipped,omitempty"`
	Note    string            `json:"note,omitempty"`
}

type report struct {
	Machine string `json:"machine"`
	// Command is the harness's command line (the PostgreSQL URL left out).
	Command string `json:"command"`
	// Engines in the order of the columns; Versions of the peers' modules.
	Engines            []string          `json:"engines"`
	Versions           map[string]string `json:"versions"`
	PeerOrchestrations int               `json:"peer_orchestrations"`
	PeerActivities     int               `json:"peer_activities"`
	PeerJournal        string            `json:"peer_journal"`
	DBOSFanOut         string            `json:"dbos_fanout,omitempty"`
	Reps               int               `json:"reps"`
	FsyncPerSec        []float64         `json:"fsync_per_s"`
	StartedAt          time.Time         `json:"started_at"`
	Comparisons        []*comparison     `json:"comparisons"`
}

// parseEngines parses -engines.
func parseEngines(s string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(s, ",") {
		switch e = strings.TrimSpace(e); e {
		case "duro", dbosName, peerName:
			out = append(out, e)
		case "dtgo":
			out = append(out, peerName)
		default:
			return nil, fmt.Errorf("unknown engine %q (want duro, %s or %s)", e, dbosName, peerName)
		}
	}
	return out, nil
}

// skipReason says why engine does not run workload on kind ("": it does).
func skipReason(engine, name, kind string) string {
	if engine != dbosName {
		return ""
	}
	if kind != workload.KindPostgres {
		return "dbos runs on PostgreSQL only here"
	}
	if !dbosWorkloads[name] {
		return "the " + name + " workload is not implemented for dbos"
	}
	return ""
}

func runParent(ctx context.Context, c *config) error {
	names, err := workload.Parse(c.workloads)
	if err != nil {
		return err
	}
	if c.reps < 1 || c.orchPar < 0 || c.actPar < 1 {
		return fmt.Errorf("-reps and -peer-activities must be at least 1, -peer-orchestrations not negative")
	}
	engines, err := parseEngines(c.engines)
	if err != nil {
		return err
	}
	if c.output != "text" && c.output != "json" && c.output != "markdown" {
		return fmt.Errorf("-o: want text, json or markdown")
	}
	if c.pg == "" {
		c.pg = os.Getenv("DURO_POSTGRES_URL")
	}
	if c.pg == "" {
		c.pg = defaultPG
	}
	if c.dir == "" {
		dir, err := os.MkdirTemp("", "duro-peers-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.dir = dir
	}
	var kinds []string
	for _, k := range strings.Split(c.backends, ",") {
		switch k = strings.TrimSpace(k); k {
		case workload.KindSQLite, workload.KindPostgres:
			kinds = append(kinds, k)
		default:
			return fmt.Errorf("unknown backend %q", k)
		}
	}
	pgErr := error(nil)
	for _, k := range kinds {
		if k == workload.KindPostgres {
			pgErr = pingPG(ctx, c.pg)
		}
	}

	rep := &report{Machine: workload.Machine(c.dir), Command: commandLine(), Engines: engines, Versions: versions(),
		PeerOrchestrations: c.orchPar, PeerActivities: c.actPar,
		PeerJournal: strings.ToUpper(c.journal), DBOSFanOut: c.dbosFan, Reps: c.reps, StartedAt: time.Now().UTC()}
	fsync := func() {
		if r, err := workload.FsyncRate(c.dir, 2*time.Second); err == nil {
			rep.FsyncPerSec = append(rep.FsyncPerSec, r)
			logf("fsync rate in %s: %.0f/s", c.dir, r)
		}
	}
	fsync()
	seq := 0
	for _, name := range names {
		for _, kind := range kinds {
			cmp := &comparison{Workload: name, Backend: kind, Medians: map[string]*workload.Result{},
				Runs: map[string][]*run{}, Skipped: map[string]string{}}
			rep.Comparisons = append(rep.Comparisons, cmp)
			if kind == workload.KindPostgres && pgErr != nil {
				cmp.Note = "PostgreSQL unreachable: " + pgErr.Error()
				continue
			}
			var active []string
			for _, e := range engines {
				if why := skipReason(e, name, kind); why != "" {
					cmp.Skipped[e] = why
				} else {
					active = append(active, e)
				}
			}
			failed := map[string]bool{}
			for r := range c.reps {
				order := append([]string(nil), active...)
				if r%2 == 1 {
					for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
						order[i], order[j] = order[j], order[i]
					}
				}
				for _, e := range order {
					if failed[e] {
						continue // a failing engine fails alike every time
					}
					seq++
					before := loadAvg()
					res, err := spawn(ctx, c, e, kind, name, seq)
					if err != nil {
						return err
					}
					rn := &run{Result: res, LoadBefore: before, LoadAfter: loadAvg()}
					logf("%s on %s, %s, run %d/%d: %s (load %.2f → %.2f)", name, kind, e, r+1, c.reps, summary(res), rn.LoadBefore, rn.LoadAfter)
					cmp.Runs[e] = append(cmp.Runs[e], rn)
					failed[e] = !res.OK()
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
			for _, e := range active {
				rs := make([]*workload.Result, len(cmp.Runs[e]))
				for i, rn := range cmp.Runs[e] {
					rs[i] = rn.Result
				}
				cmp.Medians[e], _ = workload.Median(rs)
			}
			if name == workload.AtMostOnce {
				cmp.Note = peerName + " has no at-most-once activities: its figures are its at-least-once sequence"
			}
		}
	}
	fsync()
	if c.save != "" {
		if err := saveJSON(c.save, rep); err != nil {
			return err
		}
	}
	return write(os.Stdout, rep, c.output)
}

// saveJSON writes rep to path, creating its directory.
func saveJSON(path string, rep *report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b bytes.Buffer
	if err := write(&b, rep, "json"); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// write prints rep as output: text, json or markdown.
func write(w io.Writer, rep *report, output string) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "markdown":
		return writeMarkdown(w, rep)
	case "text", "":
		return writeText(w, rep)
	}
	return fmt.Errorf("-o: want text, json or markdown, not %q", output)
}

// commandLine is the harness's command line without -pg's value.
func commandLine() string {
	args := []string{"go run ."}
	skip := false
	for _, a := range os.Args[1:] {
		switch {
		case skip:
			skip = false
			continue
		case a == "-pg" || a == "--pg":
			skip = true
			continue
		case strings.HasPrefix(a, "-pg=") || strings.HasPrefix(a, "--pg="):
			continue
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

// loadAvg is the 1-minute load average (0 if unknown).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// spawn runs one engine once in a child process and returns its result.
func spawn(ctx context.Context, c *config, engine, kind, name string, seq int) (*workload.Result, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec := c.pg
	if kind == workload.KindSQLite {
		spec = filepath.Join(c.dir, fmt.Sprintf("run-%03d-%s.db", seq, strings.ReplaceAll(engine, "-", "")))
	}
	cmd := exec.CommandContext(ctx, self, "-child", "-engine", engine, "-kind", kind, "-workload", name,
		"-n", strconv.Itoa(c.n), "-peer-orchestrations", strconv.Itoa(c.orchPar), "-peer-activities", strconv.Itoa(c.actPar),
		"-peer-journal", c.journal, "-dbos-fanout", c.dbosFan,
		"-run-timeout", c.timeout.String())
	// The store reaches the child in its environment: a PostgreSQL URL may
	// hold a password, and command lines are public.
	cmd.Env = append(os.Environ(), "DURO_BENCH_STORE="+spec)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s run of %s on %s: %w", engine, name, kind, err)
	}
	var res workload.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("%s run of %s on %s: read its result: %w", engine, name, kind, err)
	}
	return &res, nil
}

// runChild runs one engine once on a fresh store and prints the result.
func runChild(ctx context.Context, c *config) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res, err := childRun(ctx, c.engine, c.kind, os.Getenv("DURO_BENCH_STORE"),
		workload.Spec{Workload: c.workloads, N: c.n}, c)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// childRun runs engine once on a fresh store made from spec (a SQLite file
// path or a PostgreSQL URL) and returns its result, its peak RSS and its
// store's size included.
func childRun(ctx context.Context, engine, kind, spec string, ws workload.Spec, c *config) (*workload.Result, error) {
	var (
		st  *workload.Store
		err error
	)
	if engine == dbosName {
		st, err = dbosStore(ctx, spec)
	} else {
		st, err = workload.NewStore(spec, "bench_"+strings.ReplaceAll(engine, "-", "")+"_")
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = st.Remove(context.WithoutCancel(ctx)) }()
	if st.Kind != kind {
		return nil, fmt.Errorf("store kind %s, want %s", st.Kind, kind)
	}

	var (
		eng   workload.Engine
		stop  func()
		steps func() int64
	)
	switch engine {
	case "duro":
		be, err := st.OpenDuro(ctx)
		if err != nil {
			return nil, err
		}
		reg := duro.NewRegistry()
		workload.Register(reg)
		w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
		if err != nil {
			return nil, err
		}
		if err := w.Start(ctx); err != nil {
			return nil, err
		}
		eng = &workload.Duro{Client: duro.NewClient(be, &duro.ClientOptions{Worker: w})}
		steps = func() int64 { return w.Stats().StepsCompleted }
		stop = func() {
			_ = w.Stop(context.WithoutCancel(ctx))
			_ = be.Close()
		}
	case dbosName:
		d, err := startDBOS(ctx, st, c.dbosFan)
		if err != nil {
			return nil, err
		}
		eng, stop = d, d.stop
	case peerName:
		p, err := startPeer(ctx, st, c.peerOrchestrations(st.Kind), c.actPar, c.journal)
		if err != nil {
			return nil, err
		}
		eng = p
		stop = func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			p.stop(sctx)
		}
	default:
		return nil, fmt.Errorf("unknown engine %q", engine)
	}

	_ = workload.ResetPeakRSS()
	res, err := workload.Run(ctx, eng, ws)
	if err != nil {
		stop()
		return nil, err
	}
	res.Engine, res.Backend, res.Workers = engine, st.Kind, 1
	if engine == peerName {
		res.Concurrency = c.peerOrchestrations(st.Kind)
	}
	res.PeakRSSBytes, _ = workload.PeakRSS(0)
	if size, err := st.Size(ctx); err == nil {
		res.StoreBytes = size
	}
	if steps != nil {
		res.SetSteps(steps())
	}
	stop()
	return res, nil
}

// peerOrchestrations is durabletask-go's orchestration parallelism on a
// store of kind: -peer-orchestrations, or the best value of a sweep on this
// machine (docs/benchmarks.md): 32 on SQLite, 4 on PostgreSQL.
func (c *config) peerOrchestrations(kind string) int {
	switch {
	case c.orchPar > 0:
		return c.orchPar
	case kind == workload.KindPostgres:
		return 4
	default:
		return 32
	}
}

func pingPG(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

func summary(r *workload.Result) string {
	if !r.OK() {
		return "FAILED: " + oneLine(r.Error)
	}
	s := fmt.Sprintf("%.1f instances/s, %.1f activities/s, p50 %.1f ms, p99 %.1f ms, peak RSS %s, store %s",
		r.InstancesPerSec, r.ActivitiesPerSec, r.P50Ms, r.P99Ms, workload.Bytes(r.PeakRSSBytes), workload.Bytes(r.StoreBytes))
	if c := r.Chain; c != nil {
		s += fmt.Sprintf(", %.2f ms/step (first 10%% %.2f, last 10%% %.2f)", c.MsPerStep, c.FirstMsPerStep, c.LastMsPerStep)
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 320 {
		s = s[:317] + "..."
	}
	return s
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "peers: "+format+"\n", args...)
}

// versions are the versions of the peers' modules this program was built
// with.
func versions() map[string]string {
	out := map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/microsoft/durabletask-go":
				out[peerName] = d.Version
			case "github.com/dbos-inc/dbos-transact-golang":
				out[dbosName] = d.Version
			}
		}
	}
	return out
}

// render prints the report of a JSON report as output.
func render(w io.Writer, path, output string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if output == "json" {
		return errors.New("-render: want -o text or markdown")
	}
	return write(w, &rep, output)
}
