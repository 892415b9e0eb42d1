package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
	"github.com/durohq/duro/internal/fault"
)

// stepLockSet is every instance a step may write: its own, the targets of
// its messages, its children and the parents they may report to. The
// transaction locks them all first, in ID order.
func stepLockSet(p *backend.CompleteOrchestrationStepParams) []string {
	ids := []string{p.InstanceID}
	for _, m := range p.Messages {
		ids = append(ids, m.InstanceID)
	}
	for _, c := range p.StartInstances {
		ids = append(ids, c.ID)
		if c.Parent != nil {
			ids = append(ids, c.Parent.InstanceID)
		}
	}
	for _, c := range p.RewindInstances {
		ids = append(ids, c.InstanceID, c.Parent.InstanceID)
	}
	return ids
}

// CompleteOrchestrationStepClaim implements backend.StepActivityClaimer
// (and, claiming nothing, CompleteOrchestrationStep): all effects commit in
// one transaction (O1), in this order: row locks on every instance the step
// writes (in ID order) and the fencing check, consumed messages, history,
// instance row and lease release, activity tasks, child instances (before
// the messages, which may address them), messages, rewound children,
// continue-as-new, and the clean-up of a terminal instance's inbox and
// tasks. Messages to instances that do not
// exist or have finished are dropped; since the instance row is written
// before any message, a message the step sends to its own instance (a
// timer, a failed rewind of a child) is dropped only if the step itself
// finishes the instance. With ContinueAsNew the status is ContinuedAsNew
// whatever p.Status says.
//
// The claimed tasks are inserted already leased, in the step's round trip,
// from claim.Now, or when it is zero from the database clock as the task
// insert starts (never from p.Now, the worker's clock).
// A step that continues as new or ends its instance claims nothing (its
// tasks are removed with it).
func (b *Backend) CompleteOrchestrationStepClaim(ctx context.Context, p *backend.CompleteOrchestrationStepParams,
	claim *backend.ClaimParams, max int) ([]*backend.ActivityWorkItem, error) {
	const op = "complete orchestration step"
	if err := rules.ValidateStep(p, claim, max); err != nil {
		return nil, b.fail(op, err)
	}
	if p.ContinueAsNew != nil || p.Status.IsTerminal() {
		max = 0
	}
	var claimed []*backend.ActivityWorkItem
	var err error
	fast := oneTripStep(p)
	if fast {
		err = b.write(ctx, op, p.Now, func(t *txn) error {
			ec := eagerClaim{claim: claim, max: max}
			if err := t.applyStep(p, stepWrite{fence: true, flush: true, final: true}, p.Messages, &ec); err != nil {
				if isStepFenced(err) {
					return errStepFenced
				}
				return err
			}
			claimed = ec.claimed
			return nil
		})
		// A fenced step commits nothing; the full path below says why,
		// and hands over the claims of a repeated commit.
		fast = !errors.Is(err, errStepFenced)
	}
	if !fast {
		err = b.write(ctx, op, p.Now, func(t *txn) error {
			claimed = claimed[:0]
			st, err := t.lock(stepLockSet(p)...)
			if err != nil {
				return err
			}
			var f *stepFence
			if r := st[p.InstanceID]; r != nil {
				f = &r.fence
			}
			if err := f.Check(p.InstanceID, p.ExecutionID, p.Attempt); err != nil {
				if f == nil {
					return err
				}
				repeat, rerr := t.repeatsCommittedStep(p, f)
				switch {
				case rerr != nil:
					return rerr
				case !repeat:
					return err
				case max == 0:
					return nil
				}
				// A repeat of a step this delivery committed (its reply was
				// lost): nothing is applied again, and the claims it made are
				// handed over now rather than left to lapse.
				claimed, rerr = t.claimsOfStep(p.ActivityTasks, claim.Owner, max)
				return rerr
			}
			if _, err := t.mustNow(); err != nil {
				return err
			}
			// A step that starts, rewinds and ends nothing (most steps) is
			// written in one round trip after the locks, with the COMMIT:
			// its own changes, its instance's ready summary, and its
			// messages.
			simple := simpleStep(p)
			var msgs []*backend.Message
			if simple {
				msgs = p.Messages
			}
			ec := eagerClaim{claim: claim, max: max}
			if err := t.applyStep(p, stepWrite{flush: simple, final: simple}, msgs, &ec); err != nil {
				return err
			}
			claimed = ec.claimed
			if simple {
				return nil
			}
			return rules.StepRelations(t, p, func(_ int, m *backend.Message) error { return t.deliver(m) })
		})
	}
	if err != nil {
		return nil, err
	}
	b.stepCommitted(p)
	// Tests lose the reply here, after the step has committed.
	if err := fault.Fail(fault.StepReplyLost, p.InstanceID); err != nil {
		return nil, b.fail(op, err)
	}
	return claimed, nil
}

