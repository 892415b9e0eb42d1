package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/durohq/duro"
)

func TestResumeDecisions(t *testing.T) {
	t.Parallel()
	resultFile := filepath.Join(t.TempDir(), "result.json")
	if err := os.WriteFile(resultFile, []byte(" \"ch_file\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		charges int
		args    []string
		stdout  []string
		status  duro.Status
		output  string // the instance's output, or its failure
		runs    int32  // runs of Charge's code after the first worker
		history []string
	}{
		{
			name: "retry", charges: 1, args: []string{"--retry", "--reason", "no charge at the provider"},
			stdout: []string{"resume of pay requested", "  task #0 (Charge): retry: its code runs again as attempt 3\n"},
			status: duro.StatusCompleted, output: `["charge 0 on attempt 3"]`, runs: 1,
			history: []string{"reason: no charge at the provider  decisions: #0 retry", "TaskCompleted               #0  Charge     attempt 3"},
		},
		{
			name: "retry named task", charges: 1, args: []string{"--task", "0", "--retry"},
			stdout: []string{"  task #0 (Charge): retry"},
			status: duro.StatusCompleted, output: `["charge 0 on attempt 3"]`, runs: 1,
		},
		{
			name: "result", charges: 1, args: []string{"--result", `{"charge": "ch_1"}`},
			stdout: []string{`  task #0 (Charge): complete with result {"charge":"ch_1"}`},
			// Pay decodes a string: the decided result fails it, as code's would.
			status: duro.StatusFailed, runs: 0,
			history: []string{`decisions: #0 result={"charge":"ch_1"}`, "decided by an operator"},
		},
		{
			name: "result string", charges: 1, args: []string{"--task", "0", "--result", `"ch_1"`},
			stdout: []string{`  task #0 (Charge): complete with result "ch_1"`},
			status: duro.StatusCompleted, output: `["ch_1"]`, runs: 0,
			history: []string{`decisions: #0 result="ch_1"`, `TaskCompleted               #0  Charge     decided by an operator`},
		},
		{
			name: "result from file", charges: 1, args: []string{"--result", "@" + resultFile},
			stdout: []string{`complete with result "ch_file"`},
			status: duro.StatusCompleted, output: `["ch_file"]`,
		},
		{
			name: "fail", charges: 1, args: []string{"--fail", "refunded by hand"},
			stdout: []string{"  task #0 (Charge): fail: refunded by hand\n"},
			status: duro.StatusFailed, output: "OperatorFailed: refunded by hand (in Charge)",
			history: []string{`decisions: #0 fail: "refunded by hand"`, "failed: OperatorFailed: refunded by hand (in Charge)"},
		},
		{
			name: "fail without message", charges: 1, args: []string{"--fail", ""},
			stdout: []string{"  task #0 (Charge): fail: failed by an operator\n"},
			status: duro.StatusFailed, output: "OperatorFailed: failed by an operator (in Charge)",
		},
		{
			name: "decide each", charges: 3,
			args:   []string{"--decide", "0=retry", "--decide", "2=result:\"ch_2\"", "--decide", "#1=RESULT:\"ch_1\""},
			stdout: []string{"  task #0 (Charge): retry", `  task #2 (Charge): complete with result "ch_2"`, `  task #1 (Charge): complete with result "ch_1"`},
			status: duro.StatusCompleted, output: `["charge 0 on attempt 3","ch_1","ch_2"]`, runs: 1,
			history: []string{`decisions: #0 retry, #2 result="ch_2", #1 result="ch_1"`},
		},
		{
			name: "decide one of one", charges: 1, args: []string{"--decide", "0=fail:refunded: by hand"},
			stdout: []string{"  task #0 (Charge): fail: refunded: by hand\n"},
			status: duro.StatusFailed, output: "OperatorFailed: refunded: by hand (in Charge)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newDecisionEnv(t, "pay", tt.charges)
			r := cli(t, append([]string{"resume", "pay", "--store", env.store}, tt.args...)...).ok(t)
			for _, w := range tt.stdout {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
			if strings.Contains(r.stdout, "note:") {
				t.Errorf("note on a suspended instance:\n%s", r.stdout)
			}
			inst := env.wait(t, "pay")
			got := string(inst.RawOutput)
			if inst.Failure != nil {
				got = failureText(inst.Failure.Cause)
			}
			if inst.Status != tt.status || tt.output != "" && got != tt.output || env.runs.Load() != tt.runs {
				t.Errorf("instance %s %s after %d runs of Charge; want %s %s after %d", inst.Status, got, env.runs.Load(), tt.status, tt.output, tt.runs)
			}
			h := cli(t, "history", "pay", "--store", env.store).ok(t)
			for _, w := range append(tt.history, "ExecutionResumed") {
				if !strings.Contains(h.stdout, w) {
					t.Errorf("history lacks %q:\n%s", w, h.stdout)
				}
			}
			var events []eventJSON
			decodeJSON(t, cli(t, "history", "pay", "--store", env.store, "-o", "json").ok(t).stdout, &events)
			resumed := 0
			for _, e := range events {
				if e.Type == "ExecutionResumed" {
					resumed++
					if len(e.Decisions) != tt.charges {
						t.Errorf("history -o json: decisions %+v", e.Decisions)
					}
				}
			}
			if resumed != 1 {
				t.Errorf("history -o json has %d ExecutionResumed events", resumed)
			}
			if d := cli(t, "decisions", "--store", env.store).ok(t); d.stdout != "no task waits for a decision\n" {
				t.Errorf("decisions after the resume:\n%s", d.stdout)
			}
		})
	}
}

func TestResumeErrors(t *testing.T) {
	t.Parallel()
	one := newDecisionEnv(t, "one", 1)
	two := newDecisionEnv(t, "two", 2)
	env := newTestEnv(t)
	cli(t, "start", "Echo", "--store", env.store, "--id", "done").ok(t)
	env.wait(t, "done")
	cli(t, "start", "WaitForGo", "--store", env.store, "--id", "running").ok(t)
	env.waitRunning(t, "running")
	cli(t, "start", "WaitForGo", "--store", env.store, "--id", "held").ok(t)
	env.waitRunning(t, "held")
	cli(t, "suspend", "held", "--store", env.store).ok(t)
	env.waitStatus(t, "held", duro.StatusSuspended)

	tests := []struct {
		name  string
		store string
		args  []string
		code  int
		err   string
	}{
		// The store decides: exit 1.
		{"no decision", one.store, []string{"resume", "one"}, exitFailure,
			`instance "one" waits for a decision on task #0 (Charge, attempt 2): resume it with one of --retry, --result JSON or --fail MESSAGE (see 'duro decisions')`},
		{"no decision for several", two.store, []string{"resume", "two"}, exitFailure,
			`instance "two" waits for decisions on tasks #0 (Charge, attempt 2) and #1 (Charge, attempt 2): a resume decides each one, with --decide 0=DECISION --decide 1=DECISION (DECISION: retry, result:JSON or fail:MESSAGE`},
		{"short decision for several", two.store, []string{"resume", "two", "--retry"}, exitFailure,
			`waits for decisions on tasks #0 (Charge, attempt 2) and #1 (Charge, attempt 2): a resume decides each one, with --decide 0=DECISION --decide 1=DECISION`},
		{"named task of several", two.store, []string{"resume", "two", "--task", "1", "--retry"}, exitFailure,
			`instance "two" also waits for a decision on task #0 (Charge, attempt 2): a resume decides every waiting task; add --decide N=DECISION for each`},
		{"some of several", two.store, []string{"resume", "two", "--decide", "0=retry"}, exitFailure,
			`instance "two" also waits for a decision on task #1 (Charge, attempt 2)`},
		{"task not pending", one.store, []string{"resume", "one", "--task", "7", "--retry"}, exitFailure,
			`task #7 does not wait for a decision: instance "one" waits on task #0 (Charge, attempt 2) (see 'duro decisions')`},
		{"tasks not pending", two.store, []string{"resume", "two", "--decide", "0=retry", "--decide", "9=retry", "--decide", "8=retry"}, exitFailure,
			`tasks #8, #9 do not wait for a decision: instance "two" waits on tasks #0 (Charge, attempt 2) and #1 (Charge, attempt 2)`},
		{"decision on a plain suspension", env.store, []string{"resume", "held", "--retry"}, exitFailure,
			`no task of instance "held" waits for a decision: resume it without --retry, --result, --fail or --decide`},
		{"decision on a running instance", env.store, []string{"resume", "running", "--decide", "0=retry"}, exitFailure,
			`instance "running" is Running, not Suspended: no task waits for a decision`},
		{"finished", env.store, []string{"resume", "done"}, exitFailure, `instance "done" has already finished (Completed)`},
		{"finished with a decision", env.store, []string{"resume", "done", "--retry"}, exitFailure, `instance "done" has already finished (Completed)`},
		{"unknown ID", env.store, []string{"resume", "ghost", "--retry"}, exitFailure, `no instance with ID "ghost"`},

		// The command line is wrong: exit 2, nothing is read or sent.
		{"malformed result", one.store, []string{"resume", "one", "--result", "{bad"}, exitUsage, "--result is not valid JSON"},
		{"empty result", one.store, []string{"resume", "one", "--result", " "}, exitUsage, "--result needs a JSON value"},
		{"missing result file", one.store, []string{"resume", "one", "--result", "@/nonexistent/r.json"}, exitUsage, "--result: open /nonexistent/r.json"},
		{"malformed decided result", one.store, []string{"resume", "one", "--decide", "0=result:{x"}, exitUsage,
			"--decide 0=result: the result is not valid JSON"},
		{"empty decided result", one.store, []string{"resume", "one", "--decide", "0=result:"}, exitUsage, "result needs its JSON after a colon"},
		{"decided result without colon", one.store, []string{"resume", "one", "--decide", "0=result"}, exitUsage, "result needs its JSON after a colon"},
		{"unknown decision", one.store, []string{"resume", "one", "--decide", "0=maybe"}, exitUsage, `unknown decision "maybe"; want N=DECISION, DECISION being retry, result:JSON or fail:MESSAGE`},
		{"retry with an argument", one.store, []string{"resume", "one", "--decide", "0=retry:now"}, exitUsage, "retry takes nothing after it"},
		{"no task ID", one.store, []string{"resume", "one", "--decide", "x=retry"}, exitUsage, `"x" is not a task ID`},
		{"negative task ID", one.store, []string{"resume", "one", "--decide", "-1=retry"}, exitUsage, `"-1" is not a task ID`},
		{"no equals", one.store, []string{"resume", "one", "--decide", "retry"}, exitUsage, "no '='"},
		{"two decisions for a task", one.store, []string{"resume", "one", "--decide", "0=retry", "--decide", "0=fail:x"}, exitUsage,
			"--decide: two decisions for task #0"},
		{"retry and fail", one.store, []string{"resume", "one", "--retry", "--fail", "x"}, exitUsage,
			"--retry and --fail: give one decision (to decide several tasks, give --decide N=DECISION for each)"},
		{"all three", one.store, []string{"resume", "one", "--retry", "--result", "1", "--fail", "x"}, exitUsage, "--retry and --result and --fail: give one decision"},
		{"task without decision", one.store, []string{"resume", "one", "--task", "0"}, exitUsage, "--task needs a decision"},
		{"negative task", one.store, []string{"resume", "one", "--task", "-1", "--retry"}, exitUsage, "--task -1: task IDs are not negative"},
		{"short and decide", one.store, []string{"resume", "one", "--retry", "--decide", "0=retry"}, exitUsage,
			"give the decisions either with --decide, or with --retry, --result or --fail (and --task), not both"},
		{"task and decide", one.store, []string{"resume", "one", "--task", "0", "--decide", "0=retry"}, exitUsage, "not both"},
		{"no ID", one.store, []string{"resume"}, exitUsage, "(ID)"},
	}
	// In order, not in parallel: the checks below must follow every case.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli(t, append([]string{"--store", tt.store}, tt.args...)...).fails(t, tt.code, tt.err)
		})
	}
	// Nothing was sent: the instances still wait for their decisions.
	for _, e := range []*decisionEnv{one, two} {
		inst, err := e.c.Get(t.Context(), e.id)
		if err != nil {
			t.Fatal(err)
		}
		if inst.Status != duro.StatusSuspended || len(inst.Suspension.Pending) != map[string]int{"one": 1, "two": 2}[e.id] {
			t.Errorf("%s after failed resumes: %s %+v", e.id, inst.Status, inst.Suspension)
		}
		if h := cli(t, "history", e.id, "--store", e.store).ok(t); strings.Contains(h.stdout, "ExecutionResumed") {
			t.Errorf("%s resumed:\n%s", e.id, h.stdout)
		}
	}
	if e := env.waitStatus(t, "held", duro.StatusSuspended); e.Suspension == nil {
		t.Errorf("held: %+v", e)
	}
}

