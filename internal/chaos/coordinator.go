package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/fault"
)

// Config configures a chaos run.
type Config struct {
	// Open opens the store for the coordinator (its client and checks).
	Open func(ctx context.Context) (backend.Backend, error)
	// WorkerCommand returns the command that runs one worker process on the
	// same store (WorkerMain) with the ledger at Ledger; env is added to its
	// environment.
	WorkerCommand func(env []string) *exec.Cmd
	// Ledger is the path of the ledger file.
	Ledger string
	// Workers is the number of worker processes. Default 3.
	Workers int
	// Duration is how long faults are injected while instances start.
	// Default 60s.
	Duration time.Duration
	// Rate is how many instances start per second. Default 10.
	Rate float64
	// Drain bounds the wait for every instance to finish once the faults
	// stop. Default 2m.
	Drain time.Duration
	// Seed seeds the faults and the workload; 0 picks one (printed).
	Seed uint64
	// KillConnections, if set, kills the workers' database connections
	// (PostgreSQL) and returns how many it killed.
	KillConnections func(ctx context.Context) (int, error)
	// Break arms a deliberate engine bug in the workers (a test of the
	// harness itself): "at-most-once" runs at-most-once code on every attempt.
	Break string
	// SplitFleet runs orchestration-only and activity-only worker
	// processes (at least one of each; even-numbered workers run the
	// activities) instead of workers that run everything: the activities'
	// guarantees then come from the activity workers' registration only.
	SplitFleet bool
	// NoRollingRestarts turns off the rolling restarts in the fault mix
	// (on by default): a worker stopped gracefully with SIGTERM (it calls
	// Worker.Stop) and started again.
	NoRollingRestarts bool
	// NoMissingActivity turns off the rolling restarts that start the
	// worker again without one of the workload's activities, as an older
	// build would run (on by default, for half of the rolling restarts,
	// while another worker with every activity runs).
	NoMissingActivity bool
	// Log receives progress lines.
	Log io.Writer
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = 3
	}
	if c.SplitFleet && c.Workers < 2 {
		c.Workers = 2
	}
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 10
	}
	if c.Drain <= 0 {
		c.Drain = 2 * time.Minute
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// faultPoints are the points a worker process may be armed to die at.
var faultPoints = []string{
	fault.ActivityClaimBeforeCommit, fault.ActivityAfterClaim, fault.ActivityAfterStart, fault.ActivityBeforeComplete,
	fault.ActivityAfterComplete, fault.StepBeforeCommit, fault.StepAfterCommit,
}

// run is the state of one chaos run.
type run struct {
	cfg    Config
	rng    *rand.Rand
	rngMu  sync.Mutex
	report *Report
	mu     sync.Mutex

	procs   []*proc
	faulty  atomic.Bool // whether new workers may be armed
	stopAll atomic.Bool
	// roles holds the role of every worker process started, by pid.
	roles map[int]string
	// fates holds how every worker process that ended ended (Fate*), by
	// pid.
	fates map[int]string
}

type proc struct {
	mu       sync.Mutex
	cmd      *exec.Cmd
	armed    string
	byUs     bool // SIGKILLed by the coordinator
	terming  bool // SIGTERMed by the coordinator (a rolling restart)
	stopping bool
	// missing is the activity the running process lacks; nextMissing the
	// one the next start will lack ("" for none).
	missing, nextMissing string
}

func (r *run) intn(n int) int {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.IntN(n)
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Log, "%s chaos: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (r *run) count(kind string) {
	r.mu.Lock()
	r.report.Faults[kind]++
	r.mu.Unlock()
}

// ErrStoreNotEmpty is returned by Run for a store that already holds
// instances: the workload, its faults and its checks need a store of their
// own, never an application's.
var ErrStoreNotEmpty = errors.New("chaos: the store holds instances; chaos needs an empty store of its own")

// checkEmpty returns ErrStoreNotEmpty unless the store holds no instance.
func checkEmpty(ctx context.Context, be backend.Backend) error {
	page, err := be.ListInstances(ctx, &backend.ListInstancesParams{PageSize: 1})
	if err != nil {
		return fmt.Errorf("chaos: check that the store is empty: %w", err)
	}
	if len(page.Instances) > 0 {
		return fmt.Errorf("%w (it has %q, for one)", ErrStoreNotEmpty, page.Instances[0].ID)
	}
	return nil
}

// Run runs the workload under faults, drains it, and checks the invariants.
// The returned report's OK says whether every invariant held. The store must
// be empty (ErrStoreNotEmpty).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	r := &run{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		report: &Report{Seed: cfg.Seed, Backend: "", Faults: map[string]int{}, SplitFleet: cfg.SplitFleet},
		roles:  map[int]string{}, fates: map[int]string{}}
	mode := ""
	if cfg.SplitFleet {
		mode = " (split fleet: orchestration-only and activity-only workers)"
	}
	r.logf("seed %d, %d workers%s, %v of faults, %.0f instances/s", cfg.Seed, cfg.Workers, mode, cfg.Duration, cfg.Rate)
	be, err := cfg.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer be.Close()
	if err := checkEmpty(ctx, be); err != nil {
		return nil, err
	}
	client := duro.NewClient(be, &duro.ClientOptions{WaitPollInterval: 50 * time.Millisecond})

	r.faulty.Store(true)
	var wg sync.WaitGroup
	for i := range cfg.Workers {
		p := &proc{}
		r.procs = append(r.procs, p)
		wg.Add(1)
		go func() { defer wg.Done(); r.keepAlive(i, p) }()
	}
	defer func() {
		r.stopAll.Store(true)
		for _, p := range r.procs {
			p.mu.Lock()
			p.stopping = true
			if p.cmd != nil && p.cmd.Process != nil {
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
			}
			p.mu.Unlock()
		}
		wg.Wait()
	}()

	var started []string
	opCtx, stopOps := context.WithCancel(ctx)
	var opWG sync.WaitGroup
	opWG.Add(1)
	go func() { defer opWG.Done(); r.operator(opCtx, client) }()

	// Fault phase: start instances and inject faults.
	faultsDone := time.After(cfg.Duration)
	startTick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	nextFault := time.After(r.faultDelay())
	n := 0
