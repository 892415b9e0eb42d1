package backendtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/durohq/duro/backend"
)

// lease is the lease duration of every claim the suite makes.
const lease = time.Minute

// orchName is the orchestration name of the instances the suite creates.
const orchName = "orch"

// create creates instance id at t0 (execution id+"-e1", Name orchName); edit
// may change the params first. It returns the params used.
func (e *env) create(id string, edit func(*backend.CreateInstanceParams)) *backend.CreateInstanceParams {
	e.t.Helper()
	p := &backend.CreateInstanceParams{
		ID:          id,
		Name:        orchName,
		ExecutionID: id + "-e1",
		Input:       []byte(`"input of ` + id + `"`),
		Now:         e.t0,
	}
	if edit != nil {
		edit(p)
	}
	if err := e.b.CreateInstance(e.ctx, p); err != nil {
		e.t.Fatalf("CreateInstance(%q): %v", id, err)
	}
	return p
}

func (e *env) claimParams(now time.Time) *backend.ClaimParams {
	return &backend.ClaimParams{Owner: "backendtest", LeaseDuration: lease, Now: now}
}

// tryClaimStep claims an orchestration step at now; nil if there is none.
func (e *env) tryClaimStep(now time.Time) *backend.OrchestrationWorkItem {
	e.t.Helper()
	wi, err := e.b.ClaimOrchestrationStep(e.ctx, e.claimParams(now))
	if err != nil {
		e.t.Fatalf("ClaimOrchestrationStep(Now=%s): %v", e.rel(now), err)
	}
	if wi != nil && wi.Instance == nil {
		e.t.Fatalf("ClaimOrchestrationStep(Now=%s): work item without Instance", e.rel(now))
	}
	return wi
}

// claimStep claims the step of instance id at now and fails if it gets
// nothing or another instance.
func (e *env) claimStep(id string, now time.Time) *backend.OrchestrationWorkItem {
	e.t.Helper()
	wi := e.tryClaimStep(now)
	if wi == nil {
		e.t.Fatalf("ClaimOrchestrationStep(Now=%s) = nil, want a step of %q", e.rel(now), id)
	}
	if wi.Instance.ID != id {
		e.t.Fatalf("ClaimOrchestrationStep(Now=%s) claimed %q, want %q", e.rel(now), wi.Instance.ID, id)
	}
	return wi
}

// noStep fails if an orchestration step is claimable at now.
func (e *env) noStep(now time.Time, why string) {
	e.t.Helper()
	if wi := e.tryClaimStep(now); wi != nil {
		e.t.Fatalf("ClaimOrchestrationStep(Now=%s) claimed %q (attempt %d, messages %s); want nothing: %s",
			e.rel(now), wi.Instance.ID, wi.Attempt, msgIDs(wi.Messages), why)
	}
}

// claimAll claims every step claimable at now, by instance ID.
func (e *env) claimAll(now time.Time) map[string]*backend.OrchestrationWorkItem {
	e.t.Helper()
	all := map[string]*backend.OrchestrationWorkItem{}
	for {
		wi := e.tryClaimStep(now)
		if wi == nil {
			return all
		}
		if all[wi.Instance.ID] != nil {
			e.t.Fatalf("ClaimOrchestrationStep(Now=%s) claimed %q twice: its lease is live", e.rel(now), wi.Instance.ID)
		}
		all[wi.Instance.ID] = wi
	}
}

// claimEach claims every step claimable at now and fails unless they are
// exactly those of instances ids.
func (e *env) claimEach(now time.Time, ids ...string) map[string]*backend.OrchestrationWorkItem {
	e.t.Helper()
	all := e.claimAll(now)
	want := slices.Sorted(slices.Values(ids))
	if got := keys(all); !slices.Equal(got, want) {
		e.t.Fatalf("claimable at %s: steps of %q, want %q", e.rel(now), got, want)
	}
	return all
}

// stepParams are the params that complete wi at now as status Running,
// consuming every message it carries and recording them in history after an
// OrchestratorStarted event.
func stepParams(wi *backend.OrchestrationWorkItem, now time.Time) *backend.CompleteOrchestrationStepParams {
	p := &backend.CompleteOrchestrationStepParams{
		InstanceID:  wi.Instance.ID,
		ExecutionID: wi.Instance.ExecutionID,
		Attempt:     wi.Attempt,
		NewEvents:   []*backend.Event{{Type: backend.EventOrchestratorStarted, Timestamp: now}},
		Status:      backend.StatusRunning,
		Now:         now,
	}
	for _, m := range wi.Messages {
		p.ConsumedMessageIDs = append(p.ConsumedMessageIDs, m.ID)
		p.NewEvents = append(p.NewEvents, m.Event)
	}
	return p
}