func TestResumeNotSuspended(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "WaitForGo", "--store", env.store, "--id", "r").ok(t)
	env.waitRunning(t, "r")
	r := cli(t, "resume", "r", "--store", env.store).ok(t)
	if !strings.Contains(r.stdout, "resume of r requested") ||
		!strings.Contains(r.stdout, "note: r is Running, not Suspended: the resume only undoes a suspension requested before it") {
		t.Fatalf("stdout %q", r.stdout)
	}
	// The resume changes nothing.
	cli(t, "raise", "r", "go", "--data", "1", "--store", env.store).ok(t)
	if inst := env.wait(t, "r"); inst.Status != duro.StatusCompleted {
		t.Fatalf("status %s", inst.Status)
	}
}

// TestResumeWait: --wait prints what the step did with the resume, and
// --outcome reads it again later.
func TestResumeWait(t *testing.T) {
	t.Parallel()
	env := newDecisionEnv(t, "pay", 1)
	r := cli(t, "resume", "pay", "--store", env.store, "--retry", "--wait").ok(t)
	for _, w := range []string{"resume of pay requested (resume/", "resume resume/", " of pay: applied\n",
		"  task #0 retry: applied: its code runs again as attempt 3\n"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
		}
	}
	rid := r.stdout[strings.Index(r.stdout, "(resume/")+1:]
	rid = rid[:strings.Index(rid, ")")]
	o := cli(t, "resume", "pay", "--store", env.store, "--outcome", rid).ok(t)
	if !strings.Contains(o.stdout, "resume "+rid+" of pay: applied") {
		t.Errorf("--outcome:\n%s", o.stdout)
	}
	if inst := env.wait(t, "pay"); inst.Status != duro.StatusCompleted {
		t.Errorf("status %s", inst.Status)
	}
}
