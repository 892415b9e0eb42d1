package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// InFlight implements backend.InFlightReader. It reads in one read-only
// REPEATABLE READ transaction, so the step lease, the inbox and the tasks
// are of one moment, the database clock's.
func (b *Backend) InFlight(ctx context.Context, instanceID string) (*backend.InFlight, error) {
	const op = "in-flight work"
	if b.closed.Load() {
		return nil, b.fail(op, errClosed)
	}
	var out *backend.InFlight
	err := pgx.BeginTxFunc(ctx, b.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		f := &backend.InFlight{InstanceID: instanceID}
		var at, attempt, completed, expires int64
		err := tx.QueryRow(ctx, b.q(`SELECT `+dbNow+`, step_attempt, completed_attempt, lock_owner, lock_expires_at
			FROM {s}.instances WHERE id = $1`), instanceID).Scan(&at, &attempt, &completed, &f.Step.Owner, &expires)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("instance %q: %w", instanceID, backend.ErrInstanceNotFound)
		}
		if err != nil {
			return err
		}
		f.Now = rules.FromNanos(at)
		f.Step.Attempt, f.Step.Deliveries, f.Step.ExpiresAt = attempt, int(attempt-completed), rules.FromNanos(expires)
		var next *int64
		if err := tx.QueryRow(ctx, b.q(`SELECT count(*), min(visible_at) FROM {s}.inbox WHERE instance_id = $1`),
			instanceID).Scan(&f.Messages, &next); err != nil {
			return err
		}
		f.NextMessageAt = rules.FromNanos(deref(next))
		rows, err := tx.Query(ctx, b.q(`SELECT id, execution_id, task_id, name, options, attempt, prior_attempts,
				lease_owner, lease_expires_at, claimed_at, visible_at, created_at, started_attempt
			FROM {s}.activity_tasks WHERE instance_id = $1 ORDER BY created_at, task_id, id`), instanceID)
		if err != nil {
			return err
		}
		var (
			ts                                  *backend.TaskState
			opts                                string
			taskID, att, prior, started         int64
			leaseExp, claimed, visible, created int64
		)
		ts = &backend.TaskState{}
		_, err = pgx.ForEachRow(rows, []any{&ts.ID, &ts.ExecutionID, &taskID, &ts.Name, &opts, &att, &prior,
			&ts.Owner, &leaseExp, &claimed, &visible, &created, &started}, func() error {
			t := *ts
			if err := json.Unmarshal([]byte(opts), &t.Options); err != nil {
				return fmt.Errorf("activity task %q: options: %w", t.ID, err)
			}
			t.TaskID, t.Attempt, t.PriorAttempts, t.StartedAttempt = int(taskID), int(att), int(prior), int(started)
			t.ExpiresAt, t.ClaimedAt, t.ScheduledAt = rules.FromNanos(leaseExp), rules.FromNanos(claimed), rules.FromNanos(created)
			if visible == parkedAt {
				t.Parked = true
			} else {
				t.VisibleAt = rules.FromNanos(visible)
			}
			f.Tasks = append(f.Tasks, &t)
			return nil
		})
		if err != nil {
			return err
		}
		out = f
		return nil
	})
	if err != nil {
		return nil, b.fail(op, err)
	}
	return out, nil
}

// UpsertWorker implements backend.WorkerRegistry.
func (b *Backend) UpsertWorker(ctx context.Context, p *backend.UpsertWorkerParams) error {
	const op = "upsert worker"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	w := p.Info
	list := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	return b.write(ctx, op, p.Now, func(t *txn) error {
		n, err := t.mustNow()
		if err != nil {
			return err
		}
		expires, gone := rules.HeartbeatTimes(n, p)
		_, err = t.exec(`INSERT INTO {s}.workers (`+rules.WorkerColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, $16) `+rules.UpsertWorkerUpdate,
			w.ID, w.Name, w.Host, int64(w.PID), w.Version, list(w.Orchestrations), list(w.Activities), list(w.Entities),
			w.OrchestrationSlots, w.OrchestrationBusy, w.ActivitySlots, w.ActivityBusy, w.Stopping,
			n, expires, gone)
		return err
	})
}

// ListWorkers implements backend.WorkerRegistry.
func (b *Backend) ListWorkers(ctx context.Context, p *backend.ListWorkersParams) (*backend.WorkerList, error) {
	var at time.Time
	if p != nil {
		at = p.Now
	}
	out := &backend.WorkerList{}
	err := b.read(ctx, "list workers", func(q querier) error {
		out.Workers = out.Workers[:0]
		rows, err := q.Query(ctx, b.q(`SELECT `+clock("$1")+`, id, name, host, pid, version, orchestrations, activities,
				entities, orchestration_slots, orchestration_busy, activity_slots, activity_busy, stopping,
				started_at, heartbeat_at, expires_at, gone_at
			FROM (SELECT 1) AS one LEFT JOIN {s}.workers ON true ORDER BY heartbeat_at DESC, id`), rules.Nanos(at))
		if err != nil {
			return err
		}
		var (
			now                           int64
			id, name, host, version       *string
			pid                           *int64
			orchs, acts, ents             []string
			oSlots, oBusy, aSlots, aBusy  *int32
			stopping                      *bool
			started, beat, expires, goneA *int64
		)
		_, err = pgx.ForEachRow(rows, []any{&now, &id, &name, &host, &pid, &version, &orchs, &acts, &ents,
			&oSlots, &oBusy, &aSlots, &aBusy, &stopping, &started, &beat, &expires, &goneA}, func() error {
			out.Now = rules.FromNanos(now)
			if id == nil {
				return nil // no worker: the row only carries the clock
			}
			out.Workers = append(out.Workers, &backend.WorkerInfo{
				ID: *id, Name: deref(name), Host: deref(host), PID: int(deref(pid)), Version: deref(version),
				Orchestrations: orchs, Activities: acts, Entities: ents,
				OrchestrationSlots: int(deref(oSlots)), OrchestrationBusy: int(deref(oBusy)),
				ActivitySlots: int(deref(aSlots)), ActivityBusy: int(deref(aBusy)), Stopping: deref(stopping),
				StartedAt: rules.FromNanos(deref(started)), HeartbeatAt: rules.FromNanos(deref(beat)),
				ExpiresAt: rules.FromNanos(deref(expires)), GoneAt: rules.FromNanos(deref(goneA)),
			})
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