// commit completes wi at now with stepParams, changed by edit if not nil.
func (e *env) commit(wi *backend.OrchestrationWorkItem, now time.Time, edit func(*backend.CompleteOrchestrationStepParams)) *backend.CompleteOrchestrationStepParams {
	e.t.Helper()
	p := stepParams(wi, now)
	if edit != nil {
		edit(p)
	}
	if err := e.b.CompleteOrchestrationStep(e.ctx, p); err != nil {
		e.t.Fatalf("CompleteOrchestrationStep(%q, attempt %d): %v", p.InstanceID, p.Attempt, err)
	}
	return p
}

// start creates instance id and commits its first step at t0 (status
// Running), changed by edit if not nil. It returns the creation params.
func (e *env) start(id string, edit func(*backend.CompleteOrchestrationStepParams)) *backend.CreateInstanceParams {
	e.t.Helper()
	c := e.create(id, nil)
	e.commit(e.claimStep(id, e.t0), e.t0, edit)
	return c
}

// task is activity task n of the instance created with c.
func task(c *backend.CreateInstanceParams, n int) *backend.ActivityTask {
	return &backend.ActivityTask{
		ID:          backend.TaskMessageID(c.ID, c.ExecutionID, n),
		InstanceID:  c.ID,
		ExecutionID: c.ExecutionID,
		TaskID:      n,
		Name:        "act",
		Input:       fmt.Appendf(nil, `"input of task %d"`, n),
	}
}

// startWithTasks starts instance id with a first step that schedules n
// activity tasks (task IDs 1..n).
func (e *env) startWithTasks(id string, n int) (*backend.CreateInstanceParams, []*backend.ActivityTask) {
	e.t.Helper()
	c := e.create(id, nil)
	var tasks []*backend.ActivityTask
	for i := 1; i <= n; i++ {
		tasks = append(tasks, task(c, i))
	}
	e.commit(e.claimStep(id, e.t0), e.t0, func(p *backend.CompleteOrchestrationStepParams) {
		p.ActivityTasks = tasks
		for _, tk := range tasks {
			p.NewEvents = append(p.NewEvents, &backend.Event{Type: backend.EventTaskScheduled, Timestamp: e.t0, TaskID: tk.TaskID, Name: tk.Name, Input: tk.Input})
		}
	})
	return c, tasks
}

// raised is an external event message.
func raised(instanceID, msgID, name string) *backend.Message {
	return &backend.Message{
		ID:         msgID,
		InstanceID: instanceID,
		Event:      &backend.Event{Type: backend.EventEventRaised, Name: name, Input: []byte(`"` + msgID + `"`)},
	}
}

// enqueue sends m from outside a step and fails on error.
func (e *env) enqueue(m *backend.Message) {
	e.t.Helper()
	if err := e.b.EnqueueMessage(e.ctx, m); err != nil {
		e.t.Fatalf("EnqueueMessage(%q to %q): %v", m.ID, m.InstanceID, err)
	}
}

// end drives instance id to the terminal status with a step at now, woken by
// an external event.
func (e *env) end(id string, status backend.Status, now time.Time) {
	e.t.Helper()
	exec := e.instance(id).ExecutionID
	e.enqueue(raised(id, id+"/"+exec+"/end", "end"))
	e.commit(e.claimStep(id, now), now, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = status
		if status == backend.StatusFailed {
			p.Failure = &backend.Failure{Message: "boom"}
		}
	})
}

// instance returns GetInstance(id) and fails on error.
func (e *env) instance(id string) *backend.Instance {
	e.t.Helper()
	inst, err := e.b.GetInstance(e.ctx, id)
	if err != nil {
		e.t.Fatalf("GetInstance(%q): %v", id, err)
	}
	if inst == nil {
		e.t.Fatalf("GetInstance(%q) = nil, nil", id)
	}
	return inst
}

// history returns GetHistory(id) and fails on error.
func (e *env) history(id string) []*backend.Event {
	e.t.Helper()
	h, err := e.b.GetHistory(e.ctx, id)
	if err != nil {
		e.t.Fatalf("GetHistory(%q): %v", id, err)
	}
	return h
}

// wantStatus fails unless instance id has status s.
func (e *env) wantStatus(id string, s backend.Status) *backend.Instance {
	e.t.Helper()
	inst := e.instance(id)
	if inst.Status != s {
		e.t.Fatalf("instance %q: Status = %s, want %s", id, inst.Status, s)
	}
	return inst
}

// tryClaimActivity claims an activity at now; nil if there is none.
func (e *env) tryClaimActivity(now time.Time) *backend.ActivityWorkItem {
	e.t.Helper()
	wi, err := e.b.ClaimActivity(e.ctx, e.claimParams(now))
	if err != nil {
		e.t.Fatalf("ClaimActivity(Now=%s): %v", e.rel(now), err)
	}
	if wi != nil && wi.Task == nil {
		e.t.Fatalf("ClaimActivity(Now=%s): work item without Task", e.rel(now))
	}
	return wi
}

// claimActivity claims activity task id at now and fails if it gets nothing
// or another task.
func (e *env) claimActivity(id string, now time.Time) *backend.ActivityWorkItem {
	e.t.Helper()
	wi := e.tryClaimActivity(now)
	if wi == nil {
		e.t.Fatalf("ClaimActivity(Now=%s) = nil, want task %q", e.rel(now), id)
	}
	if wi.Task.ID != id {
		e.t.Fatalf("ClaimActivity(Now=%s) claimed %q, want %q", e.rel(now), wi.Task.ID, id)
	}
	return wi
}

