package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/postgres"
)

// TestStepReadPlans checks the plans of the statements a claim reads its
// steps' messages and histories with. pgx caches prepared statements, and
// PostgreSQL then settles on one generic plan per connection, made while
// the tables may be new and nearly empty and kept after they have grown.
// The plan must therefore read each claimed instance through the primary
// key or inbox index whatever the table's size and statistics: a plan that
// scans the whole table (a hash join over a sequential scan, which a plain
// join gets on a small table) makes every claim read every row.
func TestStepReadPlans(t *testing.T) {
	url := testURL(t)
	schema := freshSchema(t, url)
	b := open(t, url, schema, nil)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	tables := map[string]string{"history": schema + ".history", "inbox": schema + ".inbox"}
	for _, stage := range []string{"empty", "grown"} {
		if stage == "grown" {
			// Rows of many instances, analyzed, as after a while in use.
			for _, s := range []string{
				`INSERT INTO {s}.history (instance_id, seq, event)
					SELECT 'i' || i, n, '\x00'::bytea FROM generate_series(1, 2000) i, generate_series(1, 10) n`,
				`INSERT INTO {s}.inbox (id, instance_id, execution_id, event, control, visible_at, sort_at, created_at)
					SELECT 'm' || i, 'i' || i, 'e', '\x00'::bytea, false, 0, i, i FROM generate_series(1, 2000) i`,
				`ANALYZE {s}.history`, `ANALYZE {s}.inbox`,
			} {
				if _, err := conn.Exec(ctx, strings.ReplaceAll(s, "{s}", schema)); err != nil {
					t.Fatal(err)
				}
			}
		}
		for name, q := range postgres.StepReadQueries(b) {
			t.Run(stage+"/"+name, func(t *testing.T) {
				plan := explainGeneric(t, conn, q[0], q[1])
				table, _, _ := strings.Cut(name, "/")
				if strings.Contains(plan, "Seq Scan on "+table) || !strings.Contains(plan, "Index") {
					t.Errorf("the generic plan of the %s read scans %s instead of using an index:\n%s", name, tables[table], plan)
				}
			})
		}
	}
}

// explainGeneric prepares sql on conn and returns the plan EXPLAIN EXECUTE
// shows for the literal arguments args: the generic plan, under
// plan_cache_mode = force_generic_plan.
func explainGeneric(t *testing.T, conn *pgx.Conn, sql, args string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "PREPARE step_read AS "+sql); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.Exec(ctx, "DEALLOCATE step_read") }()
	rows, err := conn.Query(ctx, "EXPLAIN EXECUTE step_read("+args+")")
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestStepReadsUseGenericPlans checks that the statement cache serves the
// statements of a claim and a step with their generic plans rather than
// PostgreSQL planning them on every execution (which it does for a
// statement whose generic plan it estimates dearer than a custom one, as
// for the array forms of the reads with one element). It steps an
// instance 30 times on one connection and reads the plan counts of its
// prepared statements.
func TestStepReadsUseGenericPlans(t *testing.T) {
	url := testURL(t)
	be := open(t, url, freshSchema(t, url), &postgres.Options{MaxConns: 1})
	s := stepper{t, t.Context()}
	create(t, be, "i1")
	for i := range 30 {
		s.step(be, fmt.Sprint("s", i), backend.StatusRunning)
		s.raise(be, fmt.Sprint("m", i))
	}
	rows, err := be.Pool().Query(s.ctx, `SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements`)
	if err != nil {
		t.Fatal(err)
	}
	type counts struct{ generic, custom int64 }
	plans := map[string]counts{}
	var stmt string
	var c counts
	if _, err := pgx.ForEachRow(rows, []any{&stmt, &c.generic, &c.custom}, func() error {
		plans[stmt] = c
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{".history h", ".inbox m"} {
		found := false
		for stmt, c := range plans {
			if !strings.HasPrefix(strings.TrimSpace(stmt), "SELECT") || !strings.Contains(stmt, table) {
				continue
			}
			found = true
			// PostgreSQL makes five custom plans before it weighs the
			// generic one.
			if c.custom > 5 || c.generic < 20 {
				t.Errorf("the claim's read of %s was planned %d times (generic plan used %d times): %s",
					strings.Fields(table)[0][1:], c.custom, c.generic, stmt)
			}
		}
		if !found {
			t.Errorf("no prepared read of %s among %d statements", table, len(plans))
		}
	}
}
