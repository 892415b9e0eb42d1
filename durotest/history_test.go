package durotest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/durotest"
)

func registerGreeting(env *durotest.Env) {
	duro.RegisterActivity(env.Registry(), "Greet", func(ctx duro.ActivityContext, name string) (string, error) {
		return "hello " + name, nil
	})
	duro.RegisterOrchestration(env.Registry(), "Greeting", func(ctx *duro.OrchestrationContext, name string) (string, error) {
		if err := ctx.Sleep(time.Hour); err != nil {
			return "", err
		}
		var s string
		err := ctx.CallActivity("Greet", name).Await(&s)
		return s, err
	})
}

func TestHistoryText(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start))
	registerGreeting(env)
	inst := env.Run("Greeting", "ann", duro.StartOptions{InstanceID: "g1"})
	want := `+0s        ExecutionStarted Greeting input="ann"
+0s        TimerCreated #0 in=1h0m0s
+1h0m0s    TimerFired #0
+1h0m0s    TaskScheduled #1 Greet input="ann"
+1h0m0s    TaskCompleted #1 attempt=1 result="hello ann"
+1h0m0s    ExecutionCompleted status=Completed result="hello ann"
`
	if got := env.HistoryText(inst.ID); got != want {
		t.Fatalf("history:\n%s\nwant:\n%s", got, want)
	}
	h := env.History(inst.ID)
	if len(h) < 2 || h[0].Type != "OrchestratorStarted" || durotest.Describe(h[1]) != `ExecutionStarted Greeting input="ann"` {
		t.Fatalf("history %v", h)
	}
}

// The assertions fail with the history when it does not match.
func TestAssertionsFail(t *testing.T) {
	run := func(ft *fakeT) (*durotest.Env, string) {
		env := durotest.New(ft, durotest.WithStartTime(start))
		registerGreeting(env)
		return env, env.Run("Greeting", "bob").ID
	}
	msg := failure(t, func(ft *fakeT) {
		env, id := run(ft)
		env.AssertActivityCalled(ft, id, "Greet", 2)
	})
	mustContain(t, msg, `called activity "Greet" 1 times; want 2`, "TaskScheduled #1 Greet")

	msg = failure(t, func(ft *fakeT) {
		env, id := run(ft)
		env.AssertHistory(ft, id, "TaskCompleted #1", "TimerFired #0")
	})
	mustContain(t, msg, `no event matches "TimerFired #0" after the ones matching ["TaskCompleted #1"]`, "History:")

	// And pass when it does.
	env := durotest.New(t, durotest.WithStartTime(start))
	registerGreeting(env)
	id := env.Run("Greeting", "cy").ID
	env.AssertActivityCalled(t, id, "Greet", 1)
	env.AssertActivityCalled(t, id, "Other", 0)
	env.AssertHistory(t, id, "TimerFired #0", `TaskCompleted #1 attempt=1 result="hello cy"`)
	if strings.Contains(env.HistoryText(id), "OrchestratorStarted") {
		t.Fatal("HistoryText shows OrchestratorStarted")
	}
}