// noActivity fails if an activity task is claimable at now.
func (e *env) noActivity(now time.Time, why string) {
	e.t.Helper()
	if wi := e.tryClaimActivity(now); wi != nil {
		e.t.Fatalf("ClaimActivity(Now=%s) claimed %q (attempt %d); want nothing: %s", e.rel(now), wi.Task.ID, wi.Attempt, why)
	}
}

// completed is a TaskCompleted result for wi, with the hint of its
// instance and execution, as the worker sends it.
func completed(wi *backend.ActivityWorkItem, now time.Time) *backend.CompleteActivityParams {
	return &backend.CompleteActivityParams{
		TaskID:      wi.Task.ID,
		Attempt:     wi.Attempt,
		InstanceID:  wi.Task.InstanceID,
		ExecutionID: wi.Task.ExecutionID,
		Result: &backend.Event{
			Type: backend.EventTaskCompleted, Timestamp: now, TaskID: wi.Task.TaskID,
			Result: fmt.Appendf(nil, `"result of attempt %d"`, wi.Attempt), Attempt: wi.Attempt,
		},
		Now: now,
	}
}

// rel prints a synthetic time relative to t0.
func (e *env) rel(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return "t0+" + t.Sub(e.t0).String()
}

// wantErr fails unless err wraps target.
func (e *env) wantErr(what string, err, target error) {
	e.t.Helper()
	if !errors.Is(err, target) {
		e.t.Fatalf("%s: err = %v, want an error wrapping %q", what, err, target)
	}
}

// noErr fails on err.
func (e *env) noErr(what string, err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

func msgIDs(ms []*backend.Message) []string {
	ids := []string{}
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return ids
}

// wantMessages fails unless wi carries exactly the messages with these IDs,
// in this order.
func (e *env) wantMessages(wi *backend.OrchestrationWorkItem, ids ...string) {
	e.t.Helper()
	if got := msgIDs(wi.Messages); !slices.Equal(got, ids) {
		e.t.Fatalf("step of %q (attempt %d): messages %q, want %q", wi.Instance.ID, wi.Attempt, got, ids)
	}
}

// wantEvents fails unless got and want are equal event by event.
func (e *env) wantEvents(what string, got, want []*backend.Event) {
	e.t.Helper()
	if len(got) != len(want) {
		e.t.Fatalf("%s: %d events %s, want %d events %s", what, len(got), eventTypes(got), len(want), eventTypes(want))
	}
	for i := range got {
		if d := diffEvent(got[i], want[i]); d != "" {
			e.t.Fatalf("%s: event %d: %s", what, i, d)
		}
	}
}

func eventTypes(es []*backend.Event) []backend.EventType {
	ts := []backend.EventType{}
	for _, ev := range es {
		if ev == nil {
			ts = append(ts, "<nil>")
			continue
		}
		ts = append(ts, ev.Type)
	}
	return ts
}

// diffEvent is "" if got equals want: times compared with time.Equal and
// payloads with bytes.Equal (nil equals empty); otherwise both, as JSON.
func diffEvent(got, want *backend.Event) string {
	if reflect.DeepEqual(normEvent(got), normEvent(want)) {
		return ""
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	return fmt.Sprintf("got  %s\nwant %s", g, w)
}

func normEvent(ev *backend.Event) *backend.Event {
	if ev == nil {
		return nil
	}
	c := *ev
	c.Timestamp = normTime(c.Timestamp)
	c.FireAt = normTime(c.FireAt)
	c.Input = normBytes(c.Input)
	c.Result = normBytes(c.Result)
	c.Failure = normFailure(c.Failure)
	if c.Parent != nil {
		p := *c.Parent
		c.Parent = &p
	}
	if c.Activity != nil {
		a := *c.Activity
		c.Activity = &a
	}
	return &c
}

func normFailure(f *backend.Failure) *backend.Failure {
	if f == nil {
		return nil
	}
	c := *f
	c.Details = normBytes(c.Details)
	c.Cause = normFailure(c.Cause)
	return &c
}

// normTime drops the location and monotonic reading so that DeepEqual
// compares instants.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func normBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// sameFailure reports whether two failures are equal field by field.
func sameFailure(a, b *backend.Failure) bool {
	return reflect.DeepEqual(normFailure(a), normFailure(b))
}

// wantBytes fails unless got equals want.
func (e *env) wantBytes(what string, got, want []byte) {
	e.t.Helper()
	if !bytes.Equal(got, want) {
		e.t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

// wantTime fails unless got is the instant want.
func (e *env) wantTime(what string, got, want time.Time) {
	e.t.Helper()
	if !got.Equal(want) {
		e.t.Fatalf("%s = %s, want %s", what, e.rel(got), e.rel(want))
	}
}
