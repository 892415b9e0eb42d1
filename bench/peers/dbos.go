package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durohq/duro/bench/workload"
)

// dbosName names DBOS Transact (Go) in reports.
const dbosName = "dbos"

// dbosDatabase is the database DBOS keeps its system tables in: its own,
// beside the database of the other engines' schemas. Every run gets a new
// schema in it (dbos.Config.DatabaseSchema), dropped afterwards.
const dbosDatabase = "dbos_bench"

// dbosQueue is the queue the fan-out's children run on.
const dbosQueue = "bench_fanout"

// dbosWorkloads are the workloads the DBOS engine implements.
var dbosWorkloads = map[string]bool{
	workload.Sequence: true, workload.FanOut: true, workload.Chain: true, workload.Latency: true,
}

// dbosEngine is DBOS Transact with its executor in this process, as a
// workload.Engine and workload.Waiter. Its workflows are the workloads'
// orchestrations and its steps their activities:
//
//   - sequence: a workflow of three steps (dbos.RunAsStep);
//   - fanout: a workflow that enqueues N child workflows of one step each
//     on a queue and awaits their handles, DBOS's documented way of
//     fanning out work that any executor may take; with -dbos-fanout go,
//     N steps started with dbos.Go in the parent's executor and received
//     in order (no queue, no other executor can help);
//   - chain: a workflow of N steps;
//   - latency: a workflow of one step, awaited with its handle's GetResult.
//
// Finished and Outcomes read DBOS's workflow_status table: status, and
// completed_at, the epoch milliseconds at which the workflow reached its
// terminal state.
type dbosEngine struct {
	ctx   dbos.Context
	pool  *pgxpool.Pool
	table string // the run's workflow_status, schema-qualified

	mu      sync.Mutex
	handles map[string]dbos.WorkflowHandle[string]

	seq, fan, fanGo, chain, single dbos.Workflow[int, string]
	// fanoutGo selects fanGo for the fan-out.
	fanoutGo bool
	child    dbos.Workflow[int, string]
	queue    dbos.Queue
}

// dbosStore returns a fresh store for a DBOS run: a new schema in the
// database dbosDatabase of the server pgURL names, which it creates if
// missing.
func dbosStore(ctx context.Context, pgURL string) (*workload.Store, error) {
	u, err := url.Parse(pgURL)
	if err != nil {
		return nil, errors.New("malformed PostgreSQL URL")
	}
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return nil, fmt.Errorf("dbos: connect: %w", err)
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{dbosDatabase}.Sanitize())
	_ = conn.Close(ctx)
	var pgErr *pgconn.PgError
	// 42P04: it exists; 23505: another run created it at the same time.
	if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505")) {
		return nil, fmt.Errorf("dbos: create database %s: %w", dbosDatabase, err)
	}
	u.Path = "/" + dbosDatabase
	return workload.NewStore(u.String(), "bench_dbos_")
}