// stepCommitted is what follows the commit of step p: a history replaced
// or done with leaves the cache, and a finish wakes its waiters.
func (b *Backend) stepCommitted(p *backend.CompleteOrchestrationStepParams) {
	if p.ContinueAsNew != nil || p.Status.IsTerminal() {
		b.hist.Drop(p.InstanceID)
	}
	if rules.Finishes(p) {
		b.signalFinish(p.InstanceID)
	}
}

// simpleStep reports whether a step starts, rewinds and ends nothing (most
// steps): its writes are its own instance's and its messages'.
func simpleStep(p *backend.CompleteOrchestrationStepParams) bool {
	return len(p.StartInstances) == 0 && len(p.RewindInstances) == 0 && p.ContinueAsNew == nil &&
		!p.Status.IsTerminal()
}

// oneTripStep reports whether a step can be written in one round trip
// (BEGIN, the fence, its writes and COMMIT in one pipeline): a simple step
// whose messages all go to its own instance (timers), so that it locks no
// other row, with the worker's time.
func oneTripStep(p *backend.CompleteOrchestrationStepParams) bool {
	return simpleStep(p) && fusableStep(p)
}

// fenceStepQuery locks instance $1's row and fails unless delivery $2 of
// execution $3 ("" for any) holds its step (rules.StepFence.Check): the
// cast of a text that is no number raises invalid_text_representation
// (22P02) with fencedMark in its message, so the server skips the rest of
// the pipeline, COMMIT included. The text is built from the row so that
// the planner cannot fold the failing branch into a constant.
const fenceStepQuery = `WITH f AS (
	SELECT step_attempt, completed_attempt, execution_id FROM {s}.instances WHERE id = $1 FOR UPDATE
)
SELECT (CASE WHEN EXISTS (SELECT 1 FROM f WHERE $2::bigint >= 1 AND step_attempt = $2::bigint
		AND completed_attempt < $2::bigint AND ($3::text = '' OR execution_id = $3::text))
	THEN '1' ELSE '` + fencedMark + `' || (SELECT count(*) FROM f)::text END)::int`

// fencedMark marks the failure of fenceStepQuery.
const fencedMark = "duro_step_fenced:"

// errStepFenced is the failure of a one-trip step whose fence did not
// hold; nothing of it committed.
var errStepFenced = errors.New("step fenced")

// isStepFenced reports whether err is the failure of fenceStepQuery.
func isStepFenced(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "22P02" && strings.Contains(pgErr.Message, fencedMark)
}

// repeatsCommittedStep reports whether p repeats a step its delivery
// committed (backend.RepeatsCommittedStep), reading the locked row's
// committed_steps.
func (t *txn) repeatsCommittedStep(p *backend.CompleteOrchestrationStepParams, f *stepFence) (bool, error) {
	var bits int64
	if err := t.queryRow(`SELECT committed_steps FROM {s}.instances WHERE id = $1`, p.InstanceID).Scan(&bits); err != nil {
		return false, err
	}
	return backend.RepeatsCommittedStep(p, f.ExecutionID, f.Completed, bits), nil
}

