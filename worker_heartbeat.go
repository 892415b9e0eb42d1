package duro

import (
	"context"
	"errors"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/dispatch"
)

// Worker heartbeats. A worker whose backend keeps them
// (backend.WorkerRegistry) records, every WorkerOptions.HeartbeatInterval,
// who it is, what it registers and how many of its slots are busy; the
// heartbeat keeps it live for heartbeatTTL intervals. Stop marks it
// stopping at once and gone when its in-flight work has finished. Each
// worker prunes the rows whose last heartbeat is older than
// WorkerRetention, so recently gone workers stay visible for that long.

// DefaultHeartbeatInterval is the default of WorkerOptions.HeartbeatInterval.
const DefaultHeartbeatInterval = 10 * time.Second

// WorkerRetention is how long the store keeps a worker's row after its last
// heartbeat, so that operators see the workers recently gone.
const WorkerRetention = time.Hour

// heartbeatTTL is how many intervals one heartbeat keeps a worker live: a
// worker that dies counts as gone at most that long after its last one.
const heartbeatTTL = 3

// pruneEvery is how many heartbeats pass between two prunes.
const pruneEvery = 30

// heartbeat is a running worker's heartbeat loop.
type heartbeat struct {
	w    *Worker
	reg  backend.WorkerRegistry
	info backend.WorkerInfo
	orch *dispatch.Loop[*backend.OrchestrationWorkItem]
	act  *dispatch.Loop[*backend.ActivityWorkItem]
	// failed is set while writes fail (logged once per streak).
	failed bool
}

// startHeartbeat starts the worker's heartbeat loop and returns a channel
// closed when it has ended: after drained is closed (every loop of the
// worker has returned) and the worker is marked gone. stopping is done
// when Stop is called. Without a WorkerRegistry, or with heartbeats off,
// the channel is closed once drained is.
func (w *Worker) startHeartbeat(stopping context.Context, drained <-chan struct{},
	orch *dispatch.Loop[*backend.OrchestrationWorkItem], act *dispatch.Loop[*backend.ActivityWorkItem]) <-chan struct{} {
	done := make(chan struct{})
	reg, ok := w.be.(backend.WorkerRegistry)
	if !ok || w.opts.HeartbeatInterval < 0 {
		go func() { <-drained; close(done) }()
		return done
	}
	host, _ := os.Hostname()
	hb := &heartbeat{w: w, reg: reg, orch: orch, act: act, info: backend.WorkerInfo{
		ID: uuid.NewString(), Name: w.opts.Name, Host: host, PID: os.Getpid(), Version: buildVersion(),
		OrchestrationSlots: w.opts.OrchestrationConcurrency, ActivitySlots: w.opts.ActivityConcurrency,
	}}
	go func() {
		defer close(done)
		hb.run(stopping, drained)
	}()
	return done
}

func (hb *heartbeat) run(stopping context.Context, drained <-chan struct{}) {
	interval := hb.w.opts.HeartbeatInterval
	on := hb.beat(false) // false: the store keeps no heartbeats after all
	if on {
		hb.prune()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	stop := stopping.Done()
	for n := 1; ; n++ {
		select {
		case <-t.C:
			if on {
				on = hb.beat(false)
				if on && n%pruneEvery == 0 {
					hb.prune()
				}
			}
		case <-stop:
			stop = nil
			hb.info.Stopping = true
			if on {
				on = hb.beat(false)
			}
		case <-drained:
			// Drained comes after the stop; when both are ready the
			// select may take this case first.
			hb.info.Stopping = true
			if on {
				hb.beat(true)
			}
			return
		}
	}
}

// beat records one heartbeat (the last one, marking the worker gone, if
// gone is set). It reports false when the store turns out to keep no
// heartbeats (a wrapper of a backend without them) or is closed: the loop
// then stops writing.
func (hb *heartbeat) beat(gone bool) bool {
	interval := hb.w.opts.HeartbeatInterval
	info := hb.info
	info.Orchestrations, info.Activities, info.Entities = hb.w.reg.names()
	info.OrchestrationBusy, info.ActivityBusy = hb.orch.Busy(), hb.act.Busy()
	if gone {
		info.OrchestrationBusy, info.ActivityBusy = 0, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(interval, 5*time.Second))
	defer cancel()
	err := hb.reg.UpsertWorker(ctx, &backend.UpsertWorkerParams{Info: &info, TTL: heartbeatTTL * interval, Gone: gone})
	return hb.result("record worker heartbeat", err)
}

// prune deletes the rows of workers not seen for WorkerRetention.
func (hb *heartbeat) prune() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := hb.reg.PruneWorkers(ctx, &backend.PruneWorkersParams{Before: time.Now().Add(-WorkerRetention)})
	hb.result("prune worker heartbeats", err)
}

// result logs a failed write once per streak of failures, and reports
// whether heartbeats should go on.
func (hb *heartbeat) result(what string, err error) bool {
	if errors.Is(err, errors.ErrUnsupported) || errors.Is(err, backend.ErrClosed) {
		return false
	}
	switch {
	case err != nil && !hb.failed:
		hb.failed = true
		hb.w.log.Warn("duro: "+what+" failed; operators may see this worker as gone", "err", err)
	case err == nil && hb.failed:
		hb.failed = false
		hb.w.log.Info("duro: worker heartbeats recorded again")
	}
	return true
}

// names returns the registered orchestrations, activities and entities,
// each sorted.
func (r *Registry) names() (orchestrations, activities, entities []string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.orchestrations)), slices.Clone(r.activityList), slices.Sorted(maps.Keys(r.entities))
}

// buildVersion is the build of the program that runs the worker: its main
// module's path and version, or VCS revision for a development build.
var buildVersion = sync.OnceValue(func() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	v := info.Main.Path
	if info.Main.Version != "" && info.Main.Version != "(devel)" {
		return v + " " + info.Main.Version
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return v + " (devel " + s.Value[:12] + ")"
		}
	}
	return v + " (devel)"
})
