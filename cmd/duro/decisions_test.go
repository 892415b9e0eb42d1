package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
)

func TestDecisions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		charges int
		want    []string
		resume  []string // the printed command's decisions, to run
		output  string
	}{
		{
			name: "one task", charges: 1,
			want: []string{
				"1 task waits for a decision:\n\n",
				"pay (Pay), suspended since 2",
				`  reason:   possible duplicate: activity "Charge" (task 0) attempt 2; an earlier delivery may have run` + "\n",
				"  task #0:  Charge, attempt 2, previous delivery 2",
				"            input: 0\n",
				"  resume:   duro resume pay --task 0 --retry --store ",
				"# run Charge again (attempt 3)\n",
				"            duro resume pay --task 0 --result JSON --store ",
				"            duro resume pay --task 0 --fail MESSAGE --store ",
			},
			output: `["charge 0 on attempt 3"]`,
		},
		{
			name: "several tasks", charges: 2,
			want: []string{
				"2 tasks wait for a decision:\n\n",
				"pay (Pay), suspended since 2",
				"  task #0:  Charge, attempt 2, previous delivery 2",
				"            input: 0\n",
				"  task #1:  Charge, attempt 2, previous delivery 2",
				"            input: 1\n",
				"  resume:   duro resume pay --decide 0=DECISION --decide 1=DECISION --store ",
				"            # DECISION for each task: retry, result:JSON or fail:MESSAGE\n",
			},
			resume: []string{"0=retry", "1=result:\"ch_1\""},
			output: `["charge 0 on attempt 3","ch_1"]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newDecisionEnv(t, "pay", tt.charges)
			r := cli(t, "decisions", "--store", env.store).ok(t)
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}

			r = cli(t, "decisions", "--store", env.store, "-o", "json").ok(t)
			var got []pendingTaskJSON
			decodeJSON(t, r.stdout, &got)
			if len(got) != tt.charges {
				t.Fatalf("decisions -o json: %d tasks, want %d:\n%s", len(got), tt.charges, r.stdout)
			}
			for i, g := range got {
				if g.InstanceID != "pay" || g.Orchestration != "Pay" || g.TaskID != i || g.Activity != "Charge" || g.Attempt != 2 ||
					g.PreviousDeliveryAt.IsZero() || g.SuspendedAt.Before(g.PreviousDeliveryAt) || g.PreviousDeliveryAt.Location() != time.UTC ||
					compact(t, g.Input) != string(rune('0'+i)) || !strings.Contains(g.Reason, "possible duplicate") ||
					!g.Options.AtMostOnce || g.Options.OnDuplicate != string(duro.OnDuplicateSuspend) ||
					!strings.HasPrefix(g.Resume, "duro resume pay ") || !strings.HasSuffix(g.Resume, " --store "+quoteArg(env.store)) {
					t.Errorf("task %d: %+v", i, g)
				}
			}

			// The printed command works.
			args := []string{"resume", "pay", "--store", env.store}
			if tt.resume == nil {
				args = append(args, "--task", "0", "--retry")
				if !strings.Contains(r.stdout, `"resume": "duro resume pay --task 0 (--retry | --result JSON | --fail MESSAGE) --store`) {
					t.Errorf("resume command in JSON:\n%s", r.stdout)
				}
			}
			for _, d := range tt.resume {
				args = append(args, "--decide", d)
			}
			cli(t, args...).ok(t)
			if inst := env.wait(t, "pay"); inst.Status != duro.StatusCompleted || string(inst.RawOutput) != tt.output {
				t.Fatalf("after the resume: %s %s", inst.Status, inst.RawOutput)
			}
			if r := cli(t, "decisions", "--store", env.store).ok(t); r.stdout != "no task waits for a decision\n" {
				t.Errorf("after the resume: %q", r.stdout)
			}
		})
	}
}

func TestDecisionsPrintedCommandsWithoutStore(t *testing.T) {
	t.Parallel()
	env := newDecisionEnv(t, "pay", 1)
	r := cliEnv(t, map[string]string{"DURO_STORE": env.store}, "decisions").ok(t)
	if strings.Contains(r.stdout, "--store") || !strings.Contains(r.stdout, "duro resume pay --task 0 --retry  ") {
		t.Errorf("with DURO_STORE, printed commands need no --store:\n%s", r.stdout)
	}
}

func TestDecisionsEmptyAndErrors(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	tests := []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{name: "none", args: []string{"decisions"}, out: "no task waits for a decision\n"},
		{name: "none as JSON", args: []string{"decisions", "-o", "json"}, out: "[]\n"},
		{name: "bad output", args: []string{"decisions", "-o", "yaml"}, code: exitUsage, err: "want text or json"},
		{name: "argument", args: []string{"decisions", "pay"}, code: exitUsage, err: `unexpected argument "pay"`},
		{name: "missing store", args: []string{"decisions", "--store", filepath.Join(t.TempDir(), "nope.db")}, code: exitFailure, err: "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := cli(t, append([]string{"--store", store}, tt.args...)...)
			if tt.code == 0 {
				if r.ok(t); r.stdout != tt.out {
					t.Errorf("stdout %q, want %q", r.stdout, tt.out)
				}
				return
			}
			r.fails(t, tt.code, tt.err)
		})
	}
}
