package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// otherUser runs the command line as a user who does not own the files
// the test makes: in-process when the test is not root (file modes bind
// it), else as the test binary run by nobody (uid 65534), whom root's
// file modes bind. dir is made traversable for that user.
func otherUser(t *testing.T, dir string) func(args ...string) result {
	t.Helper()
	if os.Geteuid() != 0 {
		return func(args ...string) result { return cli(t, args...) }
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "duro.test")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := dir; d != "/" && d != "." && strings.HasPrefix(d, os.TempDir()); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return func(args ...string) result {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"DURO_TEST_MAIN=1", "HOME=" + dir}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return result{stdout: out.String(), stderr: errOut.String(), code: code}
	}
}

// TestReadOnlyStore: read commands inspect a store this user may not
// write, a read-only file or a read-only directory; commands that change
// it say what access they need, in words, not SQLite's codes.
func TestReadOnlyStore(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	// No worker: e1 stays Pending. The CLI closed the store, so the file
	// holds everything (no write-ahead log).
	cli(t, "start", "Echo", "--store", store, "--id", "e1", "--input", `"hi"`).ok(t)
	data, err := os.ReadFile(store)

	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	run := otherUser(t, base)
	// A read-only file in a directory the user may write.
	fileDir := filepath.Join(base, "file")
	// A writable file in a directory the user may not write.
	dirDir := filepath.Join(base, "dir")
	for _, d := range []string{fileDir, dirDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "duro.db"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(fileDir, "duro.db"), 0o444); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(fileDir, 65534, 65534); err != nil { // nobody's directory, root's read-only file
			t.Fatal(err)
		}
	} else if err := os.Chmod(dirDir, 0o555); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Cleanup(func() { _ = os.Chmod(dirDir, 0o755) })
	}
	tests := []struct {
		name, store string
		note        string // in stderr of the reads
		writeErr    string
	}{
		{"read-only file", filepath.Join(fileDir, "duro.db"), "",
			"read-only: this user may not write " + filepath.Join(fileDir, "duro.db") + "; commands that change the store need write access to it"},
		{"read-only directory", filepath.Join(dirDir, "duro.db"), "read the file as it is, without locks",
			"read-only: this user may not write the directory " + dirDir + ", where SQLite keeps the store's journal (duro.db-wal, duro.db-shm)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, args := range [][]string{{"status", "e1"}, {"list"}, {"history", "e1"}, {"decisions"}} {
				r := run(append(args, "--store", tt.store)...)
				if r.code != 0 || !strings.Contains(r.stderr, tt.note) {
					t.Errorf("%v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
				}
				if args[0] == "status" && !strings.Contains(r.stdout, `Input:         "hi"`) {
					t.Errorf("status of a read-only store:\n%s", r.stdout)
				}
			}
			r := run("terminate", "e1", "--store", tt.store)
			if r.code != exitFailure || !strings.Contains(r.stderr, tt.writeErr) {
				t.Errorf("terminate: exit %d, stderr %q; want %q", r.code, r.stderr, tt.writeErr)
			}
			for _, code := range []string{"(8)", "(14)", "(1544)", "readonly database"} {
				if strings.Contains(r.stderr, code) {
					t.Errorf("terminate shows SQLite's %s: %s", code, r.stderr)
				}
			}
		})
	}
}

// TestStoreErrorsInWords: a store in a directory that does not exist is
// explained, not reported as SQLite's "(14)".
func TestStoreErrorsInWords(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "no", "such", "dir", "duro.db")
	r := cli(t, "start", "Echo", "--store", missing)
	r.fails(t, exitFailure, "store "+missing+": the directory "+filepath.Dir(missing)+" does not exist")
	if strings.Contains(r.stderr, "(14)") || strings.Contains(r.stderr, "sqlite: open") {
		t.Errorf("stderr: %s", r.stderr)
	}
}
