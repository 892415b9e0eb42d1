package backendtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// concurrentCreateTests check that one instance ID is created once however
// many callers create it at the same moment: through CreateInstance (a
// client's Start, an entity's first signal from a client) and through the
// StartInstances of concurrent steps (sub-orchestrations, and entities,
// which every first message creates). A store that looks for the ID and
// then writes it, holding nothing that keeps a concurrent creator out
// between the two, lets several creators succeed, and the later write
// resets what the earlier one committed: its state, its inbox's ready
// summary, its execution.
func concurrentCreateTests() []test {
	return []test{
		{"CreateInstanceOneWinner", testCreateOneWinner},
		{"ReplaceFinishedOneWinner", testReplaceFinishedOneWinner},
		{"ClientStartOneWinner", testClientStartOneWinner},
		{"StepsStartOneChild", testStepsStartOneChild},
		{"ChildStateSurvivesConcurrentStarts", testChildStateSurvivesStarts},
		{"ClientsSignalFreshEntity", testClientsSignalFreshEntity},
		{"OrchestrationsSignalFreshEntity", testOrchestrationsSignalFreshEntity},
	}
}

// together runs fn(0), ..., fn(n-1) on n goroutines released at the same
// moment and returns their errors by index.
func together(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	gate := make(chan struct{})
	var ready, done sync.WaitGroup
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-gate
			errs[i] = fn(i)
		}()
	}
	ready.Wait()
	close(gate)
	done.Wait()
	return errs
}

// oneWinner returns the index of the only nil error in errs and fails unless
// there is exactly one and every other error wraps lost.
func (e *env) oneWinner(what string, errs []error, lost error) int {
	e.t.Helper()
	winner := -1
	var winners []int
	for i, err := range errs {
		switch {
		case err == nil:
			winner = i
			winners = append(winners, i)
		case !errors.Is(err, lost):
			e.t.Fatalf("%s: caller %d: err = %v, want nil or an error wrapping %q", what, i, err, lost)
		}
	}
	if len(winners) != 1 {
		e.t.Fatalf("%s: callers %v succeeded, want exactly one (the others must get %q)", what, winners, lost)
	}
	return winner
}

// wantOnlyStart fails unless wi carries exactly one message, the
// ExecutionStarted of execution exec, and the instance is on that execution.
func (e *env) wantOnlyStart(wi *backend.OrchestrationWorkItem, exec string) {
	e.t.Helper()
	id := wi.Instance.ID
	starts := 0
	for _, m := range wi.Messages {
		if m.Event.Type == backend.EventExecutionStarted {
			starts++
		}
	}
	if starts != 1 {
		e.t.Fatalf("instance %q: %d ExecutionStarted messages %q, want 1", id, starts, msgIDs(wi.Messages))
	}
	e.wantMessages(wi, backend.StartMessageID(id, exec))
	if wi.Instance.ExecutionID != exec {
		e.t.Fatalf("instance %q: ExecutionID %q, want the winner's %q", id, wi.Instance.ExecutionID, exec)
	}
}

// testCreateOneWinner: racers create each ID at once with IfExistsFail;
// exactly one succeeds, the others get ErrInstanceExists, and the instance
// is the winner's, with one ExecutionStarted message.
func testCreateOneWinner(t *testing.T, e *env) {
	const ids, racers = 10, 8
	params := func(i int) *backend.CreateInstanceParams {
		id := "a" + strconv.Itoa(i/racers)
		return &backend.CreateInstanceParams{ID: id, Name: orchName, ExecutionID: fmt.Sprintf("%s-e%d", id, i%racers),
			Input: fmt.Appendf(nil, `"input %d"`, i), Now: e.t0}
	}
	errs := together(ids*racers, func(i int) error { return e.b.CreateInstance(e.ctx, params(i)) })
	steps := e.claimAll(e.t0)
	for n := range ids {
		w := n*racers + e.oneWinner(fmt.Sprintf("CreateInstance(%q) by %d callers at once", params(n*racers).ID, racers),
			errs[n*racers:(n+1)*racers], backend.ErrInstanceExists)
		p := params(w)
		wi := steps[p.ID]
		if wi == nil {
			t.Fatalf("instance %q is not claimable after the racing creates", p.ID)
		}
		e.wantOnlyStart(wi, p.ExecutionID)
		e.wantBytes(fmt.Sprintf("instance %q: Input", p.ID), wi.Instance.Input, p.Input)
		if wi.Instance.Status != backend.StatusPending {
			t.Fatalf("instance %q: Status %s, want Pending", p.ID, wi.Instance.Status)
		}
	}
	if len(steps) != ids {
		t.Fatalf("claimed %d instances, want %d", len(steps), ids)
	}
}