// claimsOfStep finds, for a repeated commit, the claims that the commit
// made for owner (applyStep inserts them claimed) and that are still live:
// up to max of the tasks, in order, claimed in the transaction that
// inserted them (claimed_at = created_at) by their first delivery, leased
// to owner.
func (t *txn) claimsOfStep(tasks []*backend.ActivityTask, owner string, max int) ([]*backend.ActivityWorkItem, error) {
	now, err := t.mustNow()
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(tasks))
	for i, a := range tasks {
		ids[i] = a.ID
	}
	rows, err := t.tx.Query(t.ctx, t.b.q(`SELECT id, attempt, lease_expires_at, created_at FROM {s}.activity_tasks
		WHERE id = ANY($1) AND lease_owner = $2 AND claimed_at = created_at AND lease_expires_at > $3`), ids, owner, now)
	if err != nil {
		return nil, err
	}
	type live struct{ attempt, expires, created int64 }
	found := map[string]live{}
	var id string
	var l live
	if _, err := pgx.ForEachRow(rows, []any{&id, &l.attempt, &l.expires, &l.created}, func() error {
		found[id] = l
		return nil
	}); err != nil {
		return nil, err
	}
	var claimed []*backend.ActivityWorkItem
	for _, a := range tasks {
		l, ok := found[a.ID]
		if len(claimed) == max {
			break
		}
		if !ok {
			continue
		}
		if wi := rules.ClaimOfCommit(a, int(l.attempt), l.created, l.expires); wi != nil {
			claimed = append(claimed, wi)
		}
	}
	return claimed, nil
}

// eagerClaim asks applyStep to insert up to max of the step's tasks
// already claimed for claim.Owner; claimed gets their work items.
type eagerClaim struct {
	claim   *backend.ClaimParams
	max     int
	claimed []*backend.ActivityWorkItem
}

// stepWrite says how applyStep sends a step.
type stepWrite struct {
	// fence puts fenceStepQuery first (the step then locks nothing
	// before); flush recomputes the instance's ready summary and delivers
	// the messages in the batch; final sends the batch with the COMMIT
	// (the transaction's last batch).
	fence, flush, final bool
	// direct are the IDs of consumed messages that the step received
	// without their passing through the inbox (CompleteActivityStep's
	// result): recorded as consumed like the others, with no row to delete.
	direct []string
}

