package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
)

func (a *app) resumeCmd() *cobra.Command {
	var reason, result, fail, outcome string
	var retry, wait bool
	var task int
	var decide []string
	cmd := &cobra.Command{
		Use:   "resume ID",
		Short: "Resume a suspended instance, deciding the tasks that wait for a decision",
		Long: `Resume resumes the suspended instance ID: the events, results and timers
kept while it was suspended are processed in order, and the
sub-orchestrations suspended with it resume too.

An instance suspended by an at-most-once activity whose earlier delivery may
have run (OnDuplicateSuspend) waits for a decision on that task, and a
resume must decide every waiting task ('duro decisions' lists them):

  --retry            run the task's code again, as the next attempt
  --result JSON      complete the task with this result; the code does not run
  --fail MESSAGE     fail the task (type OperatorFailed, not retried)

These decide the instance's only waiting task; --task N names it, and the
resume fails if that task is not the one waiting. When several tasks wait,
give one --decide per task: N=retry, N=result:JSON or N=fail:MESSAGE.
--result and result: take JSON, or @FILE to read it from a file.

The resume is queued: the instance's next step applies it, or refuses it if
the tasks that wait for a decision changed meanwhile. --wait waits for that
outcome and prints it (a refused resume exits with an error). While a resume
is queued, another one is refused at once.`,
		Example: `  duro resume order-1 --reason "incident closed"
  duro resume order-1 --retry --reason "the provider has no charge"
  duro resume order-1 --task 3 --result '{"charge": "ch_1"}' --reason "the provider has the charge"
  duro resume order-1 --fail "refunded by hand"
  duro resume order-1 --decide 3=retry --decide 5=fail:refunded --decide 7=result:'{"id": 1}'
  duro resume order-1 --retry --wait
  duro resume order-1 --outcome resume/0b5c… --wait`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			f := cmd.Flags()
			if f.Changed("outcome") {
				return a.resumeOutcome(cmd, id, outcome, wait)
			}
			short, err := shortDecision(retry, f.Changed("result"), result, f.Changed("fail"), fail)
			if err != nil {
				return err
			}
			var specs []*decisionSpec
			switch {
			case len(decide) > 0 && (short != nil || f.Changed("task")):
				return usageErrorf("give the decisions either with --decide, or with --retry, --result or --fail (and --task), not both")
			case f.Changed("task") && short == nil:
				return usageErrorf("--task needs a decision: --retry, --result JSON or --fail MESSAGE")
			case f.Changed("task") && task < 0:
				return usageErrorf("--task %d: task IDs are not negative", task)
			case short != nil:
				short.task, short.given = task, f.Changed("task")
				specs = []*decisionSpec{short}
			}
			seen := map[int]bool{}
			for _, d := range decide {
				s, err := parseDecide(d)
				if err != nil {
					return err
				}
				if seen[s.task] {
					return usageErrorf("--decide: two decisions for task #%d", s.task)
				}
				seen[s.task] = true
				specs = append(specs, s)
			}

			c, closeStore, err := a.client(cmd, storeWrite)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx := cmd.Context()
			inst, err := c.Get(ctx, id)
			if err != nil {
				return explain(ctx, c, id, err)
			}
			if inst.Status.IsTerminal() {
				return explain(ctx, c, id, duro.ErrInstanceFinished)
			}
			var pending []*duro.PendingDecision
			if inst.Status == duro.StatusSuspended && inst.Suspension != nil {
				pending = inst.Suspension.Pending
			}
			if err := checkDecisions(inst, pending, specs); err != nil {
				return err
			}
			decisions := make([]duro.Decision, len(specs))
			for i, s := range specs {
				decisions[i] = s.decision()
			}
			rid, err := c.RequestResume(ctx, id, reason, decisions...)
			if err != nil {
				return explain(ctx, c, id, err)
			}
			fmt.Fprintf(a.stdout, "resume of %s requested (%s); a worker applies or refuses it at the instance's next step\n", id, rid)
			byTask := map[int]*duro.PendingDecision{}
			for _, pd := range pending {
				byTask[pd.TaskID] = pd
			}
			for _, s := range specs {
				fmt.Fprintf(a.stdout, "  task #%d (%s): %s\n", s.task, byTask[s.task].Name, s.describe(byTask[s.task]))
			}
			if inst.Status != duro.StatusSuspended {
				fmt.Fprintf(a.stdout, "note: %s is %s, not Suspended: the resume only undoes a suspension requested before it\n", id, inst.Status)
			}
			if !wait {
				fmt.Fprintf(a.stdout, "its outcome: duro resume %s --outcome %s%s (or --wait)\n", quoteArg(id), quoteArg(rid), a.storeArg(cmd))
				return nil
			}
			o, err := waitResume(ctx, c, id, rid)
			if err != nil {
				return err
			}
			return a.printResumeOutcome(id, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&reason, "reason", "", "why, recorded in the history")
	f.BoolVar(&retry, "retry", false, "decision: run the waiting task's code again, as the next attempt")
	f.StringVar(&result, "result", "", "decision: complete the waiting task with this `JSON` result (or @FILE); its code does not run")
	f.StringVar(&fail, "fail", "", "decision: fail the waiting task with this `MESSAGE` (OperatorFailed, not retried)")
	f.IntVar(&task, "task", 0, "the task `N` that --retry, --result or --fail decides (default: the only waiting task)")
	f.StringArrayVar(&decide, "decide", nil, "decide one task: `N=DECISION`, DECISION being "+decisionSyntax+" (repeat for each waiting task)")
	f.BoolVar(&wait, "wait", false, "wait until a worker applies or refuses the resume, and print the outcome")
	f.StringVar(&outcome, "outcome", "", "print the outcome of the earlier resume `RESUME_ID` (with --wait, once it has one) instead of resuming")
	return cmd
}

// resumeOutcome prints the outcome of resume rid of instance id.
func (a *app) resumeOutcome(cmd *cobra.Command, id, rid string, wait bool) error {
	f := cmd.Flags()
	for _, name := range []string{"retry", "result", "fail", "task", "decide", "reason"} {
		if f.Changed(name) {
			return usageErrorf("--outcome reads a resume's outcome; it takes no --%s", name)
		}
	}
	c, closeStore, err := a.client(cmd, storeRead)
	if err != nil {
		return err
	}
	defer closeStore()
	ctx := cmd.Context()
	var o *duro.ResumeOutcome
	if wait {
		o, err = waitResume(ctx, c, id, rid)
	} else {
		o, err = c.ResumeOutcome(ctx, id, rid)
	}
	if err != nil {
		return explain(ctx, c, id, err)
	}
	return a.printResumeOutcome(id, o)
}

// waitResume polls the outcome of resume rid of instance id until a step
// has applied or refused it.
func waitResume(ctx context.Context, c instanceAPI, id, rid string) (*duro.ResumeOutcome, error) {
	for d := 10 * time.Millisecond; ; d = min(2*d, 500*time.Millisecond) {
		o, err := c.ResumeOutcome(ctx, id, rid)
		if err != nil || o.Status != duro.ResumePending {
			return o, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the outcome of resume %s of %s: %w", rid, id, ctx.Err())
		case <-time.After(d):
		}
	}
}

// printResumeOutcome prints a resume's outcome, decision by decision; a
// refused resume is an error.
func (a *app) printResumeOutcome(id string, o *duro.ResumeOutcome) error {
	line := fmt.Sprintf("resume %s of %s: %s", o.ID, id, strings.ToLower(string(o.Status)))
	if o.Reason != "" {
		line += ": " + o.Reason
	}
	fmt.Fprintln(a.stdout, line)
	for _, d := range o.Decisions {
		fmt.Fprintf(a.stdout, "  task #%d %s: %s", d.TaskID, strings.ToLower(string(d.Action)), strings.ToLower(string(d.Status)))
		if d.Reason != "" {
			fmt.Fprintf(a.stdout, ": %s", d.Reason)
		}
		fmt.Fprintln(a.stdout)
	}
	if o.Status == duro.ResumeRefused {
		return fmt.Errorf("resume of %s refused: %s (decide again: duro decisions lists what waits)", id, o.Reason)
	}
	return nil
}

// decisionSpec is one decision from the command line.
type decisionSpec struct {
	task   int
	given  bool // the task was named (always, for --decide)
	action duro.DecisionAction
	result json.RawMessage
	msg    string
}

func (s *decisionSpec) decision() duro.Decision {
	switch s.action {
	case duro.DecisionRetry:
		return duro.RetryTask(s.task)
	case duro.DecisionResult:
		return duro.CompleteTask(s.task, s.result)
	}
	return duro.FailTask(s.task, s.msg)
}

// describe says what the decision does to pd.
func (s *decisionSpec) describe(pd *duro.PendingDecision) string {
	switch s.action {
	case duro.DecisionRetry:
		return fmt.Sprintf("retry: its code runs again as attempt %d", pd.Attempt+1)
	case duro.DecisionResult:
		return "complete with result " + preview(s.result, previewRunes)
	}
	msg := s.msg
	if msg == "" {
		msg = "failed by an operator"
	}
	return "fail: " + msg
}

// shortDecision reads --retry, --result and --fail: nil if none is given.
func shortDecision(retry, hasResult bool, result string, hasFail bool, fail string) (*decisionSpec, error) {
	var given []string
	if retry {
		given = append(given, "--retry")
	}
	if hasResult {
		given = append(given, "--result")
	}
	if hasFail {
		given = append(given, "--fail")
	}
	switch {
	case len(given) > 1:
		return nil, usageErrorf("%s: give one decision (to decide several tasks, give --decide N=DECISION for each)", strings.Join(given, " and "))
	case retry:
		return &decisionSpec{action: duro.DecisionRetry}, nil
	case hasFail:
		return &decisionSpec{action: duro.DecisionFail, msg: fail}, nil
	case hasResult:
		if strings.TrimSpace(result) == "" {
			return nil, usageErrorf("--result needs a JSON value, e.g. --result '{\"charge\": \"ch_1\"}' or --result '\"text\"' (or @FILE)")
		}
		raw, err := parseJSONFlag("result", result)
		if err != nil {
			return nil, err
		}
		return &decisionSpec{action: duro.DecisionResult, result: raw}, nil
	}
	return nil, nil
}

// parseDecide parses a --decide value: N=retry, N=result:JSON or
// N=fail[:MESSAGE].
func parseDecide(v string) (*decisionSpec, error) {
	bad := func(why string) error {
		return usageErrorf("--decide %s: %s; want N=DECISION, DECISION being %s", quoteArg(v), why, decisionSyntax)
	}
	n, what, ok := strings.Cut(v, "=")
	if !ok {
		return nil, bad("no '='")
	}
	task, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(n), "#"))
	if err != nil || task < 0 {
		return nil, bad(fmt.Sprintf("%q is not a task ID", n))
	}
	action, arg, hasArg := strings.Cut(what, ":")
	s := &decisionSpec{task: task, given: true}
	switch strings.ToLower(strings.TrimSpace(action)) {
	case "retry":
		if hasArg {
			return nil, bad("retry takes nothing after it")
		}
		s.action = duro.DecisionRetry
	case "fail":
		s.action, s.msg = duro.DecisionFail, arg
	case "result":
		if strings.TrimSpace(arg) == "" {
			return nil, bad("result needs its JSON after a colon: result:JSON")
		}
		b := []byte(arg)
		if path, ok := strings.CutPrefix(arg, "@"); ok {
			if b, err = os.ReadFile(path); err != nil {
				return nil, usageErrorf("--decide %d=result:@FILE: %v", task, err)
			}
			b = bytes.TrimSpace(b)
		}
		if !json.Valid(b) {
			var probe any
			jerr := json.Unmarshal(b, &probe) // only for its message
			return nil, usageErrorf("--decide %d=result: the result is not valid JSON (%v): %s\n"+
				"  (quote it for the shell, e.g. --decide %d=result:'{\"charge\": \"ch_1\"}' or --decide %d=result:'\"text\"', or use result:@FILE)",
				task, jerr, preview(b, 60), task, task)
		}
		s.action, s.result = duro.DecisionResult, json.RawMessage(b)
	default:
		return nil, bad(fmt.Sprintf("unknown decision %q", action))
	}
	return s, nil
}

// checkDecisions checks the decisions against the tasks that wait for one
// before anything is sent, so errors name the tasks. A short decision
// without --task decides the only waiting task.
func checkDecisions(inst *duro.Instance, pending []*duro.PendingDecision, specs []*decisionSpec) error {
	id := inst.ID
	if len(specs) == 1 && !specs[0].given {
		switch len(pending) {
		case 0:
			return noPendingDecision(id, nil)(inst, pending)
		case 1:
			specs[0].task = pending[0].TaskID
		default:
			return decisionRequired(id, pending, nil)
		}
	}
	waiting := map[int]bool{}
	for _, pd := range pending {
		waiting[pd.TaskID] = true
	}
	decided := map[int]bool{}
	var stray []int
	for _, s := range specs {
		decided[s.task] = true
		if !waiting[s.task] {
			stray = append(stray, s.task)
		}
	}
	if len(stray) > 0 {
		sort.Ints(stray)
		return noPendingDecision(id, stray)(inst, pending)
	}
	if len(decided) < len(pending) {
		return decisionRequired(id, pending, decided)
	}
	return nil
}
