// Command peers runs duro's benchmark workloads (duro/bench/workload) on duro
// and on github.com/microsoft/durabletask-go, alternately, on SQLite and on
// PostgreSQL, and prints each figure of both with the duro/peer ratio.
//
//	cd bench/peers && go run . -workload all
//
// It lives in its own module so that duro does not depend on its peers.
// Every run is a fresh process (this program re-executed) on a fresh store,
// so peak RSS is that run's alone; runs of the two engines alternate, and
// with -reps R each figure is the median of R runs. Both engines are
// measured the same way (workload.Run): from the start of an instance to
// the completion time its store records, read from the store's tables.
//
// Both SQLite stores run with the same durability: journal_mode=WAL and
// synchronous=FULL, duro's defaults (durabletask-go opens its file with
// SQLite's defaults, a rollback journal and synchronous=FULL; -peer-journal
// delete measures that). PostgreSQL runs with the server's settings for
// both. durabletask-go has no at-most-once activities: its atmostonce row is
// its plain (at-least-once) sequence.
package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	"text/tabwriter"
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
	timeout   time.Duration
	render    string

	// child mode: one run of one engine, printed as JSON.
	child  bool
	engine string
	kind   string
}

func main() {
	var c config
	flag.StringVar(&c.workloads, "workload", "all", "workloads: sequence, fanout, mixed, atmostonce (comma-separated) or all")
	flag.IntVar(&c.n, "n", 0, "instances per run (fan-out width for fanout); 0: the workload's default")
	flag.IntVar(&c.reps, "reps", 3, "runs of each engine per workload and backend; figures are medians")
	flag.StringVar(&c.backends, "backends", "sqlite,postgres", "backends: sqlite, postgres (comma-separated)")
	flag.StringVar(&c.pg, "pg", "", "PostgreSQL URL (default $DURO_POSTGRES_URL or "+defaultPG+")")
	flag.StringVar(&c.dir, "dir", "", "directory of the SQLite stores (default: a temporary directory)")
	flag.IntVar(&c.orchPar, "peer-orchestrations", 0, "durabletask-go's MaxParallelWorkItems for orchestrations (0: its best here, 32 on SQLite, 4 on PostgreSQL)")
	flag.IntVar(&c.actPar, "peer-activities", 32, "durabletask-go's MaxParallelWorkItems for activities")
	flag.StringVar(&c.engines, "engines", "duro,"+peerName, "engines to run (comma-separated)")
	flag.StringVar(&c.journal, "peer-journal", "WAL", "durabletask-go's SQLite journal mode (duro's is WAL)")
	flag.StringVar(&c.output, "o", "text", "output: text or json")
	flag.DurationVar(&c.timeout, "run-timeout", 10*time.Minute, "give up on one run after this long")
	flag.StringVar(&c.render, "render", "", "print the text report of a JSON report written by -o json, and exit")
	flag.BoolVar(&c.child, "child", false, "internal: run one engine once and print the result as JSON")
	flag.StringVar(&c.engine, "engine", "", "internal: duro or durabletask-go")
	flag.StringVar(&c.kind, "kind", "", "internal: sqlite or postgres")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if c.render != "" {
		err = render(c.render)
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

// comparison is one workload on one backend, both engines.
type comparison struct {
	Workload string             `json:"workload"`
	Backend  string             `json:"backend"`
	Duro     *workload.Result   `json:"duro"`
	Peer     *workload.Result   `json:"peer"`
	Ratios   map[string]float64 `json:"ratios,omitempty"`
	Note     string             `json:"note,omitempty"`
	DuroRuns []*workload.Result `json:"duro_runs"`
	PeerRuns []*workload.Result `json:"peer_runs"`
}

type report struct {
	Machine            string        `json:"machine"`
	Peer               string        `json:"peer"`
	PeerOrchestrations int           `json:"peer_orchestrations"`
	PeerActivities     int           `json:"peer_activities"`
	PeerJournal        string        `json:"peer_journal"`
	Reps               int           `json:"reps"`
	FsyncPerSec        []float64     `json:"fsync_per_s"`
	Comparisons        []*comparison `json:"comparisons"`
}

func runParent(ctx context.Context, c *config) error {
	names, err := workload.Parse(c.workloads)
	if err != nil {
		return err
	}
	if c.reps < 1 || c.orchPar < 0 || c.actPar < 1 {
		return fmt.Errorf("-reps and -peer-activities must be at least 1, -peer-orchestrations not negative")
	}
	var engines []string
	for _, e := range strings.Split(c.engines, ",") {
		switch e = strings.TrimSpace(e); e {
		case "duro", peerName:
			engines = append(engines, e)
		default:
			return fmt.Errorf("unknown engine %q (want duro or %s)", e, peerName)
		}
	}
	if c.output != "text" && c.output != "json" {
		return fmt.Errorf("-o: want text or json")
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

	rep := &report{Machine: workload.Machine(c.dir), Peer: peerName + " " + peerVersion(),
		PeerOrchestrations: c.orchPar, PeerActivities: c.actPar,
		PeerJournal: strings.ToUpper(c.journal), Reps: c.reps}
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
			cmp := &comparison{Workload: name, Backend: kind}
			rep.Comparisons = append(rep.Comparisons, cmp)
			if kind == workload.KindPostgres && pgErr != nil {
				cmp.Note = "PostgreSQL unreachable: " + pgErr.Error()
				continue
			}
			for r := range c.reps {
				order := engines
				if r%2 == 1 {
					order = []string{}
					for i := len(engines) - 1; i >= 0; i-- {
						order = append(order, engines[i])
					}
				}
				for _, e := range order {
					seq++
					res, err := spawn(ctx, c, e, kind, name, seq)
					if err != nil {
						return err
					}
					logf("%s on %s, %s, run %d/%d: %s", name, kind, e, r+1, c.reps, summary(res))
					if e == "duro" {
						cmp.DuroRuns = append(cmp.DuroRuns, res)
					} else {
						cmp.PeerRuns = append(cmp.PeerRuns, res)
					}
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
			cmp.Duro, _ = workload.Median(cmp.DuroRuns)
			cmp.Peer, _ = workload.Median(cmp.PeerRuns)
			cmp.Ratios = ratios(cmp.Duro, cmp.Peer)
			if name == workload.AtMostOnce {
				cmp.Note = peerName + " has no at-most-once activities: its figures are its at-least-once sequence"
			}
		}
	}
	fsync()
	if c.output == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return writeText(os.Stdout, rep)
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
		"-peer-journal", c.journal,
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
	st, err := workload.NewStore(os.Getenv("DURO_BENCH_STORE"), "bench_"+strings.ReplaceAll(c.engine, "-", "")+"_")
	if err != nil {
		return err
	}
	defer func() { _ = st.Remove(context.WithoutCancel(ctx)) }()
	if st.Kind != c.kind {
		return fmt.Errorf("store kind %s, want %s", st.Kind, c.kind)
	}
	spec := workload.Spec{Workload: c.workload(), N: c.n}

	var (
		eng   workload.Engine
		stop  func()
		steps func() int64
	)
	switch c.engine {
	case "duro":
		be, err := st.OpenDuro(ctx)
		if err != nil {
			return err
		}
		reg := duro.NewRegistry()
		workload.Register(reg)
		w, err := duro.NewWorker(be, reg, &duro.WorkerOptions{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
		if err != nil {
			return err
		}
		if err := w.Start(ctx); err != nil {
			return err
		}
		eng = &workload.Duro{Client: duro.NewClient(be, nil)}
		steps = func() int64 { return w.Stats().StepsCompleted }
		stop = func() {
			_ = w.Stop(context.WithoutCancel(ctx))
			_ = be.Close()
		}
	case peerName:
		p, err := startPeer(ctx, st, c.peerOrchestrations(st.Kind), c.actPar, c.journal)
		if err != nil {
			return err
		}
		eng = p
		stop = func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			p.stop(sctx)
		}
	default:
		return fmt.Errorf("unknown engine %q", c.engine)
	}

	_ = workload.ResetPeakRSS()
	res, err := workload.Run(ctx, eng, spec)
	if err != nil {
		stop()
		return err
	}
	res.Engine, res.Backend, res.Workers = c.engine, st.Kind, 1
	if c.engine == peerName {
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
	return json.NewEncoder(os.Stdout).Encode(res)
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

// workload returns the -workload of a child: exactly one.
func (c *config) workload() string { return c.workloads }

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

// figures are the compared figures: name, getter, whether more is better.
var figures = []struct {
	name   string
	get    func(*workload.Result) float64
	format func(float64) string
}{
	{"instances/s", func(r *workload.Result) float64 { return r.InstancesPerSec }, num},
	{"activities/s", func(r *workload.Result) float64 { return r.ActivitiesPerSec }, num},
	{"p50 latency ms", func(r *workload.Result) float64 { return r.P50Ms }, num},
	{"p99 latency ms", func(r *workload.Result) float64 { return r.P99Ms }, num},
	{"peak RSS", func(r *workload.Result) float64 { return float64(r.PeakRSSBytes) }, bytesF},
	{"store size", func(r *workload.Result) float64 { return float64(r.StoreBytes) }, bytesF},
}

func num(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func bytesF(v float64) string { return workload.Bytes(int64(v)) }

// ratios returns duro/peer for each figure both engines have.
func ratios(d, p *workload.Result) map[string]float64 {
	if d == nil || p == nil || !d.OK() || !p.OK() {
		return nil
	}
	out := map[string]float64{}
	for _, f := range figures {
		if pv := f.get(p); pv > 0 {
			out[f.name] = f.get(d) / pv
		}
	}
	return out
}

func writeText(w io.Writer, rep *report) error {
	fmt.Fprintf(w, "machine: %s\n", rep.Machine)
	orch := "32 on SQLite, 4 on PostgreSQL"
	if rep.PeerOrchestrations > 0 {
		orch = fmt.Sprint(rep.PeerOrchestrations)
	}
	fmt.Fprintf(w, "peer:    %s, MaxParallelWorkItems %s (orchestrations) and %d (activities), SQLite journal %s + synchronous FULL (duro: WAL + FULL)\n",
		rep.Peer, orch, rep.PeerActivities, rep.PeerJournal)
	fs := make([]string, len(rep.FsyncPerSec))
	for i, f := range rep.FsyncPerSec {
		fs[i] = fmt.Sprintf("%.0f/s", f)
	}
	fmt.Fprintf(w, "fsync:   %s (4 KiB append + fsync; before and after the runs)\n", strings.Join(fs, ", "))
	fmt.Fprintf(w, "figures: medians of %d alternating runs per engine\n\n", rep.Reps)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\tbackend\tfigure\tduro\t%s\tduro/peer\n", peerName)
	var notes []string
	note := func(s string) string {
		for i, n := range notes {
			if n == s {
				return fmt.Sprintf("[%d]", i+1)
			}
		}
		notes = append(notes, s)
		return fmt.Sprintf("[%d]", len(notes))
	}
	for _, c := range rep.Comparisons {
		if c.Duro == nil || c.Peer == nil {
			mark := ""
			if c.Note != "" {
				mark = " " + note(c.Note)
			}
			fmt.Fprintf(tw, "%s\t%s\tnot run%s\t\t\t\n", c.Workload, c.Backend, mark)
			continue
		}
		dfail, pfail := "", ""
		if !c.Duro.OK() {
			dfail = "FAILED " + note("duro: "+c.Duro.Error)
		}
		if !c.Peer.OK() {
			pfail = "FAILED " + note(peerName+": "+c.Peer.Error)
		}
		noteMark := ""
		if c.Note != "" {
			noteMark = " " + note(c.Note)
		}
		for i, f := range figures {
			wl, be := "", ""
			if i == 0 {
				wl, be = c.Workload+noteMark, c.Backend
			}
			dv, pv, ratio := dfail, pfail, "-"
			if dv == "" {
				dv = f.format(f.get(c.Duro))
			}
			if pv == "" {
				pv = f.format(f.get(c.Peer))
			}
			if r, ok := c.Ratios[f.name]; ok {
				ratio = fmt.Sprintf("%.2f×", r)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", wl, be, f.name, dv, pv, ratio)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
	}
	for i, n := range notes {
		fmt.Fprintf(w, "[%d] %s\n", i+1, strings.TrimSpace(n))
	}
	return nil
}

func summary(r *workload.Result) string {
	if !r.OK() {
		return "FAILED: " + oneLine(r.Error)
	}
	return fmt.Sprintf("%.1f instances/s, %.1f activities/s, p50 %.1f ms, p99 %.1f ms, peak RSS %s, store %s",
		r.InstancesPerSec, r.ActivitiesPerSec, r.P50Ms, r.P99Ms, workload.Bytes(r.PeakRSSBytes), workload.Bytes(r.StoreBytes))
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "peers: "+format+"\n", args...)
}

// peerVersion is the version of durabletask-go this program was built with.
func peerVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/microsoft/durabletask-go" {
				return d.Version
			}
		}
	}
	return "(unknown version)"
}

// render prints the text report of a JSON report.
func render(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		return err
	}
	return writeText(os.Stdout, &rep)
}
