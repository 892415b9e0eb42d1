package duro_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
)

// TestHistoryFileRoundTrip reads every recorded history and writes it back:
// WriteHistory writes the files ReadHistory reads, byte for byte.
func TestHistoryFileRoundTrip(t *testing.T) {
	t.Parallel()
	var files []string
	for _, dir := range []string{historyDir, filepath.Join(historyDir, "bad"), versioningDir} {
		fs, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
	}
	if len(files) < 10 {
		t.Fatalf("found %d history files; want the recorded ones", len(files))
	}
	for _, file := range files {
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		h, err := duro.ReadHistory(bytes.NewReader(want))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var got bytes.Buffer
		if err := duro.WriteHistory(&got, h); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s written back differs:\n%s", file, got.Bytes())
		}
	}
}

func TestReadHistoryRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
		malformed      bool
	}{
		{name: "Empty", in: ``, want: "want a JSON array of events"},
		{name: "Object", in: `{"type":"ExecutionStarted","name":"o"}`, want: "want a JSON array of events"},
		{name: "BadEvent", in: `[{"type":"OrchestratorStarted"},{"type":"TaskScheduled","taskId":1}]`,
			want: "event 1: decode event: malformed history event: TaskScheduled: missing name", malformed: true},
		{name: "TrailingData", in: `[{"type":"OrchestratorStarted"}] [`, want: "data after the array of events"},
		{name: "UnknownType", in: `[{"type":"Bogus"}]`, want: `event 0: decode event: malformed history event: unknown type "Bogus"`, malformed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, err := duro.ReadHistory(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadHistory = %v, %v; want an error saying %q", h, err, tc.want)
			}
			if errors.Is(err, backend.ErrMalformedEvent) != tc.malformed {
				t.Errorf("errors.Is(%v, ErrMalformedEvent) = %v; want %v", err, !tc.malformed, tc.malformed)
			}
		})
	}
	var b bytes.Buffer
	if err := duro.WriteHistory(&b, nil); err != nil || b.String() != "[]\n" {
		t.Errorf("WriteHistory(nil) wrote %q, %v; want an empty array", b.String(), err)
	}
	b.Reset()
	if err := duro.WriteHistory(&b, []*duro.HistoryEvent{{Type: backend.EventTaskScheduled, TaskID: 1}}); !errors.Is(err, backend.ErrMalformedEvent) {
		t.Errorf("WriteHistory of a nameless TaskScheduled = %v; want ErrMalformedEvent", err)
	}
}

func TestReplayHistoryDirErrors(t *testing.T) {
	t.Parallel()
	reg := replayRegistry()
	if err := duro.ReplayHistoryDir(reg, historyDir); err != nil {
		t.Fatalf("ReplayHistoryDir(%s) = %v", historyDir, err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if err := duro.ReplayHistoryDir(reg, missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReplayHistoryDir of a missing directory = %v; want ErrNotExist", err)
	}
	empty := t.TempDir()
	if err := duro.ReplayHistoryDir(reg, empty); err == nil || !strings.Contains(err.Error(), "no history files") {
		t.Errorf("ReplayHistoryDir of an empty directory = %v; want an error", err)
	}

	// A directory with a good history, a bad one, one of an orchestration
	// reg lacks and a file that is no history: one error per failing file.
	dir := t.TempDir()
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(filepath.Join(historyDir, "sequence.json"), "good.json")
	copyFile(filepath.Join(historyDir, "bad", "renamed-activity.json"), "renamed.json")
	copyFile(filepath.Join(versioningDir, "completed.json"), "order.json")
	if err := os.WriteFile(filepath.Join(dir, "junk.json"), []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := duro.ReplayHistoryDir(reg, dir)
	if !errors.Is(err, duro.ErrNonDeterminism) || !errors.Is(err, duro.ErrNotRegistered) {
		t.Fatalf("ReplayHistoryDir = %v; want ErrNonDeterminism and ErrNotRegistered", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Fatalf("ReplayHistoryDir gave %d errors; want 3 (junk, order, renamed):\n%v", len(lines), err)
	}
	for i, want := range []string{"junk.json: duro: read history", `order.json: duro: replay: orchestration "Order"`, "renamed.json: duro: replay: non-deterministic"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("error %d %q; want it to say %q", i, lines[i], want)
		}
	}
}