loop:
	for {
		select {
		case <-ctx.Done():
			stopOps()
			opWG.Wait()
			return nil, ctx.Err()
		case <-faultsDone:
			break loop
		case <-startTick.C:
			shape := Shapes[n%len(Shapes)]
			id, err := startShape(ctx, client, shape, n)
			if err != nil {
				r.logf("start %s: %v", shape, err)
				continue
			}
			n++
			started = append(started, id)
			if shape == WorkEvent {
				if err := client.RaiseEvent(ctx, id, EventName, "raised"); err != nil {
					r.logf("raise on %s: %v", id, err)
				}
			}
		case <-nextFault:
			r.injectFault(ctx)
			nextFault = time.After(r.faultDelay())
		}
	}
	startTick.Stop()
	r.faulty.Store(false)
	r.logf("faults stop after %d instances; draining (workers restart unarmed)", len(started))
	for _, p := range r.procs {
		p.mu.Lock()
		if p.armed != "" && p.cmd != nil && p.cmd.Process != nil {
			p.byUs = true
			_ = p.cmd.Process.Kill()
		}
		p.mu.Unlock()
	}

	deadline := time.Now().Add(cfg.Drain)
	for time.Now().Before(deadline) {
		if pending := r.unfinished(ctx, client, started); pending == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopOps()
	opWG.Wait()
	r.report.Started = len(started)
	if err := r.check(ctx, client, be, started); err != nil {
		return nil, err
	}
	return r.report, nil
}

func (r *run) faultDelay() time.Duration { return time.Duration(150+r.intn(500)) * time.Millisecond }

// injectFault picks a fault and applies it to a random worker. A sixth of
// the faults are rolling restarts (unless Config.NoRollingRestarts); the
// rest are split as before: half SIGKILL, three tenths SIGSTOP, a fifth
// killed database connections.
func (r *run) injectFault(ctx context.Context) {
	i := r.intn(len(r.procs))
	p := r.procs[i]
	if !r.cfg.NoRollingRestarts && r.intn(6) == 0 {
		r.rollingRestart(i, p)
		return
	}
	kind := r.intn(10)
	switch {
	case kind < 5:
		p.mu.Lock()
		if p.cmd != nil && p.cmd.Process != nil {
			p.byUs = true
			_ = p.cmd.Process.Kill()
			r.count("sigkill")
		}
		p.mu.Unlock()
	case kind < 8:
		p.mu.Lock()
		cmd := p.cmd
		p.mu.Unlock()
		if cmd == nil || cmd.Process == nil {
			return
		}
		pause := activityLease + time.Duration(200+r.intn(1500))*time.Millisecond
		if cmd.Process.Signal(syscall.SIGSTOP) == nil {
			r.count("sigstop (lease expires while paused)")
			go func() {
				time.Sleep(pause)
				_ = cmd.Process.Signal(syscall.SIGCONT)
			}()
		}
	default:
		if r.cfg.KillConnections != nil {
			if n, err := r.cfg.KillConnections(ctx); err == nil && n > 0 {
				r.count("database connections killed")
				r.mu.Lock()
				r.report.ConnectionsKilled += n
				r.mu.Unlock()
			}
		}
	}
}