// testReplaceFinishedOneWinner: racers with IfExistsReplaceFinished, on a
// finished instance and on a fresh ID: exactly one replaces (or creates),
// and the others find a live instance: ErrInstanceExists.
func testReplaceFinishedOneWinner(t *testing.T, e *env) {
	const rounds, racers = 4, 8
	for r := range rounds {
		e.start("done"+strconv.Itoa(r), nil)
		e.end("done"+strconv.Itoa(r), backend.StatusCompleted, e.t0)
	}
	// Racers 0..racers-1 go for done<r>, the next racers for fresh<r>.
	params := func(i int) *backend.CreateInstanceParams {
		r, k := i/(2*racers), i%(2*racers)
		id := "done" + strconv.Itoa(r)
		if k >= racers {
			id = "fresh" + strconv.Itoa(r)
		}
		return &backend.CreateInstanceParams{ID: id, Name: orchName, ExecutionID: fmt.Sprintf("%s-r%d", id, k),
			IfExists: backend.IfExistsReplaceFinished, Now: e.at(time.Minute)}
	}
	errs := together(rounds*2*racers, func(i int) error { return e.b.CreateInstance(e.ctx, params(i)) })
	steps := e.claimAll(e.at(time.Minute))
	for g := range 2 * rounds {
		first := g * racers
		p := params(first + e.oneWinner(fmt.Sprintf("CreateInstance(%q, IfExistsReplaceFinished) by %d callers at once",
			params(first).ID, racers), errs[first:first+racers], backend.ErrInstanceExists))
		wi := steps[p.ID]
		if wi == nil {
			t.Fatalf("instance %q is not claimable after the racing creates", p.ID)
		}
		e.wantOnlyStart(wi, p.ExecutionID)
		if len(wi.History) != 0 {
			t.Fatalf("instance %q: replaced instance has %d history events, want none", p.ID, len(wi.History))
		}
	}
}

// testClientStartOneWinner: Client.Start with one InstanceID from many
// goroutines: one starts the instance, the others get ErrInstanceExists.
func testClientStartOneWinner(t *testing.T, e *env) {
	const ids, racers = 8, 8
	c := duro.NewClient(e.b, nil)
	id := func(i int) string { return "start" + strconv.Itoa(i/racers) }
	errs := together(ids*racers, func(i int) error {
		_, err := c.Start(e.ctx, orchName, i, duro.StartOptions{InstanceID: id(i)})
		return err
	})
	// The client stamps the backend's clock; t0 is an hour later.
	steps := e.claimAll(e.t0)
	for n := range ids {
		w := n*racers + e.oneWinner(fmt.Sprintf("Client.Start(%q) by %d callers at once", id(n*racers), racers),
			errs[n*racers:(n+1)*racers], duro.ErrInstanceExists)
		wi := steps[id(w)]
		if wi == nil {
			t.Fatalf("instance %q is not claimable after the racing starts", id(w))
		}
		e.wantOnlyStart(wi, wi.Instance.ExecutionID)
		e.wantBytes(fmt.Sprintf("instance %q: Input", id(w)), wi.Instance.Input, []byte(strconv.Itoa(w)))
	}
}

// parents creates n instances p0..p<n-1> and claims their first steps at t0.
func (e *env) parents(n int) ([]*backend.CreateInstanceParams, []*backend.OrchestrationWorkItem) {
	e.t.Helper()
	cs := make([]*backend.CreateInstanceParams, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = "p" + strconv.Itoa(i)
		cs[i] = e.create(ids[i], nil)
	}
	claimed := e.claimEach(e.t0, ids...)
	wis := make([]*backend.OrchestrationWorkItem, n)
	for i, id := range ids {
		wis[i] = claimed[id]
	}
	return cs, wis
}

