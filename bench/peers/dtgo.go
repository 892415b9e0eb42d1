package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/microsoft/durabletask-go/api"
	dtbackend "github.com/microsoft/durabletask-go/backend"
	dtpostgres "github.com/microsoft/durabletask-go/backend/postgres"
	dtsqlite "github.com/microsoft/durabletask-go/backend/sqlite"
	"github.com/microsoft/durabletask-go/task"

	"github.com/durohq/duro/bench/workload"
)

// peerName names the peer engine in reports.
const peerName = "durabletask-go"

// peerRegistry registers the workloads on durabletask-go under the same
// names as duro's (workload.Register). The peer has no at-most-once
// activities: its atmostonce runs the plain sequence.
func peerRegistry() *task.TaskRegistry {
	r := task.NewTaskRegistry()
	must(r.AddActivityN(workload.ActivityHello, func(ctx task.ActivityContext) (any, error) {
		var name string
		if err := ctx.GetInput(&name); err != nil {
			return nil, err
		}
		return workload.Hello(name), nil
	}))
	must(r.AddOrchestratorN(workload.OrchSequence, func(ctx *task.OrchestrationContext) (any, error) {
		out := make([]string, 0, len(workload.Cities))
		for _, city := range workload.Cities {
			var s string
			if err := ctx.CallActivity(workload.ActivityHello, task.WithActivityInput(city)).Await(&s); err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}))
	must(r.AddOrchestratorN(workload.OrchFanOut, func(ctx *task.OrchestrationContext) (any, error) {
		var n int
		if err := ctx.GetInput(&n); err != nil {
			return nil, err
		}
		tasks := make([]task.Task, n)
		for i := range tasks {
			tasks[i] = ctx.CallActivity(workload.ActivityHello, task.WithActivityInput(fmt.Sprint(i)))
		}
		for _, t := range tasks {
			if err := t.Await(nil); err != nil {
				return nil, err
			}
		}
		return n, nil
	}))
	must(r.AddActivityN(workload.ActivityStep, func(ctx task.ActivityContext) (any, error) {
		var i int
		if err := ctx.GetInput(&i); err != nil {
			return nil, err
		}
		return workload.ChainStep(i), nil
	}))
	must(r.AddOrchestratorN(workload.OrchChain, func(ctx *task.OrchestrationContext) (any, error) {
		var n int
		if err := ctx.GetInput(&n); err != nil {
			return nil, err
		}
		next := 0
		for i := range n {
			if err := ctx.CallActivity(workload.ActivityStep, task.WithActivityInput(i)).Await(&next); err != nil {
				return nil, err
			}
		}
		return next, nil
	}))
	must(r.AddOrchestratorN(workload.OrchSingle, func(ctx *task.OrchestrationContext) (any, error) {
		var name, s string
		if err := ctx.GetInput(&name); err != nil {
			return nil, err
		}
		err := ctx.CallActivity(workload.ActivityHello, task.WithActivityInput(name)).Await(&s)
		return s, err
	}))
	must(r.AddOrchestratorN(workload.OrchMixed, func(ctx *task.OrchestrationContext) (any, error) {
		out := make([]string, 0, len(workload.Cities))
		var s string
		if err := ctx.CallActivity(workload.ActivityHello, task.WithActivityInput(workload.Cities[0])).Await(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
		if err := ctx.CreateTimer(workload.TimerDelay).Await(nil); err != nil {
			return nil, err
		}
		var approval int
		if err := ctx.WaitForSingleEvent(workload.EventApprove, -1).Await(&approval); err != nil {
			return nil, err
		}
		for _, city := range workload.Cities[1:] {
			if err := ctx.CallActivity(workload.ActivityHello, task.WithActivityInput(city)).Await(&s); err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}))
	return r
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// peer is durabletask-go with a worker in this process, as a
// workload.Engine. Finished and Outcomes read the peer's Instances table
// directly: its client's WaitForOrchestrationCompletion polls with a
// backoff that grows to seconds.
type peer struct {
	be     dtbackend.Backend
	worker dtbackend.TaskHubWorker
	client dtbackend.TaskHubClient
	log    *errLogger
	// query runs a query on the peer's store and scans its rows.
	query func(ctx context.Context, q string, scan func(row scanner) error) error
	close func()
}

type scanner interface{ Scan(dest ...any) error }

// startPeer starts durabletask-go on st with orchPar orchestration and
// actPar activity work items in parallel. journal is the SQLite journal
// mode.
func startPeer(ctx context.Context, st *workload.Store, orchPar, actPar int, journal string) (*peer, error) {
	p := &peer{log: &errLogger{}}
	switch st.Kind {
	case workload.KindSQLite:
		// The same durability as duro's default: synchronous=FULL, and the
		// journal mode given (duro: WAL). The peer opens its DSN as given,
		// with one connection.
		dsn := "file:" + st.Path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(" + journal + ")&_pragma=synchronous(FULL)"
		opts := dtsqlite.NewSqliteOptions(dsn)
		p.be = dtsqlite.NewSqliteBackend(opts, p.log)
	case workload.KindPostgres:
		conn, err := pgx.Connect(ctx, st.URL)
		if err != nil {
			return nil, err
		}
		_, err = conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{st.Schema}.Sanitize())
		_ = conn.Close(ctx)
		if err != nil {
			return nil, err
		}
		cfg, err := pgxpool.ParseConfig(st.URL)
		if err != nil {
			return nil, err
		}
		// The peer's tables are unqualified: the run's schema comes first
		// in the search path. The pool is sized for the parallelism (the
		// peer's default is one connection).
		cfg.ConnConfig.RuntimeParams["search_path"] = st.Schema
		cfg.MaxConns = int32(orchPar + actPar + 2)
		opts := &dtpostgres.PostgresOptions{PgOptions: cfg, OrchestrationLockTimeout: 2 * time.Minute, ActivityLockTimeout: 2 * time.Minute}
		p.be = dtpostgres.NewPostgresBackend(opts, p.log)
		rcfg := cfg.Copy()
		rcfg.MaxConns = 2
		pool, err := pgxpool.NewWithConfig(ctx, rcfg)
		if err != nil {
			return nil, err
		}
		p.close = pool.Close
		p.query = func(ctx context.Context, q string, scan func(scanner) error) error {
			rows, err := pool.Query(ctx, q)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				if err := scan(rows); err != nil {
					return err
				}
			}
			return rows.Err()
		}
	default:
		return nil, fmt.Errorf("unknown store kind %q", st.Kind)
	}
	exec := task.NewTaskExecutor(peerRegistry())
	ow := dtbackend.NewOrchestrationWorker(p.be, exec, p.log, dtbackend.WithMaxParallelism(int32(orchPar)))
	aw := dtbackend.NewActivityTaskWorker(p.be, exec, p.log, dtbackend.WithMaxParallelism(int32(actPar)))
	w := dtbackend.NewTaskHubWorker(p.be, ow, aw, p.log)
	if err := w.Start(ctx); err != nil {
		if p.close != nil {
			p.close()
		}
		return nil, err
	}
	p.worker = w
	p.client = dtbackend.NewTaskHubClient(p.be)
	if st.Kind == workload.KindSQLite {
		// A read connection of our own, opened once the worker has
		// created the tables.
		db, err := sql.Open("sqlite", "file:"+st.Path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
		if err != nil {
			_ = w.Shutdown(ctx)
			return nil, err
		}
		db.SetMaxOpenConns(1)
		p.close = func() { _ = db.Close() }
		p.query = func(ctx context.Context, q string, scan func(scanner) error) error {
			rows, err := db.QueryContext(ctx, q)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				if err := scan(rows); err != nil {
					return err
				}
			}
			return rows.Err()
		}
	}
	return p, nil
}

// stop stops the peer's worker and closes the read connections.
func (p *peer) stop(ctx context.Context) {
	_ = p.worker.Shutdown(ctx)
	p.close()
}

// Start implements workload.Engine.
func (p *peer) Start(ctx context.Context, name, id string, input any) error {
	opts := []api.NewOrchestrationOptions{api.WithInstanceID(api.InstanceID(id))}
	if input != nil {
		opts = append(opts, api.WithInput(input))
	}
	_, err := p.client.ScheduleNewOrchestration(ctx, name, opts...)
	return err
}

// RaiseEvent implements workload.Engine.
func (p *peer) RaiseEvent(ctx context.Context, id, name string, data any) error {
	return p.client.RaiseEvent(ctx, api.InstanceID(id), name, api.WithEventPayload(data))
}

// Wait implements workload.Waiter with the client's
// WaitForOrchestrationCompletion.
func (p *peer) Wait(ctx context.Context, id string) error {
	md, err := p.client.WaitForOrchestrationCompletion(ctx, api.InstanceID(id))
	if err != nil {
		return err
	}
	if md.RuntimeStatus != api.RUNTIME_STATUS_COMPLETED {
		return fmt.Errorf("instance %s: %v", id, md.RuntimeStatus)
	}
	return nil
}

// Finished implements workload.Engine.
func (p *peer) Finished(ctx context.Context) (bool, error) {
	var n int64
	err := p.query(ctx, `SELECT COUNT(*) FROM Instances WHERE RuntimeStatus IN ('PENDING', 'RUNNING')`, func(r scanner) error {
		return r.Scan(&n)
	})
	return n == 0, err
}

// Outcomes implements workload.Engine: the status and CompletedTime the
// peer's store recorded.
func (p *peer) Outcomes(ctx context.Context) (map[string]workload.Outcome, error) {
	out := map[string]workload.Outcome{}
	err := p.query(ctx, `SELECT InstanceID, RuntimeStatus, CompletedTime FROM Instances`, func(r scanner) error {
		var id, status string
		var completed any
		if err := r.Scan(&id, &status, &completed); err != nil {
			return err
		}
		at, err := parseTime(completed)
		if err != nil {
			return fmt.Errorf("instance %s: CompletedTime: %w", id, err)
		}
		out[id] = workload.Outcome{Completed: status == "COMPLETED", Status: status, CompletedAt: at}
		return nil
	})
	return out, err
}

// parseTime reads a timestamp as the peer's stores return it.
func parseTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return t, nil
	case string:
		for _, layout := range []string{"2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano, "2006-01-02 15:04:05.999999999"} {
			if at, err := time.Parse(layout, t); err == nil {
				return at, nil
			}
		}
		return time.Time{}, fmt.Errorf("unknown time format %q", t)
	}
	return time.Time{}, fmt.Errorf("unexpected %T", v)
}

// Err implements workload.Engine: the peer's worker logs errors and retries
// forever; the same commit error seen repeatedly means the run cannot
// finish.
func (p *peer) Err() error { return p.log.fatal() }

// errLogger is the peer's logger: it drops everything but errors, which it
// counts.
type errLogger struct {
	mu    sync.Mutex
	n     int
	first string
}

func (l *errLogger) record(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if l.first == "" {
		l.first = msg
	}
}

func (l *errLogger) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n < 3 {
		return nil
	}
	return fmt.Errorf("%s reported %d errors; the first: %s", peerName, l.n, strings.TrimSpace(l.first))
}

func (l *errLogger) Debug(...any)          {}
func (l *errLogger) Debugf(string, ...any) {}
func (l *errLogger) Info(...any)           {}
func (l *errLogger) Infof(string, ...any)  {}
func (l *errLogger) Warn(...any)           {}
func (l *errLogger) Warnf(string, ...any)  {}
func (l *errLogger) Error(v ...any)        { l.record(fmt.Sprint(v...)) }
func (l *errLogger) Errorf(f string, v ...any) {
	l.record(fmt.Sprintf(f, v...))
}
