package main

import (
	"context"
	"encoding/json"
	"github.com/durohq/duro/internal/syncbuf"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runningServer is a 'duro server' run in-process.
type runningServer struct {
	url         string
	out, errOut *syncbuf.Buffer
}

var listening = regexp.MustCompile(`listening on (http://\S+)`)

// startServer runs 'duro server --listen 127.0.0.1:0 args...' until the
// test ends, when it checks that the server stopped cleanly.
func startServer(t *testing.T, env map[string]string, args ...string) *runningServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &runningServer{out: &syncbuf.Buffer{}, errOut: &syncbuf.Buffer{}}
	done := make(chan int, 1)
	go func() {
		done <- runEnv(ctx, append([]string{"server", "--listen", "127.0.0.1:0"}, args...),
			func(k string) string { return env[k] }, s.out, s.errOut)
	}()
	deadline := time.After(10 * time.Second)
	for s.url == "" {
		if m := listening.FindStringSubmatch(s.out.String()); m != nil {
			s.url = m[1]
			break
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("duro server exited %d\nstdout:\n%s\nstderr:\n%s", code, s.out, s.errOut)
		case <-deadline:
			cancel()
			t.Fatalf("duro server did not start\nstdout:\n%s\nstderr:\n%s", s.out, s.errOut)
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 || !strings.Contains(s.out.String(), "duro server stopped") {
				t.Errorf("duro server exited %d\nstdout:\n%s\nstderr:\n%s", code, s.out, s.errOut)
			}
		case <-time.After(15 * time.Second):
			t.Error("duro server did not stop")
		}
	})
	return s
}

// get fetches path from the server.
func (s *runningServer) get(t *testing.T, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestServerFlags(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		err  string
	}{
		{"public without token", nil, []string{"--listen", "0.0.0.0:0"}, "refusing to listen on 0.0.0.0:0 without a token"},
		{"all interfaces without token", nil, []string{"--listen", ":0"}, "without a token"},
		{"bad listen", nil, []string{"--listen", "8233"}, "--listen \"8233\": want host:port"},
		{"token and file", nil, []string{"--token", "a", "--token-file", tokenFile}, "give --token or --token-file, not both"},
		{"empty token file", nil, []string{"--token-file", tokenFile}, "is empty"},
		{"missing token file", nil, []string{"--token-file", filepath.Join(t.TempDir(), "nope")}, "--token-file"},
		{"server flag", nil, []string{"--server", "http://127.0.0.1:1"}, "duro server serves --store itself"},
		{"bad exporter", nil, []string{"--trace-exporter", "zipkin"}, "unknown trace exporter"},
		{"bad log format", nil, []string{"--log-format", "xml"}, "--log-format"},
		{"bad max body", nil, []string{"--max-body", "0"}, "--max-body must be positive"},
		{"arguments", nil, []string{"extra"}, "this command takes flags only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cliEnv(t, tt.env, append([]string{"server", "--store", store}, tt.args...)...).fails(t, exitUsage, tt.err)
		})
	}
}

// TestServerToken: with a token the server may listen on every interface
// and wants the token from clients, which give it with --token or
// DURO_TOKEN.
func TestServerToken(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, nil, "--store", store, "--token-file", tokenFile)
	if code, _ := s.get(t, "/api/v1/instances", ""); code != 401 {
		t.Errorf("without a token: %d", code)
	}
	if code, _ := s.get(t, "/metrics", "s3cret"); code != 200 {
		t.Errorf("metrics with the token: %d", code)
	}
	cli(t, "list", "--server", s.url).fails(t, exitFailure, "missing or wrong bearer token (give the server's token with --token")
	cli(t, "list", "--server", s.url, "--token", "nope").fails(t, exitFailure, "missing or wrong bearer token")
	cli(t, "list", "--server", s.url, "--token", "s3cret").ok(t)
	cliEnv(t, map[string]string{"DURO_TOKEN": "s3cret", "DURO_SERVER": s.url}, "list").ok(t)
	cli(t, "list", "--server", s.url, "--token-file", tokenFile).ok(t)
}