// testStepsStartOneChild: the steps of several parents start the same new
// children, and send them a message, at once. Each child is created by one
// parent, whose ExecutionStarted is its only one; every other parent's task
// gets SubOrchestrationFailed; every message reaches the child.
func testStepsStartOneChild(t *testing.T, e *env) {
	const parents, kids = 8, 3
	cs, wis := e.parents(parents)
	kidID := func(k int) string { return "kid" + strconv.Itoa(k) }
	kidExec := func(k, i int) string { return fmt.Sprintf("%s-by-p%d", kidID(k), i) }
	errs := together(parents, func(i int) error {
		p := stepParams(wis[i], e.t0)
		for k := range kids {
			p.StartInstances = append(p.StartInstances, &backend.CreateInstanceParams{
				ID: kidID(k), Name: "childOrch", ExecutionID: kidExec(k, i), Input: fmt.Appendf(nil, `"from p%d"`, i),
				Parent: &backend.ParentRef{InstanceID: cs[i].ID, ExecutionID: cs[i].ExecutionID, TaskID: k + 1}, Now: e.t0,
			})
			p.Messages = append(p.Messages, raised(kidID(k), fmt.Sprintf("p%d->%s", i, kidID(k)), "hello"))
		}
		return e.b.CompleteOrchestrationStep(e.ctx, p)
	})
	for i, err := range errs {
		e.noErr(fmt.Sprintf("CompleteOrchestrationStep(p%d) starting the children", i), err)
	}
	steps := e.claimAll(e.t0)
	for k := range kids {
		wi := steps[kidID(k)]
		if wi == nil {
			t.Fatalf("child %q is not claimable after the racing steps", kidID(k))
		}
		par := wi.Instance.Parent
		if par == nil || par.TaskID != k+1 {
			t.Fatalf("child %q: Parent = %+v, want task %d of one of the parents", kidID(k), par, k+1)
		}
		winner, err := strconv.Atoi(par.InstanceID[1:])
		if err != nil {
			t.Fatalf("child %q: Parent = %+v", kidID(k), par)
		}
		starts, hellos := 0, map[string]bool{}
		for _, m := range wi.Messages {
			switch m.Event.Type {
			case backend.EventExecutionStarted:
				starts++
				if m.ID != backend.StartMessageID(kidID(k), kidExec(k, winner)) {
					t.Fatalf("child %q: ExecutionStarted %q, want the one of its parent p%d", kidID(k), m.ID, winner)
				}
			case backend.EventEventRaised:
				hellos[m.ID] = true
			}
		}
		if starts != 1 || len(hellos) != parents || len(wi.Messages) != parents+1 {
			t.Fatalf("child %q: messages %q, want its one ExecutionStarted and a message from each of %d parents",
				kidID(k), msgIDs(wi.Messages), parents)
		}
		if wi.Instance.ExecutionID != kidExec(k, winner) {
			t.Fatalf("child %q: ExecutionID %q, want %q", kidID(k), wi.Instance.ExecutionID, kidExec(k, winner))
		}
		for i := range parents {
			failID := backend.ResultMessageID(backend.TaskMessageID(cs[i].ID, cs[i].ExecutionID, k+1))
			got := false
			if pw := steps[cs[i].ID]; pw != nil {
				for _, m := range pw.Messages {
					if m.ID == failID {
						got = m.Event.Type == backend.EventSubOrchestrationFailed
					}
				}
			}
			if got == (i == winner) {
				t.Fatalf("parent p%d (child %q created by p%d): got SubOrchestrationFailed for task %d: %v",
					i, kidID(k), winner, k+1, got)
			}
		}
	}
}

// testChildStateSurvivesConcurrentStarts: the steps of several parents
// start one new parentless child (as steps start an entity) and send it a
// message, while another goroutine processes the child, keeping in its
// custom status the number of messages it consumed. The child's committed
// state is never reset, its execution never changes, and every message is
// processed once.
func testChildStateSurvivesStarts(t *testing.T, e *env) {
	const parents = 8
	_, wis := e.parents(parents)
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	type outcome struct {
		consumed, starts int
		err              error
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() { done <- o }()
		exec := ""
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for o.consumed < parents {
			wi, err := e.b.ClaimOrchestrationStep(ctx, e.claimParams(e.t0))
			if err != nil {
				o.err = fmt.Errorf("after consuming %d of %d messages: ClaimOrchestrationStep: %w", o.consumed, parents, err)
				return
			}
			if wi == nil {
				select {
				case <-ctx.Done():
					o.err = fmt.Errorf("child consumed %d of %d messages; the rest never became claimable", o.consumed, parents)
					return
				case <-tick.C:
					continue
				}
			}
			if wi.Instance.ID != "kid" {
				o.err = fmt.Errorf("claimed %q, want only the child", wi.Instance.ID)
				return
			}
			if exec == "" {
				exec = wi.Instance.ExecutionID
			} else if wi.Instance.ExecutionID != exec {
				o.err = fmt.Errorf("child's execution changed from %q to %q: it was created again", exec, wi.Instance.ExecutionID)
				return
			}
			before := 0
			if cs := wi.Instance.CustomStatus; cs != nil {
				if before, err = strconv.Atoi(string(cs)); err != nil {
					o.err = fmt.Errorf("child custom status %q", cs)
					return
				}
			}
			if before != o.consumed {
				o.err = fmt.Errorf("child's committed state says %d messages consumed, %d were: its state was reset", before, o.consumed)
				return
			}
			n := 0
			for _, m := range wi.Messages {
				switch m.Event.Type {
				case backend.EventExecutionStarted:
					o.starts++
				case backend.EventEventRaised:
					n++
				}
			}
			p := stepParams(wi, e.t0)
			p.CustomStatus = []byte(strconv.Itoa(o.consumed + n))
			if err := e.b.CompleteOrchestrationStep(ctx, p); err != nil {
				o.err = fmt.Errorf("child's step (attempt %d): %w", wi.Attempt, err)
				return
			}
			o.consumed += n
		}
	}()
	errs := together(parents, func(i int) error {
		p := stepParams(wis[i], e.t0)
		p.StartInstances = []*backend.CreateInstanceParams{{ID: "kid", Name: "@kid", ExecutionID: "kid-by-p" + strconv.Itoa(i), Now: e.t0}}
		p.Messages = []*backend.Message{raised("kid", fmt.Sprintf("p%d->kid", i), "hello")}
		return e.b.CompleteOrchestrationStep(e.ctx, p)
	})
	for i, err := range errs {
		e.noErr(fmt.Sprintf("CompleteOrchestrationStep(p%d) starting the child", i), err)
	}
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.starts != 1 {
		t.Fatalf("child processed %d ExecutionStarted messages, want 1", o.starts)
	}
	if cs := e.instance("kid").CustomStatus; string(cs) != strconv.Itoa(parents) {
		t.Fatalf("child custom status %q after all messages, want %d", cs, parents)
	}
	e.noStep(e.t0, "every message was processed")
}

