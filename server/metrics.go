package server

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/durohq/duro"
)

// Metrics are duro's Prometheus metrics for one process: the counters of
// the workers it hosts (AddWorker), the claims of a backend wrapped with
// Backend, and gauges read from the store. It is a prometheus.Collector;
// Server serves it at /metrics. docs/server.md lists the metrics.
type Metrics struct {
	c *duro.Client

	mu      sync.Mutex
	workers []*duro.Worker

	claimed      *prometheus.CounterVec
	stepRedeliv  prometheus.Counter
	claimLatency *prometheus.HistogramVec

	// Store gauges are read at most every storeTTL.
	storeTTL  time.Duration
	storeMu   sync.Mutex
	storeAt   time.Time
	storeSnap storeSnapshot

	completed, redelivered, released, rejected, duplicates, stale, poisoned, instances, pending, backlog *prometheus.Desc
	stickySteps, stickyStale, stickyEvictions                                                            *prometheus.Desc
}

type storeSnapshot struct {
	byStatus map[duro.Status]int
	pending  int
	backlog  *[2]int // orchestration, activity; nil without a BacklogCounter
	err      error
}

// Work item kinds, the "kind" label.
const (
	KindOrchestration = "orchestration"
	KindActivity      = "activity"
)

// NewMetrics returns the metrics of c's store, with no worker attached.
func NewMetrics(c *duro.Client) *Metrics {
	kind := []string{"kind"}
	m := &Metrics{
		c:        c,
		storeTTL: 2 * time.Second,
		claimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duro_work_items_claimed_total",
			Help: "Work items claimed by this process's workers, by kind (orchestration step or activity delivery).",
		}, kind),
		stepRedeliv: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duro_step_redeliveries_total",
			Help: "Orchestration steps claimed again after a delivery that did not commit.",
		}),
		claimLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "duro_claim_latency_seconds",
			Help:    "How long a work item waited, from when it became available to its first claim, by kind.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, kind),
		completed: prometheus.NewDesc("duro_work_items_completed_total",
			"Work items whose outcome committed, by kind.", kind, nil),
		redelivered: prometheus.NewDesc("duro_activity_redeliveries_total",
			"Activity deliveries with attempt > 1.", nil, nil),
		released: prometheus.NewDesc("duro_activity_deliveries_released_total",
			"Activity deliveries handed back before their code started (a stopping worker, an unregistered activity); they are not possible duplicates.", nil, nil),
		rejected: prometheus.NewDesc("duro_entity_requests_rejected_total",
			"Entity requests refused because the entity's queue of requests waiting for its lock was full.", nil, nil),
		duplicates: prometheus.NewDesc("duro_duplicates_total",
			"At-most-once deliveries not run because an earlier delivery may have run, by the policy applied (fail, suspend, reconcile).",
			[]string{"policy"}, nil),
		stale: prometheus.NewDesc("duro_stale_completions_rejected_total",
			"Results discarded because a newer delivery held the work item (A2 fencing).", nil, nil),
		poisoned: prometheus.NewDesc("duro_poisoned_total",
			"Work items given up after too many deliveries, by kind.", kind, nil),
		instances: prometheus.NewDesc("duro_instances",
			"Unfinished instances in the store, by status (Pending, Running, Suspended).", []string{"status"}, nil),
		pending: prometheus.NewDesc("duro_pending_decisions",
			"At-most-once tasks waiting for an operator's decision.", nil, nil),
		backlog: prometheus.NewDesc("duro_backlog",
			"Work items available to claim now, by kind (only for stores that count them).", kind, nil),
		stickySteps: prometheus.NewDesc("duro_sticky_steps_total",
			"Orchestration steps with the sticky executor cache on, by result: hit (continued the cached executor), miss (replayed the history).",
			[]string{"result"}, nil),
		stickyStale: prometheus.NewDesc("duro_sticky_stale_total",
			"Cached executors dropped because the claimed history had changed past them (another worker's step, continue-as-new, purge).", nil, nil),
		stickyEvictions: prometheus.NewDesc("duro_sticky_evictions_total",
			"Cached executors evicted to keep the sticky cache within its bounds.", nil, nil),
	}
	// Export every kind from the start, at zero.
	for _, k := range []string{KindOrchestration, KindActivity} {
		m.claimed.WithLabelValues(k)
		m.claimLatency.WithLabelValues(k)
	}
	return m
}

// AddWorker adds w's counters to the metrics. Counters sum over every
// worker added, stopped ones included, so they never go down.
func (m *Metrics) AddWorker(w *duro.Worker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.workers = append(m.workers, w)
}

