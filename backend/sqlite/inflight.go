package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// InFlight implements backend.InFlightReader.
func (b *Backend) InFlight(ctx context.Context, instanceID string) (*backend.InFlight, error) {
	var out *backend.InFlight
	err := b.read(ctx, "in-flight work", func(d *dbtx) error {
		at := b.now(time.Time{})
		f := &backend.InFlight{InstanceID: instanceID, Now: at}
		var attempt, completed, expires int64
		err := d.queryRow(`SELECT step_attempt, completed_attempt, lock_owner, lock_expires_at FROM instances WHERE id = ?`,
			instanceID).Scan(&attempt, &completed, &f.Step.Owner, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("instance %q: %w", instanceID, backend.ErrInstanceNotFound)
		}
		if err != nil {
			return err
		}
		f.Step.Attempt, f.Step.Deliveries, f.Step.ExpiresAt = attempt, int(attempt-completed), rules.FromNanos(expires)
		var next sql.NullInt64
		if err := d.queryRow(`SELECT COUNT(*), MIN(visible_at) FROM inbox WHERE instance_id = ?`, instanceID).
			Scan(&f.Messages, &next); err != nil {
			return err
		}
		f.NextMessageAt = rules.FromNanos(next.Int64)
		rows, err := d.query(`SELECT id, execution_id, task_id, name, options, attempt, prior_attempts, lease_owner,
				lease_expires_at, claimed_at, visible_at, created_at, started_attempt
			FROM activity_tasks WHERE instance_id = ? ORDER BY created_at, task_id, id`, instanceID)
		if err != nil {
			return err
		}
		for rows.Next() {
			ts := &backend.TaskState{}
			var opts string
			var leaseExp, claimed, visible, created int64
			if err := rows.Scan(&ts.ID, &ts.ExecutionID, &ts.TaskID, &ts.Name, &opts, &ts.Attempt, &ts.PriorAttempts,
				&ts.Owner, &leaseExp, &claimed, &visible, &created, &ts.StartedAttempt); err != nil {
				_ = rows.Close()
				return err
			}
			if err := json.Unmarshal([]byte(opts), &ts.Options); err != nil {
				_ = rows.Close()
				return fmt.Errorf("activity task %q: options: %w", ts.ID, err)
			}
			ts.ExpiresAt, ts.ClaimedAt, ts.ScheduledAt = rules.FromNanos(leaseExp), rules.FromNanos(claimed), rules.FromNanos(created)
			if visible == parkedAt {
				ts.Parked = true
			} else {
				ts.VisibleAt = rules.FromNanos(visible)
			}
			f.Tasks = append(f.Tasks, ts)
		}
		if err := closeRows(rows); err != nil {
			return err
		}
		out = f
		return nil
	})
	return out, err
}

// UpsertWorker implements backend.WorkerRegistry.
func (b *Backend) UpsertWorker(ctx context.Context, p *backend.UpsertWorkerParams) error {
	const op = "upsert worker"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	w := p.Info
	lists := make([]string, 3)
	for i, l := range [][]string{w.Orchestrations, w.Activities, w.Entities} {
		if l == nil {
			l = []string{}
		}
		data, err := json.Marshal(l)
		if err != nil {
			return b.fail(op, err)
		}
		lists[i] = string(data)
	}
	return b.write(ctx, op, p.Now, len(lists[0])+len(lists[1])+len(lists[2])+smallOp, func(t *txn) error {
		n := t.now.UnixNano()
		expires, gone := rules.HeartbeatTimes(n, p)
		_, err := t.exec(`INSERT INTO workers (`+rules.WorkerColumns+`)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15, ?16) `+rules.UpsertWorkerUpdate,
			w.ID, w.Name, w.Host, w.PID, w.Version, lists[0], lists[1], lists[2],
			w.OrchestrationSlots, w.OrchestrationBusy, w.ActivitySlots, w.ActivityBusy, boolInt(w.Stopping),
			n, expires, gone)
		return err
	})
}

// ListWorkers implements backend.WorkerRegistry.
func (b *Backend) ListWorkers(ctx context.Context, p *backend.ListWorkersParams) (*backend.WorkerList, error) {
	out := &backend.WorkerList{}
	if p != nil {
		out.Now = p.Now
	}
	out.Now = b.now(out.Now)
	err := b.read(ctx, "list workers", func(d *dbtx) error {
		out.Workers = out.Workers[:0]
		rows, err := d.query(`SELECT id, name, host, pid, version, orchestrations, activities, entities,
				orchestration_slots, orchestration_busy, activity_slots, activity_busy, stopping,
				started_at, heartbeat_at, expires_at, gone_at
			FROM workers ORDER BY heartbeat_at DESC, id`)
		if err != nil {
			return err
		}
		for rows.Next() {
			w := &backend.WorkerInfo{}
			var lists [3]string
			var stopping int
			var started, beat, expires, gone int64
			if err := rows.Scan(&w.ID, &w.Name, &w.Host, &w.PID, &w.Version, &lists[0], &lists[1], &lists[2],
				&w.OrchestrationSlots, &w.OrchestrationBusy, &w.ActivitySlots, &w.ActivityBusy, &stopping,
				&started, &beat, &expires, &gone); err != nil {
				_ = rows.Close()
				return err
			}
			for i, dst := range []*[]string{&w.Orchestrations, &w.Activities, &w.Entities} {
				if err := json.Unmarshal([]byte(lists[i]), dst); err != nil {
					_ = rows.Close()
					return fmt.Errorf("worker %q: registered names: %w", w.ID, err)
				}
			}
			w.Stopping = stopping != 0
			w.StartedAt, w.HeartbeatAt, w.ExpiresAt, w.GoneAt = rules.FromNanos(started), rules.FromNanos(beat), rules.FromNanos(expires), rules.FromNanos(gone)
			out.Workers = append(out.Workers, w)
		}
		return closeRows(rows)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
