package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
	"github.com/durohq/duro/internal/fault"
)

// CompleteOrchestrationStepClaim implements backend.StepActivityClaimer
// (and, claiming nothing, CompleteOrchestrationStep): all effects commit in
// one transaction (O1), in this order: fencing check with the instance row
// and lease release, consumed messages, history, activity tasks, messages,
// child instances, rewound children, continue-as-new, and the clean-up of a
// terminal instance's inbox and tasks. Messages to instances that do not
// exist or have finished are dropped; since the instance row is written
// before any message, a message the step sends to its own instance (a
// timer, a failed rewind of a child) is dropped only if the step itself
// finishes the instance. With ContinueAsNew the status is ContinuedAsNew
// whatever p.Status says.
//
// After the step's effects, in the same write operation, it claims up to
// max of the tasks the step inserted that are still there (a step that
// finishes its instance removes them).
func (b *Backend) CompleteOrchestrationStepClaim(ctx context.Context, p *backend.CompleteOrchestrationStepParams,
	claim *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	const op = "complete orchestration step"
	if err := rules.ValidateStep(p, claim, max); err != nil {
		return nil, b.fail(op, err)
	}
	// Encoding (and checking) every payload happens here, in the caller's
	// goroutine, not in the writer's.
	enc, err := encodeStep(p)
	if err != nil {
		return nil, b.fail(op, err)
	}
	if max > len(p.ActivityTasks) {
		max = len(p.ActivityTasks)
	}
	var claimed []*backend.ActivityWorkItem
	err = b.write(ctx, op, p.Now, enc.size, func(t *txn) error {
		claimed = claimed[:0]
		err := t.updateInstance(p, enc)
		if errors.Is(err, errStepCommitted) {
			// A repeat of a step this delivery committed (its reply was
			// lost): nothing is applied again, and the claims it made are
			// handed over now rather than left to lapse.
			if max > 0 {
				return t.claimsOfStep(p.ActivityTasks, claim.Owner, max, func(wi *backend.ActivityWorkItem) {
					claimed = append(claimed, wi)
				})
			}
			return nil
		}
		if err != nil {
			return err
		}
		if err := t.consume(p.InstanceID, p.ConsumedMessageIDs); err != nil {
			return err
		}
		if err := t.appendHistory(p.InstanceID, enc.events); err != nil {
			return err
		}
		if err := t.updateWindow(p.InstanceID, p.Window); err != nil {
			return err
		}
		inserted, err := t.insertTasks(p.ActivityTasks, enc.opts)
		if err != nil {
			return err
		}
		if err := rules.StepRelations(t, p, func(i int, m *backend.Message) error {
			return t.deliver(m, enc.msgs[i])
		}); err != nil {
			return err
		}
		// The lease is free again: messages that arrived during the step,
		// and whatever the step sent, are claimable.
		t.work |= workSteps
		waiting := 0 // inserted tasks left for the activity loops
		for _, in := range inserted {
			if in {
				waiting++
			}
		}
		if max > 0 {
			err := t.claimInserted(p.ActivityTasks, inserted, claim, max, func(wi *backend.ActivityWorkItem) {
				claimed = append(claimed, wi)
			})
			if err != nil {
				return err
			}
			waiting -= len(claimed)
		}
		if waiting > 0 {
			t.work |= workTasks
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if rules.Finishes(p) {
		b.finished.Notify(p.InstanceID)
	}
	// Eager claims need no sync: a worker marks an at-most-once delivery
	// started (StartActivity, which syncs) before its code runs.
	// Tests lose the reply here, after the step has committed.
	if err := fault.Fail(fault.StepReplyLost, p.InstanceID); err != nil {
		return nil, b.fail(op, err)
	}
	return claimed, nil
}

// claimInserted claims, for claim.Owner, up to max of the tasks whose
// inserted flag is set and that still exist unleased, in order. The leases
// run from claim.Now, or from the store's clock now when it is zero: never
// from the step's Now, which is the worker's clock. A claimed task's
// created_at is set to its claim time too, so claimsOfStep can tell the
// claims a commit made (claimed_at = created_at) from later ones.
func (t *txn) claimInserted(tasks []*backend.ActivityTask, inserted []bool, claim *backend.ClaimParams, max int,
	found func(wi *backend.ActivityWorkItem)) error {
	at := nowOr(t.clock, claim.Now)
	n := at.UnixNano()
	expires := at.Add(claim.LeaseDuration)
	for i, a := range tasks {
		if max == 0 {
			break
		}
		if !inserted[i] {
			continue
		}
		var attempt int
		err := t.queryRow(`UPDATE activity_tasks SET attempt = attempt + 1, lease_owner = ?,
			lease_expires_at = ?, claimed_at = ?, created_at = ? WHERE id = ? AND lease_expires_at <= ? RETURNING attempt`,
			claim.Owner, expires.UnixNano(), n, n, a.ID, n).Scan(&attempt)
		if errors.Is(err, sql.ErrNoRows) {
			continue // removed by the step's own end
		}
		if err != nil {
			return err
		}
		task := *a
		found(&backend.ActivityWorkItem{Task: &task, Attempt: attempt, ScheduledAt: t.now, LeaseExpiresAt: expires})
		fault.Point(fault.ActivityClaimBeforeCommit)
		max--
	}
	return nil
}

// claimsOfStep finds, for a repeated commit, the claims that the commit
// made for owner (see claimInserted) and that are still live: up to max of
// the tasks, in order, claimed in the transaction that inserted them
// (claimed_at = created_at) by their first delivery, leased to owner.
func (t *txn) claimsOfStep(tasks []*backend.ActivityTask, owner string, max int, found func(wi *backend.ActivityWorkItem)) error {
	n := t.now.UnixNano()
	for _, a := range tasks {
		if max == 0 {
			break
		}
		var attempt int
		var expires, created int64
		err := t.queryRow(`SELECT attempt, lease_expires_at, created_at FROM activity_tasks
			WHERE id = ? AND lease_owner = ? AND claimed_at = created_at AND lease_expires_at > ?`,
			a.ID, owner, n).Scan(&attempt, &expires, &created)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return err
		}
		wi := rules.ClaimOfCommit(a, attempt, created, expires)
		if wi == nil {
			continue
		}
		found(wi)
		max--
	}
	return nil
}

// encodedStep holds the encoded payloads of a step.
type encodedStep struct {
	events        [][]byte
	msgs          [][]byte
	opts          []string
	failure, susp sql.NullString
	resumes       sql.NullString // NULL keeps the stored resume outcomes
	size          int            // bytes, roughly, for the batch bound
}

func encodeStep(p *backend.CompleteOrchestrationStepParams) (*encodedStep, error) {
	enc := &encodedStep{size: smallOp}
	var err error
	if enc.failure, err = encodeFailure(p.Failure); err != nil {
		return nil, fmt.Errorf("instance %q: failure: %w", p.InstanceID, err)
	}
	if p.Status == backend.StatusSuspended && p.ContinueAsNew == nil {
		if enc.susp, err = encodeSuspension(p.Suspension); err != nil {
			return nil, fmt.Errorf("instance %q: suspension: %w", p.InstanceID, err)
		}
	}
	if p.ResumeOutcomes != nil {
		data, err := json.Marshal(p.ResumeOutcomes)
		if err != nil {
			return nil, fmt.Errorf("instance %q: resume outcomes: %w", p.InstanceID, err)
		}
		enc.resumes = sql.NullString{String: string(data), Valid: true}
	}
	enc.size += len(p.Output) + len(p.CustomStatus) + len(enc.failure.String) + len(enc.susp.String) + len(enc.resumes.String)
	enc.events = make([][]byte, len(p.NewEvents))
	for i, e := range p.NewEvents {
		if enc.events[i], err = backend.EncodeEvent(e); err != nil {
			return nil, fmt.Errorf("instance %q: new event %d: %w", p.InstanceID, i, err)
		}
		enc.size += len(enc.events[i]) + 64
	}
	enc.msgs = make([][]byte, len(p.Messages))
	for i, m := range p.Messages {
		if enc.msgs[i], err = backend.EncodeEvent(m.Event); err != nil {
			return nil, fmt.Errorf("instance %q: message %q: %w", p.InstanceID, m.ID, err)
		}
		enc.size += len(enc.msgs[i]) + 128
	}
	if enc.opts, err = rules.TaskOptions(p.ActivityTasks); err != nil {
		return nil, fmt.Errorf("instance %q: %w", p.InstanceID, err)
	}
	for i, a := range p.ActivityTasks {
		enc.size += len(a.Input) + len(enc.opts[i]) + 128
	}
	enc.size += 64 * len(p.ConsumedMessageIDs)
	if p.Window != nil {
		for _, r := range p.Window.Add {
			enc.size += len(r.ID) + 64
		}
	}
	return enc, nil
}

// consume deletes the consumed messages from the instance's inbox and
// remembers their IDs for the current execution. A few messages (the usual
// step) take two simple statements each; more go in as one JSON array, in
// two statements in all.
func (t *txn) consume(id string, msgIDs []string) error {
	if len(msgIDs) == 0 {
		return nil
	}
	t.touched[id] = struct{}{}
	if len(msgIDs) <= 4 {
		for _, mid := range msgIDs {
			res, err := t.exec(`DELETE FROM inbox WHERE id = ? AND instance_id = ?`, mid, id)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				continue
			}
			if _, err := t.exec(`INSERT INTO inbox_consumed (instance_id, id) VALUES (?, ?) ON CONFLICT DO NOTHING`,
				id, mid); err != nil {
				return err
			}
		}
		return nil
	}
	ids, err := json.Marshal(msgIDs)
	if err != nil {
		return err
	}
	if _, err := t.exec(`INSERT INTO inbox_consumed (instance_id, id)
		SELECT instance_id, id FROM inbox WHERE id IN (SELECT value FROM json_each(?1)) AND +instance_id = ?2
		ON CONFLICT DO NOTHING`, ids, id); err != nil {
		return err
	}
	_, err = t.exec(`DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(?1)) AND +instance_id = ?2`, ids, id)
	return err
}

// appendHistory appends encoded events after the last one, one statement
// each.
func (t *txn) appendHistory(id string, events [][]byte) error {
	if len(events) == 0 {
		return nil
	}
	for _, data := range events {
		if _, err := t.exec(appendHistoryQuery, id, data); err != nil {
			return err
		}
	}
	return nil
}

const appendHistoryQuery = `INSERT INTO history (instance_id, seq, event)
	VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM history WHERE instance_id = ?1), ?2)`

// errStepCommitted is updateInstance's answer to a repeat of a step that
// its delivery committed.
var errStepCommitted = errors.New("step already committed by this delivery")

// updateInstance checks the step's fencing token and, in the same
// statement, writes the step's status, payloads and suspension (kept only
// with StatusSuspended) and releases the lease, marking the delivery's step
// completed (completed_attempt and committed_steps, see
// backend.RepeatsCommittedStep); errStepCommitted if this delivery has
// committed the step already, ErrLeaseLost if the token is stale. The
// instance is touched: its ready summary depends on whether it is Suspended.
func (t *txn) updateInstance(p *backend.CompleteOrchestrationStepParams, enc *encodedStep) error {
	status := p.Status
	if p.ContinueAsNew != nil {
		status = backend.StatusContinuedAsNew
	}
	var completed int64
	if status.IsTerminal() {
		completed = t.now.UnixNano()
	}
	res, err := t.exec(`UPDATE instances SET status = ?, output = ?, failure = ?, custom_status = ?, suspension = ?,
		updated_at = ?, completed_at = ?, lock_owner = '', lock_expires_at = 0, completed_attempt = step_attempt,
		committed_steps = `+commitStepsUpdate+`,
		resume_outcomes = COALESCE(?, resume_outcomes)
		WHERE id = ? AND execution_id = ? AND step_attempt = ? AND completed_attempt < step_attempt`,
		status, p.Output, enc.failure, p.CustomStatus, enc.susp, t.now.UnixNano(), completed, enc.resumes,
		p.InstanceID, p.ExecutionID, p.Attempt)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		var done, bits int64
		var exec string
		err := t.queryRow(`SELECT completed_attempt, committed_steps, execution_id FROM instances WHERE id = ?`,
			p.InstanceID).Scan(&done, &bits, &exec)
		if err == nil && backend.RepeatsCommittedStep(p, exec, done, bits) {
			return errStepCommitted
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := t.fence(p.InstanceID, p.ExecutionID, p.Attempt); err != nil {
			return err
		}
		return fmt.Errorf("instance %q: attempt %d: step not applied", p.InstanceID, p.Attempt)
	}
	t.touched[p.InstanceID] = struct{}{}
	return nil
}

// commitStepsUpdate is the new committed_steps of a committing delivery:
// the bits shifted by the deliveries since the last commit, and bit 0 set
// (backend.CommittedStepsWindow bits are kept).
var commitStepsUpdate = fmt.Sprintf(`CASE WHEN step_attempt - completed_attempt >= %[1]d THEN 1
	ELSE ((committed_steps << (step_attempt - completed_attempt)) & %[2]d) | 1 END`,
	backend.CommittedStepsWindow, uint64(1)<<backend.CommittedStepsWindow-1)

// insertTasks enqueues activity tasks with their encoded options; IDs that
// exist are ignored. A task's attempt number starts at PriorAttempts, so
// its first claim returns PriorAttempts+1. It reports which tasks it
// inserted.
func (t *txn) insertTasks(tasks []*backend.ActivityTask, opts []string) ([]bool, error) {
	if len(tasks) == 0 {
		return nil, nil
	}
	inserted := make([]bool, len(tasks))
	for i, a := range tasks {
		res, err := t.exec(insertTaskQuery, a.ID, a.InstanceID, a.ExecutionID, a.TaskID, a.Name, a.Input, opts[i],
			t.now.UnixNano(), a.PriorAttempts)
		if err != nil {
			return nil, fmt.Errorf("activity task %q: %w", a.ID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("activity task %q: %w", a.ID, err)
		}
		inserted[i] = n > 0
	}
	return inserted, nil
}

const insertTaskQuery = `INSERT INTO activity_tasks
	(id, instance_id, execution_id, task_id, name, input, options, created_at, attempt, prior_attempts)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?9, ?9) ON CONFLICT (id) DO NOTHING`

// parkedAt is the visible_at of a parked task: one whose instance finished
// while a delivery held it. It is never claimed again; the delivery may
// renew its lease and complete it (its result goes to the history as a
// LateResult event).
const parkedAt = math.MaxInt64

// RenewOrchestrationLease implements backend.Backend. A lapsed lease that
// nobody claimed since may be renewed; a delivery that completed its step or
// was superseded gets ErrLeaseLost.
func (b *Backend) RenewOrchestrationLease(ctx context.Context, p *backend.RenewLeaseParams) error {
	const op = "renew orchestration lease"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	return b.write(ctx, op, p.Now, 0, func(t *txn) error {
		if err := t.fence(p.ID, p.ExecutionID, p.Attempt); err != nil {
			return err
		}
		_, err := t.exec(`UPDATE instances SET lock_expires_at = ? WHERE id = ?`,
			t.now.Add(p.LeaseDuration).UnixNano(), p.ID)
		return err
	})
}

// AbandonOrchestrationStep implements backend.Backend. The instance is
// claimable again p.RetryAfter after the abandon by the store's clock when
// it is positive, else at p.RetryAt (at once when zero), with Attempt+1.
func (b *Backend) AbandonOrchestrationStep(ctx context.Context, p *backend.AbandonParams) error {
	const op = "abandon orchestration step"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	return b.write(ctx, op, time.Time{}, 0, func(t *txn) error {
		if err := t.fence(p.ID, p.ExecutionID, p.Attempt); err != nil {
			return err
		}
		t.work |= workSteps
		_, err := t.exec(`UPDATE instances SET lock_owner = '', lock_expires_at = ? WHERE id = ?`,
			rules.Nanos(retryAt(t, p)), p.ID)
		return err
	})
}

// retryAt is when work abandoned with p is visible again: RetryAfter from
// the transaction's time (the store's clock: an abandon takes no Now) if
// it is positive, else RetryAt.
func retryAt(t *txn, p *backend.AbandonParams) time.Time {
	if p.RetryAfter > 0 {
		return t.now.Add(p.RetryAfter)
	}
	return p.RetryAt
}