// rollingRestart stops worker i gracefully (SIGTERM: it calls Worker.Stop)
// for keepAlive to start it again; half of the time (unless
// Config.NoMissingActivity) the new process lacks one of the workload's
// activities, if another worker that runs activities has them all.
func (r *run) rollingRestart(i int, p *proc) {
	missing := ""
	if !r.cfg.NoMissingActivity && r.role(i) != RoleOrchestrations && r.intn(2) == 0 {
		missing = Activities[r.intn(len(Activities))]
		if !r.otherFullWorker(i) {
			missing = ""
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil || p.terming {
		return
	}
	if p.cmd.Process.Signal(syscall.SIGTERM) != nil {
		return
	}
	p.terming, p.nextMissing = true, missing
	r.count(FateSIGTERM)
}

// otherFullWorker reports whether a worker other than i runs the
// activities and has (and will have, after a pending restart) all of them.
func (r *run) otherFullWorker(i int) bool {
	for j, q := range r.procs {
		if j == i || r.role(j) == RoleOrchestrations {
			continue
		}
		q.mu.Lock()
		full := q.missing == "" && q.nextMissing == ""
		q.mu.Unlock()
		if full {
			return true
		}
	}
	return false
}

// keepAlive runs worker process i, restarting it whenever it dies, until the
// run stops.
func (r *run) keepAlive(i int, p *proc) {
	for !r.stopAll.Load() {
		var env []string
		armed := ""
		if r.faulty.Load() && r.intn(2) == 0 {
			armed = faultPoints[r.intn(len(faultPoints))]
			env = append(env, fmt.Sprintf("DURO_TEST_FAULT=%s@%d", armed, 1+r.intn(25)))
		}
		if r.cfg.Break != "" {
			env = append(env, "DURO_TEST_BREAK="+r.cfg.Break)
		}
		role := r.role(i)
		env = append(env, RoleEnv+"="+role)
		p.mu.Lock()
		missing := p.nextMissing
		p.nextMissing = ""
		p.mu.Unlock()
		if missing != "" {
			env = append(env, MissingEnv+"="+missing)
		}
		cmd := r.cfg.WorkerCommand(env)
		p.mu.Lock()
		if p.stopping {
			p.mu.Unlock()
			return
		}
		p.cmd, p.armed, p.byUs, p.terming, p.missing = cmd, armed, false, false, missing
		err := cmd.Start()
		if err == nil {
			r.mu.Lock()
			r.roles[cmd.Process.Pid] = role
			r.mu.Unlock()
			if missing != "" {
				r.count("restart missing activity " + missing)
			}
		}
		p.mu.Unlock()
		if err != nil {
			r.logf("worker %d: start: %v", i, err)
			time.Sleep(500 * time.Millisecond)
			continue
		}
		_ = cmd.Wait() // how it ended is in cmd.ProcessState
		p.mu.Lock()
		byUs, terming, stopping := p.byUs, p.terming, p.stopping
		p.cmd, p.missing = nil, ""
		p.mu.Unlock()
		fate := FateExited
		killed := false
		if cmd.ProcessState != nil {
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			killed = ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
		}
		switch {
		case killed && !byUs:
			fate = fateFaultPre + armed
			r.count(fate)
		case killed:
			fate = FateSIGKILL
		case terming:
			fate = FateSIGTERM
		}
		r.mu.Lock()
		r.fates[cmd.Process.Pid] = fate
		r.mu.Unlock()
		if stopping {
			return
		}
	}
}

// role is the role of worker process i.
func (r *run) role(i int) string {
	switch {
	case !r.cfg.SplitFleet:
		return RoleAll
	case i%2 == 0:
		return RoleActivities
	}
	return RoleOrchestrations
}

// operator resolves pending decisions the way a person would after
// checking the provider: with the result.
func (r *run) operator(ctx context.Context, c *duro.Client) {
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pending, err := c.PendingDecisions(ctx)
		if err != nil {
			continue
		}
		for _, pt := range pending {
			if err := c.Resume(ctx, pt.InstanceID, "chaos operator", duro.CompleteTask(pt.TaskID, "resolved-by-operator")); err == nil {
				r.mu.Lock()
				r.report.DecisionsMade++
				r.mu.Unlock()
			}
		}
	}
}

// unfinished counts started instances that have not finished.
func (r *run) unfinished(ctx context.Context, c *duro.Client, ids []string) int {
	n := 0
	for _, id := range ids {
		inst, err := c.Get(ctx, id)
		if err != nil || !inst.Status.IsTerminal() {
			n++
		}
	}
	return n
}
