package backendtest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// spec describes an instance for populate.
type spec struct {
	id      string
	name    string
	created time.Time
	status  backend.Status
}

// populate creates the instances and drives each to its status with its
// first step. Pending ones are created last, so that every claim finds only
// the instance it is for.
func (e *env) populate(specs ...spec) {
	e.t.Helper()
	pendingLast := slices.Clone(specs)
	slices.SortStableFunc(pendingLast, func(a, b spec) int {
		return boolInt(a.status == backend.StatusPending) - boolInt(b.status == backend.StatusPending)
	})
	for _, s := range pendingLast {
		e.create(s.id, func(p *backend.CreateInstanceParams) {
			p.Name = s.name
			p.Now = s.created
		})
		if s.status == backend.StatusPending {
			continue
		}
		e.commit(e.claimStep(s.id, s.created), s.created, func(p *backend.CompleteOrchestrationStepParams) {
			p.Status = s.status
			if s.status == backend.StatusFailed {
				p.Failure = &backend.Failure{Message: "boom"}
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// list returns the IDs of every instance matching p, walking all pages, and
// fails if an instance appears twice or the order is not newest first.
func (e *env) list(p backend.ListInstancesParams) []string {
	e.t.Helper()
	var ids []string
	seen := map[string]bool{}
	var last time.Time
	for pages := 0; ; pages++ {
		if pages > 1000 {
			e.t.Fatal("ListInstances: more than 1000 pages; the page token does not advance")
		}
		page, err := e.b.ListInstances(e.ctx, &p)
		e.noErr("ListInstances", err)
		if p.PageSize > 0 && len(page.Instances) > p.PageSize {
			e.t.Fatalf("ListInstances(PageSize %d) returned %d instances", p.PageSize, len(page.Instances))
		}
		for _, inst := range page.Instances {
			if seen[inst.ID] {
				e.t.Fatalf("ListInstances: %q listed twice while paging (pages so far: %q)", inst.ID, ids)
			}
			if len(ids) > 0 && inst.CreatedAt.After(last) {
				e.t.Fatalf("ListInstances: %q (created %s) after one created %s; want newest first", inst.ID, e.rel(inst.CreatedAt), e.rel(last))
			}
			seen[inst.ID] = true
			ids = append(ids, inst.ID)
			last = inst.CreatedAt
		}
		if page.NextPageToken == "" {
			return ids
		}
		p.PageToken = page.NextPageToken
	}
}

// wantList fails unless listing with p yields exactly ids, in this order.
func (e *env) wantList(what string, p backend.ListInstancesParams, ids ...string) {
	e.t.Helper()
	if got := e.list(p); !slices.Equal(got, ids) {
		e.t.Fatalf("ListInstances %s = %q, want %q", what, got, ids)
	}
}

func listTests() []test {
	return []test{
		{"Empty", testListEmpty},
		{"NewestFirst", testListNewestFirst},
		{"FilterStatuses", testListStatuses},
		{"FilterName", testListName},
		{"FilterCreatedRange", testListCreatedRange},
		{"FilterIDPrefix", testListIDPrefix},
		{"FilterCustomStatus", testListCustomStatus},
		{"OmitPayloads", testListOmitPayloads},
		{"PageSize", testListPageSize},
		{"DefaultPageSize", testListDefaultPageSize},
		{"WalkAllPagesExactlyOnce", testListWalk},
		{"PagingStableUnderInserts", testListStableUnderInserts},
		{"BadPageToken", testListBadToken},
	}
}

func testListEmpty(t *testing.T, e *env) {
	page, err := e.b.ListInstances(e.ctx, &backend.ListInstancesParams{})
	e.noErr("ListInstances", err)
	if len(page.Instances) != 0 || page.NextPageToken != "" {
		t.Fatalf("empty store lists %d instances, token %q", len(page.Instances), page.NextPageToken)
	}
}

func testListNewestFirst(t *testing.T, e *env) {
	for i := range 5 {
		e.create(fmt.Sprint("i", i), func(p *backend.CreateInstanceParams) { p.Now = e.at(time.Duration(i) * time.Second) })
	}
	e.wantList("of all", backend.ListInstancesParams{}, "i4", "i3", "i2", "i1", "i0")
	page, err := e.b.ListInstances(e.ctx, &backend.ListInstancesParams{PageSize: 1})
	e.noErr("ListInstances", err)
	inst := page.Instances[0]
	if inst.ID != "i4" || inst.Name != orchName || inst.ExecutionID != "i4-e1" || inst.Status != backend.StatusPending || string(inst.Input) != `"input of i4"` {
		t.Fatalf("listed instance = %+v, want i4 with its name, execution, status and input", inst)
	}
	e.wantTime("listed CreatedAt", inst.CreatedAt, e.at(4*time.Second))
}

func testListStatuses(t *testing.T, e *env) {
	e.populate(
		spec{"p", "o", e.at(0), backend.StatusPending},
		spec{"r", "o", e.at(1 * time.Second), backend.StatusRunning},
		spec{"s", "o", e.at(2 * time.Second), backend.StatusSuspended},
		spec{"c", "o", e.at(3 * time.Second), backend.StatusCompleted},
		spec{"f", "o", e.at(4 * time.Second), backend.StatusFailed},
		spec{"t", "o", e.at(5 * time.Second), backend.StatusTerminated},
	)
	e.wantList("of Completed and Failed", backend.ListInstancesParams{Statuses: []backend.Status{backend.StatusCompleted, backend.StatusFailed}}, "f", "c")
	e.wantList("of Running", backend.ListInstancesParams{Statuses: []backend.Status{backend.StatusRunning}}, "r")
	e.wantList("of Pending and Suspended", backend.ListInstancesParams{Statuses: []backend.Status{backend.StatusSuspended, backend.StatusPending}}, "s", "p")
	e.wantList("of Terminated, 1 a page", backend.ListInstancesParams{Statuses: []backend.Status{backend.StatusTerminated}, PageSize: 1}, "t")
	e.wantList("of ContinuedAsNew", backend.ListInstancesParams{Statuses: []backend.Status{backend.StatusContinuedAsNew}})
}

func testListName(t *testing.T, e *env) {
	for i, name := range []string{"x", "y", "x", "xx", "X"} {
		e.create(fmt.Sprint("n", i), func(p *backend.CreateInstanceParams) { p.Name = name; p.Now = e.at(time.Duration(i) * time.Second) })
	}
	e.wantList(`named "x"`, backend.ListInstancesParams{Name: "x"}, "n2", "n0")
	e.wantList(`named "x", 1 a page`, backend.ListInstancesParams{Name: "x", PageSize: 1}, "n2", "n0")
	e.wantList(`named "z"`, backend.ListInstancesParams{Name: "z"})
}

func testListCreatedRange(t *testing.T, e *env) {
	for i := range 4 {
		e.create(fmt.Sprint("m", i), func(p *backend.CreateInstanceParams) { p.Now = e.at(time.Duration(i) * time.Minute) })
	}
	e.wantList("created in [1m, 3m)", backend.ListInstancesParams{CreatedFrom: e.at(time.Minute), CreatedTo: e.at(3 * time.Minute)}, "m2", "m1")
	e.wantList("created from 2m", backend.ListInstancesParams{CreatedFrom: e.at(2 * time.Minute)}, "m3", "m2")
	e.wantList("created before 1m", backend.ListInstancesParams{CreatedTo: e.at(time.Minute)}, "m0")
	e.wantList("created in [1m-1ms, 1m+1ms)", backend.ListInstancesParams{CreatedFrom: e.at(time.Minute - time.Millisecond), CreatedTo: e.at(time.Minute + time.Millisecond)}, "m1")
}

func testListPageSize(t *testing.T, e *env) {
	for i := range 5 {
		e.create(fmt.Sprint("i", i), func(p *backend.CreateInstanceParams) { p.Now = e.at(time.Duration(i) * time.Second) })
	}
	p := &backend.ListInstancesParams{PageSize: 2}
	for _, want := range [][]string{{"i4", "i3"}, {"i2", "i1"}, {"i0"}} {
		page, err := e.b.ListInstances(e.ctx, p)
		e.noErr("ListInstances", err)
		var got []string
		for _, inst := range page.Instances {
			got = append(got, inst.ID)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("page of 2: %q, want %q", got, want)
		}
		last := want[len(want)-1] == "i0"
		if last != (page.NextPageToken == "") {
			t.Fatalf("page %q: NextPageToken %q; want it empty on the last page only", got, page.NextPageToken)
		}
		p.PageToken = page.NextPageToken
	}
}

func testListDefaultPageSize(t *testing.T, e *env) {
	const n = 105
	for i := range n {
		e.create(fmt.Sprintf("i%03d", i), func(p *backend.CreateInstanceParams) { p.Now = e.at(time.Duration(i) * time.Second) })
	}
	page, err := e.b.ListInstances(e.ctx, &backend.ListInstancesParams{})
	e.noErr("ListInstances", err)
	if len(page.Instances) != 100 || page.NextPageToken == "" {
		t.Fatalf("PageSize 0 gave %d instances, token %q; want 100 and a token", len(page.Instances), page.NextPageToken)
	}
	if got := e.list(backend.ListInstancesParams{}); len(got) != n {
		t.Fatalf("walking default pages listed %d instances, want %d", len(got), n)
	}
}

func testListWalk(t *testing.T, e *env) {
	// 23 instances, four to a creation time, so that pages split ties.
	var all, xs []string
	for i := range 23 {
		id := fmt.Sprintf("w%02d", i)
		name := "y"
		if i%2 == 0 {
			name = "x"
			xs = append(xs, id)
		}
		all = append(all, id)
		e.create(id, func(p *backend.CreateInstanceParams) { p.Name = name; p.Now = e.at(time.Duration(i/4) * time.Second) })
	}
	for _, size := range []int{1, 3, 4, 5, 22, 23, 24} {
		if got := e.list(backend.ListInstancesParams{PageSize: size}); !sameSet(got, all) {
			t.Fatalf("walking pages of %d listed %q, want each of %q once", size, got, all)
		}
		if got := e.list(backend.ListInstancesParams{PageSize: size, Name: "x"}); !sameSet(got, xs) {
			t.Fatalf("walking pages of %d named x listed %q, want each of %q once", size, got, xs)
		}
	}
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func testListStableUnderInserts(t *testing.T, e *env) {
	var all []string
	for i := range 9 {
		id := fmt.Sprint("s", i)
		all = append(all, id)
		e.create(id, func(p *backend.CreateInstanceParams) { p.Now = e.at(time.Duration(i) * time.Second) })
	}
	p := &backend.ListInstancesParams{PageSize: 3}
	seen := map[string]int{}
	for pages := 0; ; pages++ {
		page, err := e.b.ListInstances(e.ctx, p)
		e.noErr("ListInstances", err)
		for _, inst := range page.Instances {
			seen[inst.ID]++
		}
		// Newer instances arrive between pages, as they do on a live system.
		e.create(fmt.Sprint("new", pages), func(p *backend.CreateInstanceParams) { p.Now = e.at(time.Hour + time.Duration(pages)*time.Second) })
		if page.NextPageToken == "" || pages > 10 {
			break
		}
		p.PageToken = page.NextPageToken
	}
	for _, id := range all {
		if seen[id] != 1 {
			t.Fatalf("paging while newer instances were created listed %q %d times (all: %v); want each older instance once", id, seen[id], seen)
		}
	}
}

func testListBadToken(t *testing.T, e *env) {
	e.create("a", nil)
	for _, tok := range []string{"not a token", "%%%"} {
		if _, err := e.b.ListInstances(e.ctx, &backend.ListInstancesParams{PageToken: tok}); !errors.Is(err, backend.ErrInvalidPageToken) {
			t.Errorf("ListInstances(PageToken %q): err = %v, want one wrapping backend.ErrInvalidPageToken", tok, err)
		}
	}
}

func purgeTests() []test {
	return []test{
		{"LiveInstanceRefused", testPurgeLive},
		{"Unknown", testPurgeUnknown},
		{"FinishedInstanceGone", testPurgeFinished},
		{"ByFilter", testPurgeByFilter},
		{"EmptyFilterRefused", testPurgeEmptyFilter},
	}
}

func testPurgeLive(t *testing.T, e *env) {
	e.populate(
		spec{"pending", "o", e.t0, backend.StatusPending},
		spec{"running", "o", e.t0, backend.StatusRunning},
		spec{"suspended", "o", e.t0, backend.StatusSuspended},
	)
	for _, id := range []string{"pending", "running", "suspended"} {
		e.wantErr("PurgeInstance of a "+id+" instance", e.b.PurgeInstance(e.ctx, id), backend.ErrInstanceNotFinished)
		e.instance(id)
	}
	n, err := e.b.PurgeInstances(e.ctx, &backend.PurgeInstancesParams{Statuses: []backend.Status{backend.StatusPending, backend.StatusRunning, backend.StatusSuspended}})
	e.noErr("PurgeInstances of live statuses", err)
	if n != 0 {
		t.Fatalf("PurgeInstances of live statuses purged %d, want 0", n)
	}
	e.wantList("after purging live statuses", backend.ListInstancesParams{}, "suspended", "running", "pending")
}

func testPurgeUnknown(t *testing.T, e *env) {
	e.wantErr("PurgeInstance(unknown)", e.b.PurgeInstance(e.ctx, "nope"), backend.ErrInstanceNotFound)
}

func testPurgeFinished(t *testing.T, e *env) {
	ids := []string{"completed", "failed", "terminated"}
	e.populate(
		spec{ids[0], "o", e.t0, backend.StatusCompleted},
		spec{ids[1], "o", e.t0, backend.StatusFailed},
		spec{ids[2], "o", e.t0, backend.StatusTerminated},
		spec{"other", "o", e.t0, backend.StatusCompleted},
	)
	for _, id := range ids {
		e.noErr("PurgeInstance("+id+")", e.b.PurgeInstance(e.ctx, id))
		_, err := e.b.GetInstance(e.ctx, id)
		e.wantErr("GetInstance of a purged instance", err, backend.ErrInstanceNotFound)
		_, err = e.b.GetHistory(e.ctx, id)
		e.wantErr("GetHistory of a purged instance", err, backend.ErrInstanceNotFound)
		e.wantErr("EnqueueMessage to a purged instance", e.b.EnqueueMessage(e.ctx, raised(id, "m", "m")), backend.ErrInstanceNotFound)
		e.wantErr("second PurgeInstance", e.b.PurgeInstance(e.ctx, id), backend.ErrInstanceNotFound)
	}
	e.wantList("after purges", backend.ListInstancesParams{}, "other")
	if len(e.history("other")) == 0 {
		t.Fatal("purging other instances deleted other's history")
	}
	// The ID is free again.
	e.create("completed", func(p *backend.CreateInstanceParams) { p.ExecutionID = "completed-e2"; p.Now = e.at(time.Minute) })
	e.wantMessages(e.claimStep("completed", e.at(time.Minute)), backend.StartMessageID("completed", "completed-e2"))
}

func testPurgeByFilter(t *testing.T, e *env) {
	e.populate(
		spec{"c1", "x", e.at(0), backend.StatusCompleted},
		spec{"c2", "y", e.at(1 * time.Minute), backend.StatusCompleted},
		spec{"f1", "x", e.at(2 * time.Minute), backend.StatusFailed},
		spec{"t1", "x", e.at(3 * time.Minute), backend.StatusTerminated},
		spec{"r1", "x", e.at(4 * time.Minute), backend.StatusRunning},
		spec{"p1", "x", e.at(5 * time.Minute), backend.StatusPending},
	)
	purge := func(what string, p backend.PurgeInstancesParams, want int, left ...string) {
		t.Helper()
		n, err := e.b.PurgeInstances(e.ctx, &p)
		e.noErr("PurgeInstances "+what, err)
		if n != want {
			t.Fatalf("PurgeInstances %s purged %d, want %d", what, n, want)
		}
		e.wantList("after PurgeInstances "+what, backend.ListInstancesParams{}, left...)
	}
	purge("of Running", backend.PurgeInstancesParams{Statuses: []backend.Status{backend.StatusRunning}}, 0, "p1", "r1", "t1", "f1", "c2", "c1")
	purge(`named x created before 3m`, backend.PurgeInstancesParams{Name: "x", CreatedTo: e.at(3 * time.Minute)}, 2, "p1", "r1", "t1", "c2")
	purge("of Completed", backend.PurgeInstancesParams{Statuses: []backend.Status{backend.StatusCompleted}}, 1, "p1", "r1", "t1")
	purge("created from 3m", backend.PurgeInstancesParams{CreatedFrom: e.at(3 * time.Minute)}, 1, "p1", "r1")
	for _, id := range []string{"c1", "f1", "c2", "t1"} {
		_, err := e.b.GetHistory(e.ctx, id)
		e.wantErr("GetHistory of an instance purged by filter", err, backend.ErrInstanceNotFound)
	}
}

func testPurgeEmptyFilter(t *testing.T, e *env) {
	e.populate(spec{"c", "o", e.t0, backend.StatusCompleted})
	if n, err := e.b.PurgeInstances(e.ctx, &backend.PurgeInstancesParams{}); err == nil {
		t.Fatalf("PurgeInstances with no filter: purged %d, err = nil; want an error", n)
	}
	e.wantStatus("c", backend.StatusCompleted)
}

func testListIDPrefix(t *testing.T, e *env) {
	ids := []string{"order-1", "order-10", "order-2", "orders", "ORDER-3", "pay-1", "order\U0010ffff", "order\U0010ffff\U0010ffff", "ordes"}
	for i, id := range ids {
		e.create(id, func(p *backend.CreateInstanceParams) { p.Now = e.at(time.Duration(i) * time.Second) })
	}
	e.wantList(`with prefix "order-1"`, backend.ListInstancesParams{IDPrefix: "order-1"}, "order-10", "order-1")
	e.wantList(`with prefix "order"`, backend.ListInstancesParams{IDPrefix: "order"}, "order\U0010ffff\U0010ffff", "order\U0010ffff", "orders", "order-2", "order-10", "order-1")
	e.wantList(`with prefix "order-", 1 a page`, backend.ListInstancesParams{IDPrefix: "order-", PageSize: 1}, "order-2", "order-10", "order-1")
	e.wantList(`with prefix "order\U0010ffff"`, backend.ListInstancesParams{IDPrefix: "order\U0010ffff"}, "order\U0010ffff\U0010ffff", "order\U0010ffff")
	e.wantList(`with prefix "pay-1" named "x"`, backend.ListInstancesParams{IDPrefix: "pay-1", Name: "x"})
	e.wantList(`with prefix "zzz"`, backend.ListInstancesParams{IDPrefix: "zzz"})
}

func testListCustomStatus(t *testing.T, e *env) {
	statuses := []string{`"awaiting shipment"`, `{"stage":"shipped","n":2}`, `"Shipped"`, ``, `"shipped"`}
	for i, cs := range statuses {
		id := fmt.Sprint("c", i)
		at := e.at(time.Duration(i) * time.Second)
		e.create(id, func(p *backend.CreateInstanceParams) { p.Now = at })
		e.commit(e.claimStep(id, at), at, func(p *backend.CompleteOrchestrationStepParams) {
			p.Status = backend.StatusRunning
			if cs != "" {
				p.CustomStatus = []byte(cs)
			}
		})
	}
	e.wantList(`with custom status containing "shipped"`, backend.ListInstancesParams{CustomStatus: "shipped"}, "c4", "c1")
	e.wantList(`with custom status containing "\"shipped\""`, backend.ListInstancesParams{CustomStatus: `"shipped"`}, "c4", "c1")
	e.wantList(`with custom status containing "ship", 1 a page`, backend.ListInstancesParams{CustomStatus: "ship", PageSize: 1}, "c4", "c1", "c0")
	e.wantList(`with custom status containing "%"`, backend.ListInstancesParams{CustomStatus: "%"})
	e.wantList(`with custom status containing "Shipped" and ID prefix "c2"`, backend.ListInstancesParams{CustomStatus: "Shipped", IDPrefix: "c2"}, "c2")
}

func testListOmitPayloads(t *testing.T, e *env) {
	big := []byte(`"` + strings.Repeat("x", 64<<10) + `"`)
	small := []byte(`"shipped"`)
	large := []byte(`"` + strings.Repeat("s", backend.MaxListedCustomStatus) + `"`)
	e.create("done", func(p *backend.CreateInstanceParams) { p.Input = big })
	e.commit(e.claimStep("done", e.t0), e.t0, func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusCompleted
		p.Output = []byte(`{"ok":true}`)
		p.CustomStatus = small
	})
	e.create("busy", func(p *backend.CreateInstanceParams) { p.Now = e.at(time.Second); p.Input = nil })
	e.commit(e.claimStep("busy", e.at(time.Second)), e.at(time.Second), func(p *backend.CompleteOrchestrationStepParams) {
		p.Status = backend.StatusRunning
		p.CustomStatus = large
	})
	page, err := e.b.ListInstances(e.ctx, &backend.ListInstancesParams{OmitPayloads: true})
	e.noErr("ListInstances(OmitPayloads)", err)
	if len(page.Instances) != 2 {
		t.Fatalf("ListInstances(OmitPayloads) = %d instances, want 2", len(page.Instances))
	}
	busy, done := page.Instances[0], page.Instances[1]
	if !done.Omitted || done.Input != nil || done.Output != nil || done.InputSize != len(big) || done.OutputSize != len(`{"ok":true}`) {
		t.Errorf("done listed with Omitted %v, input %d bytes (size %d), output %q (size %d); want no payloads, sizes %d and %d",
			done.Omitted, len(done.Input), done.InputSize, done.Output, done.OutputSize, len(big), len(`{"ok":true}`))
	}
	if string(done.CustomStatus) != string(small) || done.CustomStatusSize != len(small) {
		t.Errorf("done listed with custom status %q (size %d), want %q: a small one is kept", done.CustomStatus, done.CustomStatusSize, small)
	}
	if done.Status != backend.StatusCompleted || done.Name != orchName || done.ExecutionID != "done-e1" {
		t.Errorf("done listed as %+v, want its name, execution and status", done)
	}
	if !busy.Omitted || busy.CustomStatus != nil || busy.CustomStatusSize != len(large) || busy.InputSize != 0 || busy.OutputSize != 0 {
		t.Errorf("busy listed with custom status of %d bytes (size %d), input size %d, output size %d; want it left out, size %d, and sizes 0",
			len(busy.CustomStatus), busy.CustomStatusSize, busy.InputSize, busy.OutputSize, len(large))
	}
	// Without OmitPayloads, and from GetInstance, every payload is there.
	full, err := e.b.ListInstances(e.ctx, &backend.ListInstancesParams{})
	e.noErr("ListInstances", err)
	if got := full.Instances[1]; got.Omitted || string(got.Input) != string(big) || string(got.Output) != `{"ok":true}` {
		t.Errorf("a full listing has Omitted %v and input of %d bytes, want the input whole", got.Omitted, len(got.Input))
	}
	if got := e.instance("busy"); got.Omitted || string(got.CustomStatus) != string(large) {
		t.Errorf("GetInstance(busy) has Omitted %v and a custom status of %d bytes, want %d", got.Omitted, len(got.CustomStatus), len(large))
	}
}
