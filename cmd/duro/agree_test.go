package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
)

// TestPageSizeAgrees: a page size the API refuses is refused the same way
// on a store, and on a server the CLI does not quietly shrink it.
func TestPageSizeAgrees(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	url := serveEnv(t, env.c)
	for _, cmd := range [][]string{{"list"}, {"entity", "list"}} {
		for _, size := range []string{"0", "-1", "1001", "5000"} {
			for _, where := range [][]string{{"--store", env.store}, {"--server", url}} {
				args := append(append(append([]string{}, cmd...), "--page-size", size), where...)
				t.Run(strings.Join(args[:len(args)-1], " "), func(t *testing.T) {
					cli(t, args...).fails(t, exitUsage, "--page-size "+size+": want 1 to 1000")
				})
			}
		}
	}
	// The API says the same of the same sizes.
	for _, size := range []string{"0", "5000"} {
		res, err := http.Get(url + "/api/v1/instances?pageSize=" + size)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("pageSize=%s: %d, want 400", size, res.StatusCode)
		}
	}
	cli(t, "list", "--page-size", "1000", "--store", env.store).ok(t)
	cli(t, "list", "--page-size", "1000", "--server", url).ok(t)
}

// TestListSearchAndSizes: list finds instances by ID prefix and custom
// status, and shows the sizes of the payloads instead of the payloads, on
// a store and through a server alike.
func TestListSearchAndSizes(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	url := serveEnv(t, env.c)
	big := `"` + strings.Repeat("x", 300_000) + `"`
	cli(t, "start", "Echo", "--store", env.store, "--id", "order-big", "--input", big, "--wait").ok(t)
	for _, s := range []struct{ id, stage string }{{"order-1", `"packing"`}, {"order-2", `"shipped"`}, {"pay-2", `{"stage":"shipped"}`}} {
		cli(t, "start", "Stage", "--store", env.store, "--id", s.id, "--input", s.stage).ok(t)
	}
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		page, err := env.c.List(ctx, duro.ListOptions{CustomStatus: "p"})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Instances) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Stage instances never set their custom status (%d did)", len(page.Instances))
		}
	}
	for _, where := range [][]string{{"--store", env.store}, {"--server", url}} {
		t.Run(where[0], func(t *testing.T) {
			r := cli(t, append([]string{"list", "--id-prefix", "order-"}, where...)...).ok(t)
			for _, want := range []string{"order-big", "293.0 KiB  293.0 KiB  -", "order-1", `"packing"`, "order-2"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("list --id-prefix order- lacks %q:\n%s", want, r.stdout)
				}
			}
			if strings.Contains(r.stdout, "pay-2") || strings.Contains(r.stdout, "xxx") {
				t.Errorf("list --id-prefix order- shows pay-2 or the input:\n%s", r.stdout)
			}
			r = cli(t, append([]string{"list", "--custom-status", "shipped"}, where...)...).ok(t)
			if !strings.Contains(r.stdout, "order-2") || !strings.Contains(r.stdout, "pay-2") || strings.Contains(r.stdout, "order-1 ") {
				t.Errorf("list --custom-status shipped:\n%s", r.stdout)
			}
			r = cli(t, append([]string{"list", "--id-prefix", "order-big", "-o", "json"}, where...)...).ok(t)
			var page listJSON
			decodeJSON(t, r.stdout, &page)
			if len(page.Instances) != 1 || page.Instances[0].Input != nil || page.Instances[0].Output != nil ||
				page.Instances[0].InputSize != len(big) || page.Instances[0].OutputSize != len(big) || !page.Instances[0].PayloadsOmitted {
				t.Errorf("list -o json: %.300s", r.stdout)
			}
			// status has the payload itself.
			r = cli(t, append([]string{"status", "order-big", "-o", "json"}, where...)...).ok(t)
			var inst instanceJSON
			decodeJSON(t, r.stdout, &inst)
			if len(inst.Input) != len(big) || inst.PayloadsOmitted {
				t.Errorf("status -o json: input of %d bytes, omitted %v", len(inst.Input), inst.PayloadsOmitted)
			}
		})
	}
}

// TestPurgeCreatedRange: purge takes list's --created-from and --created-to,
// and the old --created-before still works.
func TestPurgeCreatedRange(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	for _, id := range []string{"e1", "e2"} {
		cli(t, "start", "Echo", "--store", env.store, "--id", id, "--wait").ok(t)
	}
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"--status", "Completed", "--created-from", "0s"}, "purged 0 instances\n"},
		{[]string{"--status", "Completed", "--created-to", "2001-01-01"}, "purged 0 instances\n"},
		{[]string{"--status", "Completed", "--created-before", "2001-01-01"}, "purged 0 instances\n"},
		{[]string{"--created-from", "1h", "--created-to", "0s"}, "purged 2 instances\n"},
	}
	for _, s := range steps {
		r := cli(t, append([]string{"purge", "--store", env.store}, s.args...)...).ok(t)
		if r.stdout != s.want {
			t.Errorf("purge %v: stdout %q, want %q", s.args, r.stdout, s.want)
		}
	}
	cli(t, "purge", "--store", env.store, "--created-to", "1h", "--created-before", "1h").fails(t, exitUsage, "not both")
	cli(t, "purge", "--store", env.store, "--created-from", "soon").fails(t, exitUsage, `--created-from: "soon" is not a time`)
}

// TestDecisionsServerArg: with --server, the resume commands decisions
// prints act through the same server.
func TestDecisionsServerArg(t *testing.T) {
	t.Parallel()
	env := newDecisionEnv(t, "pay", 1)
	url := serveEnv(t, env.c)
	r := cli(t, "decisions", "--server", url).ok(t)
	want := "duro resume pay --task 0 --retry --server " + url
	if !strings.Contains(r.stdout, want) {
		t.Errorf("decisions --server lacks %q:\n%s", want, r.stdout)
	}
	r = cli(t, "decisions", "--server", url, "-o", "json").ok(t)
	var tasks []pendingTaskJSON
	if err := json.Unmarshal([]byte(r.stdout), &tasks); err != nil || len(tasks) != 1 || !strings.HasSuffix(tasks[0].Resume, " --server "+url) {
		t.Errorf("decisions -o json: %v %s", err, r.stdout)
	}
	r = cli(t, "status", "pay", "--server", url).ok(t)
	if !strings.Contains(r.stdout, "--fail MESSAGE --server "+url) {
		t.Errorf("status --server: the resume commands lack --server:\n%s", r.stdout)
	}
	r = cli(t, "decisions", "--store", env.store).ok(t)
	if !strings.Contains(r.stdout, "--retry --store "+env.store) {
		t.Errorf("decisions --store:\n%s", r.stdout)
	}
}
