package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// Report is the outcome of a chaos run.
type Report struct {
	Seed       uint64 `json:"seed"`
	Backend    string `json:"backend,omitempty"`
	SplitFleet bool   `json:"splitFleet,omitempty"`

	Started           int `json:"instancesStarted"`
	SubOrchestrations int `json:"subOrchestrations"`
	Completed         int `json:"completed"`
	FailedAsDesigned  int `json:"failedAsDesigned"`
	AwaitingDecision  int `json:"suspendedAwaitingDecision"`
	Lost              int `json:"lost"`
	UnexpectedFailed  int `json:"unexpectedFailures"`

	AtMostOnceCalls         int `json:"atMostOnceCalls"`
	AtMostOnceMaxExecutions int `json:"atMostOnceMaxExecutionsPerCall"`
	AtLeastOnceNeverRan     int `json:"atLeastOnceCallsNeverRun"`
	TasksWithoutOneResult   int `json:"tasksWithoutExactlyOneResult"`

	StaleCompletionsRejected int64 `json:"staleCompletionsRejected"`
	DuplicatesPrevented      int64 `json:"duplicatesPrevented"`
	Redeliveries             int64 `json:"redeliveries"`
	DecisionsMade            int   `json:"operatorDecisions"`
	ConnectionsKilled        int   `json:"databaseConnectionsKilled"`
	WorkersThatRanCode       int   `json:"workerProcessesThatRanCode"`
	// CodeOnOrchestrationWorkers counts the activity executions by
	// orchestration-only workers of a split fleet (which do not register
	// the activities).
	CodeOnOrchestrationWorkers int `json:"activityExecutionsOnOrchestrationWorkers"`

	// AlarmStats counts the possible duplicates of at-most-once calls and
	// the false alarms among them (none of the call's earlier deliveries
	// ran its code). False alarms are not violations.
	AlarmStats

	Faults     map[string]int `json:"faultsInjected"`
	Violations []string       `json:"violations"`
	OK         bool           `json:"ok"`
}

func (r *Report) violate(format string, args ...any) {
	if len(r.Violations) < 50 {
		r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
	}
}

var resultTypes = map[backend.EventType]bool{
	backend.EventTaskCompleted: true, backend.EventTaskFailed: true, backend.EventTimerFired: true,
	backend.EventSubOrchestrationCompleted: true, backend.EventSubOrchestrationFailed: true,
}

