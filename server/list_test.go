package server

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/durohq/duro"
)

// TestListOmitsPayloads: a list answers with rows that carry the sizes of
// the payloads, not the payloads, so a page stays small however large the
// inputs; the instance's own document has them whole.
func TestListOmitsPayloads(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	ctx := context.Background()
	big := strings.Repeat("x", 2_000_000) // a 2 MB input (and output: Echo returns it)
	if _, err := b.c.Start(ctx, "Echo", big, duro.StartOptions{InstanceID: "big"}); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, "big", duro.StatusCompleted)
	if _, err := b.c.Start(ctx, "Stage", "packing", duro.StartOptions{InstanceID: "staged"}); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "staged", func(i *duro.Instance) bool { return len(i.RawCustomStatus) > 0 })

	r := b.do("GET", "/api/v1/instances", nil)
	var page InstancePage
	r.decode(t, &page)
	// What the page would weigh with the payloads, as before.
	full, err := b.c.List(ctx, duro.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rows []*Instance
	for _, i := range full.Instances {
		rows = append(rows, NewInstance(i))
	}
	whole, err := json.Marshal(&InstancePage{Instances: rows})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a page of 2 instances, one with a 2 MB input and output: %d bytes, %d with the payloads", len(r.body), len(whole))
	if len(r.body) > 4<<10 {
		t.Fatalf("the page is %d bytes, want under 4 KiB:\n%.400s", len(r.body), r.body)
	}
	if len(page.Instances) != 2 {
		t.Fatalf("page %s", r.body)
	}
	row, staged := page.Instances[1], page.Instances[0]
	wantSize := len(big) + 2 // the JSON string's quotes
	if row.ID != "big" || row.Input != nil || row.Output != nil || !row.PayloadsOmitted ||
		row.InputSize != wantSize || row.OutputSize != wantSize || row.Status != duro.StatusCompleted {
		t.Errorf("listed big: id %q, input %d bytes, output %d bytes, omitted %v, sizes %d/%d; want no payloads and sizes %d",
			row.ID, len(row.Input), len(row.Output), row.PayloadsOmitted, row.InputSize, row.OutputSize, wantSize)
	}
	if string(staged.CustomStatus) != `"packing"` || staged.CustomStatusSize != len(`"packing"`) {
		t.Errorf("listed staged: custom status %s (size %d), want a small custom status kept", staged.CustomStatus, staged.CustomStatusSize)
	}

	// The instance endpoint has the payloads.
	var one Instance
	b.do("GET", "/api/v1/instances/big", nil).decode(t, &one)
	if len(one.Input) != wantSize || len(one.Output) != wantSize || one.PayloadsOmitted || one.InputSize != wantSize {
		t.Errorf("GET big: input %d bytes, output %d, omitted %v, size %d; want them whole", len(one.Input), len(one.Output), one.PayloadsOmitted, one.InputSize)
	}
}

// TestListSearch: the list's filters by ID prefix and custom status, with
// the others.
func TestListSearch(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	ctx := context.Background()
	for _, s := range []struct{ id, stage string }{{"order-1", "packing"}, {"order-2", "shipped"}, {"order-20", "Shipped"}, {"pay-2", "shipped"}} {
		if _, err := b.c.Start(ctx, "Stage", s.stage, duro.StartOptions{InstanceID: s.id}); err != nil {
			t.Fatal(err)
		}
		b.waitFor(t, s.id, func(i *duro.Instance) bool { return len(i.RawCustomStatus) > 0 })
	}
	ids := func(t *testing.T, r reply) []string {
		var p InstancePage
		r.decode(t, &p)
		var out []string
		for _, i := range p.Instances {
			out = append(out, i.ID)
		}
		slices.Sort(out)
		return out
	}
	tests := []struct {
		query string
		want  []string
	}{
		{"idPrefix=order-2", []string{"order-2", "order-20"}},
		{"customStatus=shipped", []string{"order-2", "pay-2"}},
		{"customStatus=%22shipped%22&idPrefix=order", []string{"order-2"}},
		{"customStatus=hipped&status=Running&name=Stage", []string{"order-2", "order-20", "pay-2"}},
		{"customStatus=hipped&status=Completed", nil},
		{"idPrefix=nope", nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := b.do("GET", "/api/v1/instances?"+tt.query, nil)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if got := ids(t, r); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	runCases(t, b, []apiCase{
		{name: "prefix too long", method: "GET", path: "/api/v1/instances?idPrefix=" + strings.Repeat("i", 257), status: 400, code: CodeInvalidArgument},
		{name: "custom status too long", method: "GET", path: "/api/v1/instances?customStatus=" + strings.Repeat("c", 257), status: 400, code: CodeInvalidArgument},
	})
}
