package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
	"github.com/durohq/duro/bench/workload"
)

// benchWorkerCmd is the worker process duro bench starts with --workers > 1.
// It runs the workloads' code on the store until its standard input closes
// (or SIGTERM), then prints its counters as one JSON line.
func (a *app) benchWorkerCmd() *cobra.Command {
	var conc int
	cmd := &cobra.Command{
		Use:    "bench-worker",
		Short:  "Run one benchmark worker process (started by duro bench)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.WithoutCancel(cmd.Context()), os.Interrupt, syscall.SIGTERM)
			defer stop()
			be, err := openStore(ctx, a.store)
			if err != nil {
				return err
			}
			defer be.Close()
			reg := duro.NewRegistry()
			workload.Register(reg)
			logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
			w, err := duro.NewWorker(be, reg, benchWorkerOptions(conc, logger))
			if err != nil {
				return err
			}
			if err := w.Start(ctx); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "ready")
			eof := make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, os.Stdin)
				close(eof)
			}()
			select {
			case <-eof:
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = w.Stop(sctx)
			if eerr := encodeStats(a.stdout, w.Stats()); err == nil {
				err = eerr
			}
			return err
		},
	}
	cmd.Flags().IntVar(&conc, "concurrency", 0, "orchestration and activity concurrency (0: defaults)")
	return cmd
}

// benchWorkers are the worker processes of one run.
type benchWorkers struct {
	procs []*benchProc
}

type benchProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startBenchWorkers starts n bench-worker processes on st and waits until
// each is ready. The store reaches them in DURO_STORE, not on their command
// line, which anyone on the machine can read.
func startBenchWorkers(ctx context.Context, st *workload.Store, n, conc int, stderr io.Writer) (*benchWorkers, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ws := &benchWorkers{}
	// The workers' stderr goes to one writer, which need not be safe for
	// concurrent use.
	errOut := &lockedWriter{w: stderr}
	for range n {
		c := exec.Command(self, "bench-worker", "--concurrency", strconv.Itoa(conc))
		c.Env = append(os.Environ(), "DURO_STORE="+st.Spec())
		c.Stderr = errOut
		stdin, err := c.StdinPipe()
		if err != nil {
			ws.kill()
			return nil, err
		}
		stdout, err := c.StdoutPipe()
		if err != nil {
			ws.kill()
			return nil, err
		}
		if err := c.Start(); err != nil {
			ws.kill()
			return nil, err
		}
		ws.procs = append(ws.procs, &benchProc{cmd: c, stdin: stdin, out: bufio.NewReader(stdout)})
	}
	ready := make(chan error, len(ws.procs))
	for _, p := range ws.procs {
		go func() {
			line, err := p.out.ReadString('\n')
			if err == nil && line != "ready\n" {
				err = fmt.Errorf("bench worker said %q", line)
			} else if err != nil {
				err = errNoReady
			}
			ready <- err
		}()
	}
	for range ws.procs {
		select {
		case err := <-ready:
			if err != nil {
				ws.kill()
				return nil, err
			}
		case <-ctx.Done():
			ws.kill()
			return nil, ctx.Err()
		}
	}
	return ws, nil
}

// peakRSS reads each worker's peak RSS while it still runs.
func (ws *benchWorkers) peakRSS() []int64 {
	out := make([]int64, len(ws.procs))
	for i, p := range ws.procs {
		out[i], _ = workload.PeakRSS(p.cmd.Process.Pid)
	}
	return out
}

// stop closes each worker's standard input, reads the steps it committed,
// and waits for it to exit.
func (ws *benchWorkers) stop() (int64, error) {
	var steps int64
	var errs []error
	for _, p := range ws.procs {
		_ = p.stdin.Close()
	}
	for _, p := range ws.procs {
		var s benchWorkerStats
		if err := json.NewDecoder(p.out).Decode(&s); err != nil {
			errs = append(errs, fmt.Errorf("bench worker %d: read its stats: %w", p.cmd.Process.Pid, err))
		}
		steps += s.Steps
		if err := p.cmd.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("bench worker %d: %w", p.cmd.Process.Pid, err))
		}
	}
	ws.procs = nil
	return steps, errors.Join(errs...)
}

// kill ends the workers that stop has not stopped.
func (ws *benchWorkers) kill() {
	for _, p := range ws.procs {
		_ = p.stdin.Close()
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
	ws.procs = nil
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