// check verifies the invariants over every started instance and its
// children.
func (r *run) check(ctx context.Context, c *duro.Client, be backend.Backend, ids []string) error {
	rep := r.report
	l, err := OpenLedger(r.cfg.Ledger)
	if err != nil {
		return err
	}
	defer l.Close()
	var alarms []Alarm
	queue := append([]string(nil), ids...)
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		inst, err := c.Get(ctx, id)
		if err != nil {
			rep.Lost++
			rep.violate("instance %s: %v", id, err)
			continue
		}
		h, err := c.History(ctx, id)
		if err != nil {
			return err
		}
		switch {
		case inst.Status == duro.StatusCompleted:
			rep.Completed++
		case inst.Status == duro.StatusFailed && inst.Failure != nil && strings.Contains(inst.Failure.Message, duplicateFailure):
			rep.FailedAsDesigned++
		case inst.Status == duro.StatusFailed:
			rep.UnexpectedFailed++
			rep.violate("instance %s failed: %s\n%s", id, inst.Failure.Error(), historyText(h))
		case inst.Status == duro.StatusSuspended && inst.Suspension != nil && len(inst.Suspension.Pending) > 0:
			rep.AwaitingDecision++
		default:
			rep.Lost++
			rep.violate("instance %s never finished: %s\n%s", id, inst.Status, historyText(h))
		}
		alarms = append(alarms, historyAlarms(id, h)...)
		scheduled := map[int]*backend.Event{}
		results := map[int]int{}
		for _, ev := range h {
			switch {
			case ev.Type == backend.EventTaskScheduled, ev.Type == backend.EventTimerCreated:
				scheduled[ev.TaskID] = ev
			case ev.Type == backend.EventSubOrchestrationCreated:
				scheduled[ev.TaskID] = ev
				rep.SubOrchestrations++
				queue = append(queue, ev.InstanceID)
			case resultTypes[ev.Type]:
				results[ev.TaskID]++
				if ev.Type == backend.EventTaskCompleted && ev.Attempt > 0 && scheduled[ev.TaskID] != nil &&
					scheduled[ev.TaskID].Name == ActivityStep {
					ran, err := l.Ran(ctx, id, ev.TaskID)
					if err != nil {
						return err
					}
					if !ran {
						rep.AtLeastOnceNeverRan++
						rep.violate("instance %s task %d completed but its code never ran (ledger)", id, ev.TaskID)
					}
				}
			}
		}
		for tid, n := range results {
			if n != 1 {
				rep.TasksWithoutOneResult++
				rep.violate("instance %s task %d received %d results\n%s", id, tid, n, historyText(h))
			}
		}
		if inst.Status == duro.StatusCompleted {
			for tid, ev := range scheduled {
				// A timer may legitimately never fire (a timeout nobody
				// needed); activities and children must have a result.
				if ev.Type != backend.EventTimerCreated && results[tid] != 1 {
					rep.TasksWithoutOneResult++
					rep.violate("completed instance %s: task %d (%s %s) has %d results", id, tid, ev.Type, ev.Name, results[tid])
				}
			}
		}
	}
	amo, err := l.Executions(ctx, policyAMO)
	if err != nil {
		return err
	}
	rep.AtMostOnceCalls = len(amo)
	for k, n := range amo {
		rep.AtMostOnceMaxExecutions = max(rep.AtMostOnceMaxExecutions, n)
		if n > 1 {
			h, _ := c.History(ctx, k.instance)
			rep.violate("at-most-once call %s task %d ran %d times\n%s", k.instance, k.task, n, historyText(h))
		}
	}
	if err := r.judgeAlarms(ctx, l, alarms); err != nil {
		return err
	}
	if rep.WorkersThatRanCode, err = l.Workers(ctx); err != nil {
		return err
	}
	if r.cfg.SplitFleet {
		byPID, err := l.ExecutionsByPID(ctx)
		if err != nil {
			return err
		}
		r.mu.Lock()
		for pid, n := range byPID {
			if role, ok := r.roles[pid]; !ok || role != RoleActivities {
				rep.CodeOnOrchestrationWorkers += n
				rep.violate("process %d (role %q) ran %d activity executions; only activity workers have the code", pid, role, n)
			}
		}
		r.mu.Unlock()
	}
	r.sumStats()
	rep.OK = len(rep.Violations) == 0 && rep.Lost == 0 && rep.UnexpectedFailed == 0 && rep.CodeOnOrchestrationWorkers == 0 &&
		rep.AtMostOnceMaxExecutions <= 1 && rep.AtLeastOnceNeverRan == 0 && rep.TasksWithoutOneResult == 0
	return nil
}

// judgeAlarms counts the alarms — those of the histories and the
// reconciler calls in the ledger — and the false ones among them.
func (r *run) judgeAlarms(ctx context.Context, l *Ledger, alarms []Alarm) error {
	rec, err := l.Reconciles(ctx)
	if err != nil {
		return err
	}
	alarms = append(alarms, rec...)
	ran, err := l.Attempts(ctx, policyAMO)
	if err != nil {
		return err
	}
	deliveries, err := readDeliveries(r.cfg.Ledger)
	if err != nil {
		return err
	}
	r.mu.Lock()
	fates := maps.Clone(r.fates)
	r.mu.Unlock()
	r.report.AlarmStats = classifyAlarms(alarms, ran, deliveries, fates)
	return nil
}

