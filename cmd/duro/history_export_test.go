package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

func TestHistoryExport(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cli(t, "start", "Echo", "--store", env.store, "--id", "e/1", "--input", `"hi"`).ok(t)
	cli(t, "start", "WaitForGo", "--store", env.store, "--id", "w1").ok(t)
	cli(t, "start", "Boom", "--store", env.store, "--id", "b1").ok(t)
	env.wait(t, "e/1")
	env.wait(t, "b1")
	env.waitRunning(t, "w1")

	dir := filepath.Join(t.TempDir(), "histories")
	r := cli(t, "history", "export", "e/1", "w1", "--dir", dir, "--store", env.store).ok(t)
	if !strings.HasSuffix(r.stdout, "exported 2 histories to "+dir+"\n") {
		t.Errorf("stdout %q", r.stdout)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "e%2F1.json"), filepath.Join(dir, "w1.json")}
	if !slices.Equal(files, want) {
		t.Fatalf("files %q; want %q", files, want)
	}
	// Each file holds the instance's history as the store has it.
	for id, file := range map[string]string{"e/1": want[0], "w1": want[1]} {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := duro.ReadHistory(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		h, err := env.c.History(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(h)
		if string(a) != string(b) {
			t.Errorf("%s holds\n%s\nwant\n%s", file, a, b)
		}
	}

	// The exported histories replay against the code that recorded them,
	// and not against other code.
	reg := duro.NewRegistry()
	registerEchoAndWait(reg)
	if err := duro.ReplayHistoryDir(reg, dir); err != nil {
		t.Errorf("ReplayHistoryDir: %v", err)
	}
	changed := duro.NewRegistry()
	duro.RegisterOrchestration(changed, "Echo", func(ctx *duro.OrchestrationContext, in json.RawMessage) (json.RawMessage, error) {
		return in, ctx.Sleep(time.Hour)
	})
	duro.RegisterOrchestration(changed, "WaitForGo", func(ctx *duro.OrchestrationContext, _ any) (json.RawMessage, error) {
		return nil, ctx.Sleep(time.Hour)
	})
	err = duro.ReplayHistoryDir(changed, dir)
	for _, file := range want {
		if err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("ReplayHistoryDir against changed code = %v; want an error naming %s", err, file)
		}
	}

	// Filters select what to export.
	dir2 := t.TempDir()
	r = cli(t, "history", "export", "--dir", dir2, "--status", "Completed,Failed", "--store", env.store).ok(t)
	if !strings.Contains(r.stdout, "exported 2 histories") || !strings.Contains(r.stdout, "exported b1 ") {
		t.Errorf("stdout %q", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(dir2, "w1.json")); !os.IsNotExist(err) {
		t.Errorf("a Running instance was exported with --status Completed,Failed: %v", err)
	}

	cli(t, "history", "export", "w1", "--store", env.store).fails(t, exitUsage, "--dir is required")
	cli(t, "history", "export", "w1", "--name", "Echo", "--dir", dir, "--store", env.store).fails(t, exitUsage, "IDs or filters, not both")
	cli(t, "history", "export", "nope", "--dir", dir, "--store", env.store).fails(t, exitFailure, `no instance with ID "nope"`)
	cli(t, "history", "export", "--status", "Sleeping", "--dir", dir, "--store", env.store).fails(t, exitUsage, "Sleeping")
	// The timeline still takes an instance ID.
	if r := cli(t, "history", "w1", "--store", env.store).ok(t); !strings.Contains(r.stdout, "ExecutionStarted") {
		t.Errorf("history w1: %q", r.stdout)
	}
}

func TestHistoryFileName(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]string{
		"order-1":    "order-1.json",
		"a/b:c":      "a%2Fb%3Ac.json",
		"a%2Fb":      "a%252Fb.json",
		".hidden":    "%2Ehidden.json",
		"..":         "%2E..json",
		"v1.2_x":     "v1.2_x.json",
		"é":          "%C3%A9.json",
		"with space": "with%20space.json",
	} {
		if got := historyFileName(id); got != want {
			t.Errorf("historyFileName(%q) = %q; want %q", id, got, want)
		}
	}
}

func TestRenderPatchMarkers(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	var b strings.Builder
	err := renderTimeline(&b, []*duro.HistoryEvent{
		{Type: backend.EventPatched, Timestamp: t0, TaskID: 1, Name: "fraud-check"},
		{Type: backend.EventPatched, Timestamp: t0, TaskID: 2, Name: "v2", Deprecated: true},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := `  +0.000s  Patched                         "fraud-check"  new path (Patched)  at task #1
  +0.000s  Patched                         "v2"           deprecated (DeprecatePatch)  at task #2
`
	if b.String() != want {
		t.Errorf("timeline\n%s\nwant\n%s", b.String(), want)
	}
	j := toEventJSON(&duro.HistoryEvent{Type: backend.EventPatched, Timestamp: t0, TaskID: 0, Name: "v2", Deprecated: true})
	if j.TaskID == nil || *j.TaskID != 0 || !j.Deprecated {
		t.Errorf("JSON form %+v; want task 0, deprecated", j)
	}
}