// awaitCounter waits until the counter entity id reads want, or fails when
// ctx ends first.
func awaitCounter(ctx context.Context, t *testing.T, c *duro.Client, id duro.EntityID, want int) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	got := -1
	for {
		if st, err := c.GetEntity(ctx, id); err == nil {
			var v counter
			if err := st.State(&v); err == nil {
				if got = v.Value; got == want {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("entity %s = %d, want %d", id, got, want)
		case <-tick.C:
		}
	}
}

// testClientsSignalFreshEntity: clients signal new entities from many
// goroutines at once (each signal that finds no entity creates it). Every
// operation is applied, and the entity stays claimable: a later signal is
// applied too.
func testClientsSignalFreshEntity(t *testing.T, e *env) {
	const entities, racers, signals = 8, 8, 2
	env := newSDKEnv(t, e.b, registerCounter)
	ctx, cancel := context.WithTimeout(e.ctx, 45*time.Second)
	defer cancel()
	id := func(n int) duro.EntityID { return duro.EntityID{Name: "counter", Key: "fresh" + strconv.Itoa(n)} }
	errs := together(entities*racers, func(i int) error {
		for range signals {
			if err := env.client.SignalEntity(ctx, id(i%entities), "add", 1); err != nil {
				return err
			}
		}
		return nil
	})
	for i, err := range errs {
		e.noErr(fmt.Sprintf("SignalEntity (caller %d)", i), err)
	}
	for n := range entities {
		awaitCounter(ctx, t, env.client, id(n), racers*signals)
		e.noErr("SignalEntity after the race", env.client.SignalEntity(ctx, id(n), "add", 1))
		awaitCounter(ctx, t, env.client, id(n), racers*signals+1)
	}
}

// testOrchestrationsSignalFreshEntity: orchestrations started at once each
// signal the same new entity (every step that signals it also starts it).
// Every signal is applied.
func testOrchestrationsSignalFreshEntity(t *testing.T, e *env) {
	const orchestrations, signals = 16, 3
	target := duro.EntityID{Name: "counter", Key: "shared"}
	env := newSDKEnvOpts(t, e.b, &duro.WorkerOptions{OrchestrationConcurrency: 8}, func(r *duro.Registry) {
		registerCounter(r)
		duro.RegisterOrchestration(r, "Bump", func(ctx *duro.OrchestrationContext, _ any) (any, error) {
			for range signals {
				if err := ctx.SignalEntity(target, "add", 1); err != nil {
					return nil, err
				}
			}
			return nil, nil
		})
	})
	ctx, cancel := context.WithTimeout(e.ctx, 45*time.Second)
	defer cancel()
	errs := together(orchestrations, func(i int) error {
		_, err := env.client.Start(ctx, "Bump", nil, duro.StartOptions{InstanceID: "bump" + strconv.Itoa(i)})
		return err
	})
	for i, err := range errs {
		e.noErr(fmt.Sprintf("Start(bump%d)", i), err)
	}
	for i := range orchestrations {
		inst, err := env.client.Wait(ctx, "bump"+strconv.Itoa(i))
		if err != nil || inst.Status != duro.StatusCompleted {
			t.Fatalf("bump%d: %+v, %v", i, inst, err)
		}
	}
	awaitCounter(ctx, t, env.client, target, orchestrations*signals)
	e.noErr("SignalEntity after the race", env.client.SignalEntity(ctx, target, "add", 1))
	awaitCounter(ctx, t, env.client, target, orchestrations*signals+1)
}