// Stats returns the sum of the added workers' counters.
func (m *Metrics) Stats() duro.WorkerStats {
	m.mu.Lock()
	ws := append([]*duro.Worker(nil), m.workers...)
	m.mu.Unlock()
	var t duro.WorkerStats
	for _, w := range ws {
		s := w.Stats()
		t.StepsCompleted += s.StepsCompleted
		t.ActivitiesCompleted += s.ActivitiesCompleted
		t.Redeliveries += s.Redeliveries
		t.DuplicatesFailed += s.DuplicatesFailed
		t.DuplicatesReconciled += s.DuplicatesReconciled
		t.DuplicatesSuspended += s.DuplicatesSuspended
		t.StaleCompletionsRejected += s.StaleCompletionsRejected
		t.ActivitiesPoisoned += s.ActivitiesPoisoned
		t.StepsPoisoned += s.StepsPoisoned
		t.EntityRequestsRejected += s.EntityRequestsRejected
		t.ActivitiesReleased += s.ActivitiesReleased
		t.StickyHits += s.StickyHits
		t.StickyMisses += s.StickyMisses
		t.StickyStale += s.StickyStale
		t.StickyEvictions += s.StickyEvictions
	}
	return t
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.claimed.Describe(ch)
	m.stepRedeliv.Describe(ch)
	m.claimLatency.Describe(ch)
	for _, d := range []*prometheus.Desc{m.completed, m.redelivered, m.released, m.rejected, m.duplicates, m.stale, m.poisoned, m.instances, m.pending, m.backlog,
		m.stickySteps, m.stickyStale, m.stickyEvictions} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.claimed.Collect(ch)
	m.stepRedeliv.Collect(ch)
	m.claimLatency.Collect(ch)
	s := m.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(m.completed, s.StepsCompleted, KindOrchestration)
	counter(m.completed, s.ActivitiesCompleted, KindActivity)
	counter(m.redelivered, s.Redeliveries)
	counter(m.released, s.ActivitiesReleased)
	counter(m.rejected, s.EntityRequestsRejected)
	counter(m.duplicates, s.DuplicatesFailed, "fail")
	counter(m.duplicates, s.DuplicatesSuspended, "suspend")
	counter(m.duplicates, s.DuplicatesReconciled, "reconcile")
	counter(m.stale, s.StaleCompletionsRejected)
	counter(m.poisoned, s.StepsPoisoned, KindOrchestration)
	counter(m.poisoned, s.ActivitiesPoisoned, KindActivity)
	counter(m.stickySteps, s.StickyHits, "hit")
	counter(m.stickySteps, s.StickyMisses, "miss")
	counter(m.stickyStale, s.StickyStale)
	counter(m.stickyEvictions, s.StickyEvictions)

	snap := m.store()
	if snap.err != nil {
		ch <- prometheus.NewInvalidMetric(m.instances, snap.err)
		return
	}
	for _, st := range []duro.Status{duro.StatusPending, duro.StatusRunning, duro.StatusSuspended} {
		ch <- prometheus.MustNewConstMetric(m.instances, prometheus.GaugeValue, float64(snap.byStatus[st]), string(st))
	}
	ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(snap.pending))
	if snap.backlog != nil {
		ch <- prometheus.MustNewConstMetric(m.backlog, prometheus.GaugeValue, float64(snap.backlog[0]), KindOrchestration)
		ch <- prometheus.MustNewConstMetric(m.backlog, prometheus.GaugeValue, float64(snap.backlog[1]), KindActivity)
	}
}

// BacklogCounter is an optional capability of a backend: it counts the work
// items that could be claimed at now. With it, Metrics exports duro_backlog.
type BacklogCounter interface {
	Backlog(ctx context.Context, now time.Time) (orchestrationSteps, activities int, err error)
}

// maxScan bounds the unfinished instances the store gauges read.
const maxScan = 100_000

// store returns the store gauges, read again when older than storeTTL.
func (m *Metrics) store() storeSnapshot {
	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	if !m.storeAt.IsZero() && time.Since(m.storeAt) < m.storeTTL {
		return m.storeSnap
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap := storeSnapshot{byStatus: map[duro.Status]int{}}
	opts := duro.ListOptions{Statuses: []duro.Status{duro.StatusPending, duro.StatusRunning, duro.StatusSuspended}, PageSize: 1000}
	for seen := 0; seen < maxScan; {
		page, err := m.c.List(ctx, opts)
		if err != nil {
			snap.err = err
			break
		}
		for _, i := range page.Instances {
			snap.byStatus[i.Status]++
			if i.Suspension != nil {
				snap.pending += len(i.Suspension.Pending)
			}
		}
		seen += len(page.Instances)
		if opts.PageToken = page.NextPageToken; opts.PageToken == "" {
			break
		}
	}
	if bc, ok := m.c.Backend().(BacklogCounter); ok && snap.err == nil {
		o, a, err := bc.Backlog(ctx, time.Now())
		if err == nil {
			snap.backlog = &[2]int{o, a}
		}
	}
	m.storeSnap, m.storeAt = snap, time.Now()
	return snap
}