// startDBOS launches DBOS on st (a store from dbosStore). fanout is
// "queue" or "go": how the fan-out workload fans out.
func startDBOS(ctx context.Context, st *workload.Store, fanout string) (*dbosEngine, error) {
	if fanout != "queue" && fanout != "go" {
		return nil, fmt.Errorf("-dbos-fanout: want queue or go, not %q", fanout)
	}
	if st.Kind != workload.KindPostgres {
		return nil, fmt.Errorf("dbos runs on PostgreSQL here, not %s", st.Kind)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	dctx, err := dbos.NewContext(ctx, dbos.Config{
		AppName: "duro-bench", DatabaseURL: st.URL, DatabaseSchema: st.Schema, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("dbos: new context: %w", err)
	}
	e := &dbosEngine{ctx: dctx, handles: map[string]dbos.WorkflowHandle[string]{}, fanoutGo: fanout == "go",
		table: pgx.Identifier{st.Schema, "workflow_status"}.Sanitize()}
	hello := func(name string) dbos.Step[string] {
		return func(context.Context) (string, error) { return workload.Hello(name), nil }
	}
	e.seq = func(ctx dbos.Context, _ int) (string, error) {
		var last string
		for _, city := range workload.Cities {
			s, err := dbos.RunAsStep(ctx, hello(city), dbos.WithStepName(workload.ActivityHello))
			if err != nil {
				return "", err
			}
			last = s
		}
		return last, nil
	}
	e.child = func(ctx dbos.Context, i int) (string, error) {
		return dbos.RunAsStep(ctx, hello(fmt.Sprint(i)), dbos.WithStepName(workload.ActivityHello))
	}
	e.fan = func(ctx dbos.Context, n int) (string, error) {
		hs := make([]dbos.WorkflowHandle[string], n)
		for i := range hs {
			h, err := dbos.RunWorkflow(ctx, e.child, i, dbos.WithQueue(e.queue))
			if err != nil {
				return "", err
			}
			hs[i] = h
		}
		for _, h := range hs {
			if _, err := h.GetResult(); err != nil {
				return "", err
			}
		}
		return fmt.Sprint(n), nil
	}
	e.fanGo = func(ctx dbos.Context, n int) (string, error) {
		chs := make([]<-chan dbos.StepOutcome[string], n)
		for i := range chs {
			ch, err := dbos.Go(ctx, hello(fmt.Sprint(i)), dbos.WithStepName(workload.ActivityHello))
			if err != nil {
				return "", err
			}
			chs[i] = ch
		}
		for _, ch := range chs {
			if o := <-ch; o.Err != nil {
				return "", o.Err
			}
		}
		return fmt.Sprint(n), nil
	}
	e.chain = func(ctx dbos.Context, n int) (string, error) {
		next := 0
		for i := range n {
			v, err := dbos.RunAsStep(ctx, func(context.Context) (int, error) { return workload.ChainStep(i), nil },
				dbos.WithStepName(workload.ActivityStep))
			if err != nil {
				return "", err
			}
			next = v
		}
		return fmt.Sprint(next), nil
	}
	e.single = func(ctx dbos.Context, _ int) (string, error) {
		return dbos.RunAsStep(ctx, hello(workload.Cities[0]), dbos.WithStepName(workload.ActivityHello))
	}
	dbos.RegisterWorkflow(dctx, e.seq, dbos.WithWorkflowName(workload.OrchSequence))
	dbos.RegisterWorkflow(dctx, e.child, dbos.WithWorkflowName("BenchFanOutChild"))
	dbos.RegisterWorkflow(dctx, e.fan, dbos.WithWorkflowName(workload.OrchFanOut))
	dbos.RegisterWorkflow(dctx, e.fanGo, dbos.WithWorkflowName(workload.OrchFanOut+"Go"))
	dbos.RegisterWorkflow(dctx, e.chain, dbos.WithWorkflowName(workload.OrchChain))
	dbos.RegisterWorkflow(dctx, e.single, dbos.WithWorkflowName(workload.OrchSingle))
	// The queue with DBOS's defaults (no concurrency limit, its default
	// polling interval).
	if e.queue, err = dbos.RegisterQueue(dctx, dbosQueue); err != nil {
		_ = dbos.Shutdown(dctx, 5*time.Second)
		return nil, fmt.Errorf("dbos: register queue: %w", err)
	}
	if err := dbos.Launch(dctx); err != nil {
		_ = dbos.Shutdown(dctx, 5*time.Second)
		return nil, fmt.Errorf("dbos: launch: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(st.URL)
	if err != nil {
		_ = dbos.Shutdown(dctx, 5*time.Second)
		return nil, err
	}
	cfg.MaxConns = 2
	if e.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		_ = dbos.Shutdown(dctx, 5*time.Second)
		return nil, err
	}
	return e, nil
}

// stop shuts DBOS down and closes the read pool.
func (e *dbosEngine) stop() {
	_ = dbos.Shutdown(e.ctx, 30*time.Second)
	e.pool.Close()
}

// Start implements workload.Engine: the workflow named, with the run's N
// as input where it takes one.
func (e *dbosEngine) Start(_ context.Context, name, id string, input any) error {
	wf, arg := e.seq, 0
	switch name {
	case workload.OrchSequence:
		if in, ok := input.(workload.SequenceInput); ok && in.AtMostOnce {
			return errors.New("dbos has no at-most-once steps")
		}
	case workload.OrchFanOut:
		wf, arg = e.fan, input.(int)
		if e.fanoutGo {
			wf = e.fanGo
		}
	case workload.OrchChain:
		wf, arg = e.chain, input.(int)
	case workload.OrchSingle:
		wf = e.single
	default:
		return fmt.Errorf("dbos: no workflow %s", name)
	}
	h, err := dbos.RunWorkflow(e.ctx, wf, arg, dbos.WithWorkflowID(id))
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.handles[id] = h
	e.mu.Unlock()
	return nil
}

// RaiseEvent implements workload.Engine: the DBOS workloads raise none.
func (e *dbosEngine) RaiseEvent(context.Context, string, string, any) error {
	return errors.New("dbos: the mixed workload is not implemented for dbos")
}

// Wait implements workload.Waiter with the handle's GetResult.
func (e *dbosEngine) Wait(ctx context.Context, id string) error {
	e.mu.Lock()
	h, ok := e.handles[id]
	delete(e.handles, id)
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("dbos: no handle of %s", id)
	}
	var opts []dbos.GetResultOption
	if d, ok := ctx.Deadline(); ok {
		opts = append(opts, dbos.WithHandleTimeout(time.Until(d)))
	}
	_, err := h.GetResult(opts...)
	return err
}

// Finished implements workload.Engine: no workflow is PENDING or ENQUEUED.
func (e *dbosEngine) Finished(ctx context.Context) (bool, error) {
	var n int64
	err := e.pool.QueryRow(ctx, `SELECT COUNT(*) FROM `+e.table+` WHERE status IN ('PENDING', 'ENQUEUED')`).Scan(&n)
	return n == 0, err
}

// Outcomes implements workload.Engine: status and completed_at (epoch ms;
// updated_at where it is missing) of every workflow.
func (e *dbosEngine) Outcomes(ctx context.Context) (map[string]workload.Outcome, error) {
	rows, err := e.pool.Query(ctx, `SELECT workflow_uuid, status, COALESCE(completed_at, updated_at) FROM `+e.table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]workload.Outcome{}
	for rows.Next() {
		var id, status string
		var at int64
		if err := rows.Scan(&id, &status, &at); err != nil {
			return nil, err
		}
		out[id] = workload.Outcome{Completed: status == "SUCCESS", Status: status, CompletedAt: time.UnixMilli(at)}
	}
	return out, rows.Err()
}

// Err implements workload.Engine.
func (e *dbosEngine) Err() error { return nil }
