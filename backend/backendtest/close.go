package backendtest

import (
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

func closeTests() []test {
	return []test{
		{"MethodsAfterCloseReturnErrClosed", testMethodsAfterClose},
	}
}

func testMethodsAfterClose(t *testing.T, e *env) {
	_, tasks := e.startWithTasks("a", 1)
	e.populate(spec{"done", "o", e.t0, backend.StatusCompleted})
	e.noErr("Close", e.b.Close())

	b, ctx, now := e.b, e.ctx, e.at(time.Minute)
	calls := []struct {
		name string
		call func() error
	}{
		{"CreateInstance", func() error {
			return b.CreateInstance(ctx, &backend.CreateInstanceParams{ID: "b", Name: orchName, ExecutionID: "b-e1", Now: now})
		}},
		{"GetInstance", func() error { _, err := b.GetInstance(ctx, "a"); return err }},
		{"ListInstances", func() error { _, err := b.ListInstances(ctx, &backend.ListInstancesParams{}); return err }},
		{"GetHistory", func() error { _, err := b.GetHistory(ctx, "a"); return err }},
		{"EnqueueMessage", func() error { return b.EnqueueMessage(ctx, raised("a", "m", "m")) }},
		{"PurgeInstance", func() error { return b.PurgeInstance(ctx, "done") }},
		{"PurgeInstances", func() error {
			_, err := b.PurgeInstances(ctx, &backend.PurgeInstancesParams{Statuses: []backend.Status{backend.StatusCompleted}})
			return err
		}},
		{"ClaimOrchestrationStep", func() error { _, err := b.ClaimOrchestrationStep(ctx, e.claimParams(now)); return err }},
		{"CompleteOrchestrationStep", func() error {
			return b.CompleteOrchestrationStep(ctx, &backend.CompleteOrchestrationStepParams{InstanceID: "a", ExecutionID: "e", Attempt: 1, Status: backend.StatusRunning, Now: now})
		}},
		{"RenewOrchestrationLease", func() error {
			return b.RenewOrchestrationLease(ctx, &backend.RenewLeaseParams{ID: "a", Attempt: 1, LeaseDuration: lease, Now: now})
		}},
		{"AbandonOrchestrationStep", func() error { return b.AbandonOrchestrationStep(ctx, &backend.AbandonParams{ID: "a", Attempt: 1}) }},
		{"ClaimActivity", func() error { _, err := b.ClaimActivity(ctx, e.claimParams(now)); return err }},
		{"CompleteActivity", func() error {
			return b.CompleteActivity(ctx, &backend.CompleteActivityParams{TaskID: tasks[0].ID, Attempt: 1, Result: &backend.Event{Type: backend.EventTaskCompleted, TaskID: 1}, Now: now})
		}},
		{"RenewActivityLease", func() error {
			return b.RenewActivityLease(ctx, &backend.RenewLeaseParams{ID: tasks[0].ID, Attempt: 1, LeaseDuration: lease, Now: now})
		}},
		{"AbandonActivity", func() error { return b.AbandonActivity(ctx, &backend.AbandonParams{ID: tasks[0].ID, Attempt: 1}) }},
	}
	for _, c := range calls {
		e.wantErr(c.name+" after Close", c.call(), backend.ErrClosed)
	}
}

func notifierTests() []test {
	return []test{
		{"WakesOnCreate", testWakeOnCreate},
		{"WakesOnEnqueue", testWakeOnEnqueue},
		{"WakesOnScheduledActivity", testWakeOnScheduledActivity},
		{"WakesOnActivityResult", testWakeOnActivityResult},
	}
}

// notifier returns the backend's WorkNotifier or skips the test.
func (e *env) notifier() backend.WorkNotifier {
	e.t.Helper()
	n, ok := e.b.(backend.WorkNotifier)
	if !ok {
		e.t.Skip("backend does not implement backend.WorkNotifier")
	}
	return n
}

// wantWake fails unless ch is closed within a few seconds of real time.
func (e *env) wantWake(ch <-chan struct{}, after string) {
	e.t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		e.t.Fatalf("WorkAvailable channel not closed within 5s after %s", after)
	}
}

func testWakeOnCreate(t *testing.T, e *env) {
	n := e.notifier()
	ch := n.WorkAvailable()
	e.create("a", nil)
	e.wantWake(ch, "CreateInstance")
	// The next wake-up comes from the next piece of work.
	ch = n.WorkAvailable()
	e.create("b", nil)
	e.wantWake(ch, "a second CreateInstance")
}

func testWakeOnEnqueue(t *testing.T, e *env) {
	n := e.notifier()
	e.start("a", nil)
	ch := n.WorkAvailable()
	e.enqueue(raised("a", "m", "m"))
	e.wantWake(ch, "EnqueueMessage")
}

func testWakeOnScheduledActivity(t *testing.T, e *env) {
	n := e.notifier()
	c := e.create("a", nil)
	wi := e.claimStep("a", e.t0)
	ch := n.WorkAvailable()
	e.commit(wi, e.t0, func(p *backend.CompleteOrchestrationStepParams) {
		p.ActivityTasks = []*backend.ActivityTask{task(c, 1)}
	})
	e.wantWake(ch, "a step that scheduled an activity task")
}

func testWakeOnActivityResult(t *testing.T, e *env) {
	n := e.notifier()
	_, tasks := e.startWithTasks("a", 1)
	wi := e.claimActivity(tasks[0].ID, e.t0)
	ch := n.WorkAvailable()
	e.noErr("CompleteActivity", e.b.CompleteActivity(e.ctx, completed(wi, e.t0)))
	e.wantWake(ch, "CompleteActivity (its result is a message for a step)")
}