// sumStats adds up the last counters every worker process wrote.
func (r *run) sumStats() {
	files, _ := filepath.Glob(r.cfg.Ledger + ".stats.*.json")
	for _, f := range files {
		if strings.HasSuffix(f, ".tmp") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var s duro.WorkerStats
		if json.Unmarshal(b, &s) != nil {
			continue
		}
		r.report.StaleCompletionsRejected += s.StaleCompletionsRejected
		r.report.DuplicatesPrevented += s.DuplicatesFailed + s.DuplicatesSuspended + s.DuplicatesReconciled
		r.report.Redeliveries += s.Redeliveries
	}
}

func historyText(h []*backend.Event) string {
	var b strings.Builder
	for _, ev := range h {
		j, _ := json.Marshal(ev)
		b.WriteString("    ")
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// WriteTable prints the report as a table.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any, rule string) { fmt.Fprintf(tw, "%s\t%v\t%s\n", k, v, rule) }
	row("seed", r.Seed, "replay with --seed")
	if r.SplitFleet {
		row("fleet", "split: orchestration-only and activity-only workers", "")
	}
	row("instances started", r.Started, "")
	row("sub-orchestrations", r.SubOrchestrations, "")
	row("completed", r.Completed, "")
	row("failed as designed (duplicate refused)", r.FailedAsDesigned, "")
	row("suspended awaiting a decision", r.AwaitingDecision, "")
	row("lost", r.Lost, "must be 0")
	row("unexpected failures", r.UnexpectedFailed, "must be 0")
	row("at-most-once calls", r.AtMostOnceCalls, "")
	row("at-most-once max executions per call", r.AtMostOnceMaxExecutions, "must be <= 1")
	row("at-least-once calls that never ran", r.AtLeastOnceNeverRan, "must be 0")
	row("tasks without exactly one result", r.TasksWithoutOneResult, "must be 0")
	row("possible duplicates (at-most-once alarms)", r.PossibleDuplicates, "")
	for _, src := range []string{AlarmFailed, AlarmSuspended, AlarmReconciled} {
		if n := r.BySource[src]; n > 0 {
			row("  from "+src, n, "")
		}
	}
	row("FALSE ALARMS (no earlier delivery ran the code)", r.FalseAlarms, "not a violation")
	row("  after hand-backs or stops", r.AfterHandBack, "a precise engine raises none")
	row("  after crashes, pauses, lost claims", r.AfterCrash, "")
	causes := make([]string, 0, len(r.Causes))
	for c := range r.Causes {
		causes = append(causes, c)
	}
	sort.Strings(causes)
	for _, c := range causes {
		row("  cause: "+c, r.Causes[c], "")
	}
	row("stale completions rejected", r.StaleCompletionsRejected, "")
	row("duplicates prevented", r.DuplicatesPrevented, "")
	row("redeliveries", r.Redeliveries, "")
	row("operator decisions", r.DecisionsMade, "")
	row("worker processes that ran code", r.WorkersThatRanCode, "")
	if r.SplitFleet {
		row("activity executions on orchestration workers", r.CodeOnOrchestrationWorkers, "must be 0")
	}
	kinds := make([]string, 0, len(r.Faults))
	for k := range r.Faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		row("fault: "+k, r.Faults[k], "")
	}
	verdict := "OK"
	if !r.OK {
		verdict = "VIOLATED"
	}
	row("invariants", verdict, "")
	_ = tw.Flush()
	if r.FalseAlarms > 0 {
		fmt.Fprintf(w, "false alarms: %d of %d possible duplicates (%d after hand-backs or stops, %d after crashes); for example:\n",
			r.FalseAlarms, r.PossibleDuplicates, r.AfterHandBack, r.AfterCrash)
		for _, e := range r.Examples {
			fmt.Fprintf(w, "  %s task %d attempt %d (%s): %s\n", e.Instance, e.Task, e.Attempt, e.Source, e.Cause)
		}
	}
	for _, v := range r.Violations {
		fmt.Fprintf(w, "violation: %s\n", v)
	}
}