// TestServerDemo is the demo through a server, as a new user runs it:
// 'duro server --demo', 'duro demo --server', then the payment's decision
// with 'duro resume --server'. The metrics count what happened.
func TestServerDemo(t *testing.T) {
	t.Parallel()
	store := filepath.Join(t.TempDir(), "demo.db")
	s := startServer(t, nil, "--store", store, "--demo")

	r := cli(t, "demo", "--server", s.url).ok(t)
	for _, want := range []string{
		"order-1001 Completed", "status Suspended", "task #0:  ChargeCard, attempt 2",
		"duro resume order-1002 --task 0 --retry --server " + s.url,
		s.url + "/#/decisions",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
	if out := s.out.String(); !strings.Contains(out, "stopping demo-worker-2 in the middle of the card charge") ||
		!strings.Contains(out, "possible duplicate; suspending the instance") {
		t.Errorf("server output:\n%s", out)
	}
	d := cli(t, "decisions", "--server", s.url).ok(t)
	if !strings.Contains(d.stdout, "1 task waits for a decision") {
		t.Errorf("decisions:\n%s", d.stdout)
	}
	_, metrics := s.get(t, "/metrics", "")
	for _, want := range []string{`duro_duplicates_total{policy="suspend"} 1`, `duro_pending_decisions 1`, `duro_instances{status="Suspended"} 1`} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}

	cli(t, "resume", "order-1002", "--retry", "--reason", "the provider has no charge", "--server", s.url).ok(t)
	st := waitRemote(t, s.url, "order-1002", "Completed")
	if string(st.Output) != `"PAY-order-1002"` {
		t.Errorf("output %s", st.Output)
	}
	h := cli(t, "history", "order-1002", "--server", s.url).ok(t)
	for _, want := range []string{"TaskDuplicate", "ExecutionResumed", "decisions: #0 retry", "attempt 3"} {
		if !strings.Contains(h.stdout, want) {
			t.Errorf("history lacks %q:\n%s", want, h.stdout)
		}
	}
	cli(t, "demo", "--server", s.url+"/nope").fails(t, exitFailure, "")
}

// waitRemote polls 'duro status -o json --server' until the instance has
// the status.
func waitRemote(t *testing.T, url, id, status string) instanceJSON {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := cli(t, "status", id, "-o", "json", "--server", url).ok(t)
		var st instanceJSON
		decodeJSON(t, r.stdout, &st)
		if string(st.Status) == status {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s is %s, want %s", id, st.Status, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServerMissingStore: 'duro server' refuses a store that does not
// exist, as the other commands do, unless asked to create it.
func TestServerMissingStore(t *testing.T) {
	t.Parallel()
	typo := filepath.Join(t.TempDir(), "typo.db")
	cli(t, "server", "--store", typo).fails(t, exitFailure,
		"store "+typo+" does not exist: give --create to make a new one, or name another with --store PATH or DURO_STORE")
	if _, err := os.Stat(typo); err == nil {
		t.Fatal("the refused store was created")
	}
	s := startServer(t, nil, "--store", typo, "--create")
	if code, body := s.get(t, "/api/v1/instances", ""); code != 200 {
		t.Errorf("a created store: %d %s", code, body)
	}
	if _, err := os.Stat(typo); err != nil {
		t.Errorf("--create made no store: %v", err)
	}
}

// TestServerDemoNeedsDemoWorker: 'duro demo --server' says what to do when
// the server runs no demo worker.
func TestServerDemoNeedsDemoWorker(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--store", newStore(t))
	cli(t, "demo", "--server", s.url).fails(t, exitFailure, "runs no demo worker: start it with 'duro server --demo'")
	var info struct {
		Workers string `json:"workers"`
	}
	_, body := s.get(t, "/api/v1/info", "")
	if err := json.Unmarshal([]byte(body), &info); err != nil || info.Workers != "" {
		t.Errorf("info %s", body)
	}
}

// TestServerDemoSIGTERM runs the real binary's demo worker and sends it
// SIGTERM, as an orchestrator scaling in does: the worker stops
// gracefully (releasing unstarted work, letting running activities
// finish) and the server exits 0.
func TestServerDemoSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildDuro(ctx, t)
	cmd := exec.CommandContext(ctx, bin, "server", "--store", filepath.Join(t.TempDir(), "s.db"), "--demo",
		"--listen", "127.0.0.1:0", "--stop-timeout", "20s")
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "demo-worker-1 started"); {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the demo worker did not start:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("duro server after SIGTERM: %v\n%s", err, out)
	}
	for _, want := range []string{"demo-worker-1 stopping: releasing unstarted work, letting running activities finish", "duro server stopped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