// applyStep consumes the step's messages, appends its history, writes the
// instance row (releasing the lease and marking the delivery's step
// completed) and enqueues its activity tasks, in one round trip; with
// flush it also recomputes the instance's ready summary and delivers msgs
// (dropping those whose instance cannot take them) in the same round trip.
//
// With ec.max > 0 the first ec.max tasks are inserted claimed (attempt
// PriorAttempts+1, leased to ec.claim.Owner from ec.claim.Now, or from the
// database clock when it is zero, never from the step's Now) and the work
// items of those inserted are put in ec.claimed.
func (t *txn) applyStep(p *backend.CompleteOrchestrationStepParams, w stepWrite, msgs []*backend.Message, ec *eagerClaim) error {
	flush := w.flush
	id := p.InstanceID
	events := make([][]byte, len(p.NewEvents))
	for i, e := range p.NewEvents {
		data, err := backend.EncodeEvent(e)
		if err != nil {
			return fmt.Errorf("new event %d: %w", i, err)
		}
		events[i] = data
	}
	failure, err := encodeJSON(p.Failure)
	if err != nil {
		return err
	}
	status := p.Status
	if p.ContinueAsNew != nil {
		status = backend.StatusContinuedAsNew
	}
	var completed int64
	if status.IsTerminal() {
		completed = t.now
	}
	var susp *string
	if status == backend.StatusSuspended {
		if susp, err = encodeJSON(p.Suspension); err != nil {
			return err
		}
	}
	batch := &pgx.Batch{}
	if w.fence {
		batch.Queue(t.b.q(fenceStepQuery), id, p.Attempt, p.ExecutionID)
	}
	// The consumed messages and the new events: one statement, or either.
	consumed := len(p.ConsumedMessageIDs) > 0
	switch {
	case consumed && len(events) > 0 && len(w.direct) > 0:
		batch.Queue(t.b.q(consumeDirectHistoryQuery), id, p.ConsumedMessageIDs, events, w.direct)
	case consumed && len(events) > 0:
		batch.Queue(t.b.q(consumeHistoryQuery), id, p.ConsumedMessageIDs, events)
	case consumed:
		batch.Queue(t.b.q(`WITH d AS (DELETE FROM {s}.inbox WHERE instance_id = $1 AND id = ANY($2) RETURNING id)
			INSERT INTO {s}.inbox_consumed (instance_id, id)
			SELECT $1, id FROM d UNION ALL SELECT $1, unnest($3::text[]) ON CONFLICT DO NOTHING`),
			id, p.ConsumedMessageIDs, w.direct)
	case len(events) > 0:
		batch.Queue(t.b.q(`INSERT INTO {s}.history (instance_id, seq, event) `+historyAppend),
			id, events)
	}
	t.queueWindow(batch, id, p.Window)
	var resumes *string
	if p.ResumeOutcomes != nil {
		if resumes, err = encodeJSON(&p.ResumeOutcomes); err != nil {
			return err
		}
	}
	// With flush, the instance row's update recomputes the ready summary
	// itself (one statement and one row version fewer than a flushQuery
	// after it). A message the step sends to its own instance (a timer) is
	// inserted after the row is written and lowers the summary to its own
	// times, as deliverQuery does for any message.
	updAt := batch.Len()
	if flush {
		batch.Queue(t.b.q(stepUpdateReadyQuery), status, p.Output, failure, p.CustomStatus, susp, t.now, completed, id, resumes)
	} else {
		batch.Queue(t.b.q(stepUpdateQuery), status, p.Output, failure, p.CustomStatus, susp, t.now, completed, id, resumes)
	}
	taskAt := -1 // the task insert's place in the batch
	if len(p.ActivityTasks) > 0 {
		n := len(p.ActivityTasks)
		ids, insts, execs, names := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		taskIDs, attempts, priors := make([]int64, n), make([]int64, n), make([]int64, n)
		inputs := make([][]byte, n)
		owners := make([]string, n)
		var claimNow, claimFor int64
		if ec.max > 0 {
			claimNow, claimFor = rules.Nanos(ec.claim.Now), int64(ec.claim.LeaseDuration)
		}
		opts, err := rules.TaskOptions(p.ActivityTasks)
		if err != nil {
			return err
		}
		for i, a := range p.ActivityTasks {
			ids[i], insts[i], execs[i], names[i] = a.ID, a.InstanceID, a.ExecutionID, a.Name
			taskIDs[i], attempts[i], priors[i], inputs[i] = int64(a.TaskID), int64(a.PriorAttempts), int64(a.PriorAttempts), a.Input
			if i < ec.max {
				attempts[i]++
				owners[i] = ec.claim.Owner
			}
		}
		taskAt = batch.Len()
		batch.Queue(t.b.q(insertTasksQuery),
			ids, insts, execs, taskIDs, names, inputs, opts, attempts, owners, t.now, claimNow, claimFor, priors)
	}
	margs := make([][]any, len(msgs))
	for i, m := range msgs {
		if margs[i], err = t.messageArgs(m, false); err != nil {
			return err
		}
	}
	if flush {
		for _, a := range margs {
			batch.Queue(t.b.q(deliverQuery), a...)
		}
	} else {
		t.touch(id)
	}
	var br pgx.BatchResults
	if w.final {
		br = t.tx.sendFinal(t.ctx, batch)
	} else {
		br = t.tx.SendBatch(t.ctx, batch)
	}
	defer func() { _ = br.Close() }()
	for i := range batch.Len() - len(margs) - boolInt(w.final) {
		switch {
		case i == taskAt:
			if err := t.insertedTasks(br, p.ActivityTasks, ec); err != nil {
				return err
			}
			continue
		case i == updAt && flush:
			rows, err := br.Query()
			if err != nil {
				return err
			}
			if err := t.scanFlush(rows); err != nil {
				return err
			}
			continue
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		var status backend.Status
		var inserted bool
		if err := br.QueryRow().Scan(&status, &inserted); err != nil {
			return fmt.Errorf("message %q: %w", m.ID, err)
		}
		if err := t.delivered(m, false, status, inserted); err != nil && !rules.Undeliverable(err) {
			return err
		}
	}
	return br.Close()
}

// historyAppend is the SELECT of a step's history insert: events $2
// (bytea[]) after the last of instance $1's, with seq counting on; $2 is
// $3 in consumeHistoryQuery, which replaces it.
const historyAppend = `SELECT $1, base.n + e.ord, e.data
	FROM (SELECT COALESCE(MAX(seq), 0) AS n FROM {s}.history WHERE instance_id = $1) base,
		unnest($2::bytea[]) WITH ORDINALITY AS e(data, ord)`

// consumeHistoryQuery consumes a step's messages (IDs $2: deleted from
// instance $1's inbox, recorded as consumed) and appends its events ($3),
// in one statement: the sub-statements touch different tables.
var consumeHistoryQuery = `WITH d AS (DELETE FROM {s}.inbox WHERE instance_id = $1 AND id = ANY($2) RETURNING id),
	c AS (INSERT INTO {s}.inbox_consumed (instance_id, id) SELECT $1, id FROM d ON CONFLICT DO NOTHING)
INSERT INTO {s}.history (instance_id, seq, event) ` + strings.Replace(historyAppend, "$2::bytea[]", "$3::bytea[]", 1)

// consumeDirectHistoryQuery is consumeHistoryQuery that also records as
// consumed the messages $4 the step got without an inbox row (stepWrite's
// direct).
var consumeDirectHistoryQuery = strings.Replace(consumeHistoryQuery,
	`SELECT $1, id FROM d ON CONFLICT`, `SELECT $1, id FROM d UNION ALL SELECT $1, unnest($4::text[]) ON CONFLICT`, 1)

// stepUpdateQuery writes a step's instance row ($8): status $1, output
// $2, failure $3, custom status $4, suspension $5, at $6, completed at $7
// (0: not finished), resume outcomes $9 (NULL: unchanged), and releases the
// lease, marking the delivery's step committed.
var stepUpdateQuery = `UPDATE {s}.instances SET status = $1, output = $2, failure = $3, custom_status = $4,
	suspension = $5, updated_at = $6, completed_at = $7, lock_owner = '', lock_expires_at = 0,
	completed_attempt = step_attempt, committed_steps = ` + commitStepsUpdate + `,
	resume_outcomes = COALESCE($9, resume_outcomes) WHERE id = $8`

// stepUpdateReadyQuery is stepUpdateQuery that also recomputes the ready
// summary as flushQuery would after it (with the new status), and returns
// what flushQuery returns. The inbox it reads is the one the step's earlier
// statements left (its consumed messages deleted), and the step's row lock
// keeps every other writer of the instance's inbox out until the commit.
var stepUpdateReadyQuery = `UPDATE {s}.instances i SET status = $1, output = $2, failure = $3, custom_status = $4,
	suspension = $5, updated_at = $6, completed_at = $7, lock_owner = '', lock_expires_at = 0,
	completed_attempt = step_attempt, committed_steps = ` + commitStepsUpdate + `,
	resume_outcomes = COALESCE($9, resume_outcomes),
	(ready_at, ready_key) = (SELECT MIN(m.visible_at), MIN(m.sort_at) FROM {s}.inbox m
		WHERE m.instance_id = i.id AND ($1 <> 'Suspended' OR m.control))
	WHERE id = $8 RETURNING ready_at, lock_expires_at`

// insertTasksQuery inserts a step's activity tasks (arrays $1-$9: ID,
// instance, execution, task ID, name, input, options, attempt, owner, and
// $13: prior attempts) at
// the step's time $10, ON CONFLICT DO NOTHING, and returns the IDs it
// inserted with their lease expiry. A task with an owner is inserted
// claimed (eager dispatch): leased for $12 ns from $11, the claim's Now, or
// when that is 0 from the database clock as this statement starts, the
// step's last, so the lease counts from (just before) the commit. Never
// from the step's time: that is the worker's clock. A claimed task's
// created_at is its claim time too, so claimsOfStep can tell the claims
// the commit made (claimed_at = created_at) from later ones.
var insertTasksQuery = `WITH c AS MATERIALIZED (
	SELECT COALESCE(NULLIF($11::bigint, 0), ` + dbStatementNow + `) AS at
)
INSERT INTO {s}.activity_tasks
	(id, instance_id, execution_id, task_id, name, input, options, attempt, lease_owner, lease_expires_at,
		claimed_at, prior_attempts, created_at)
SELECT u.id, u.inst, u.exec, u.task, u.name, u.input, u.opts, u.attempt, u.owner,
	CASE WHEN u.owner <> '' THEN c.at + $12::bigint ELSE 0 END, CASE WHEN u.owner <> '' THEN c.at ELSE 0 END,
	u.prior, CASE WHEN u.owner <> '' THEN c.at ELSE $10::bigint END
FROM c, unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bytea[], $7::text[],
	$8::bigint[], $9::text[], $13::bigint[]) AS u(id, inst, exec, task, name, input, opts, attempt, owner, prior)
ON CONFLICT (id) DO NOTHING RETURNING id, lease_expires_at`

// commitStepsUpdate is the new committed_steps of a committing delivery:
// the bits shifted by the deliveries since the last commit, and bit 0 set
// (backend.CommittedStepsWindow bits are kept).
var commitStepsUpdate = fmt.Sprintf(`CASE WHEN step_attempt - completed_attempt >= %[1]d THEN 1
	ELSE ((committed_steps << (step_attempt - completed_attempt)::int) & %[2]d) | 1 END`,
	backend.CommittedStepsWindow, uint64(1)<<backend.CommittedStepsWindow-1)

// insertedTasks reads which tasks the insert of applyStep inserted, makes
// the work items of the claimed ones, and asks for a wake-up of the
// activity loops if some inserted tasks are left for them.
func (t *txn) insertedTasks(br pgx.BatchResults, tasks []*backend.ActivityTask, ec *eagerClaim) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	inserted := map[string]int64{} // ID -> lease expiry
	for rows.Next() {
		var id string
		var expires int64
		if err := rows.Scan(&id, &expires); err != nil {
			rows.Close()
			return err
		}
		inserted[id] = expires
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	ec.claimed = ec.claimed[:0]
	for i, a := range tasks {
		expires, ok := inserted[a.ID]
		if i >= ec.max || !ok {
			continue
		}
		task := *a
		ec.claimed = append(ec.claimed, &backend.ActivityWorkItem{Task: &task, Attempt: a.PriorAttempts + 1,
			ScheduledAt: rules.FromNanos(t.now), LeaseExpiresAt: rules.FromNanos(expires)})
	}
	if len(inserted) > len(ec.claimed) {
		t.work = true
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parkedAt is the visible_at of a parked task: one whose instance finished
// while a delivery held it. It is never claimed again; the delivery may
// renew its lease and complete it (its result goes to the history as a
// LateResult event).
const parkedAt = math.MaxInt64
