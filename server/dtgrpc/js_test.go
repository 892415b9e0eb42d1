package dtgrpc_test

import (
	"bufio"
	"context"
	"fmt"
	"github.com/durohq/duro/internal/syncbuf"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestJSScenarios runs the JavaScript SDK's scenarios (testdata/js/
// scenarios.js: sequence, fan-out, timer, event, sub-orchestration,
// suspend/resume, terminate, purge, rewind, entity signal and get, entity
// call, entity locks, a worker killed mid-activity, at most once with
// Fail, Suspend and Reconcile, restart, continue-as-new with carried-over
// events) against a real duro server, built from cmd/duro, on SQLite and
// on PostgreSQL; then the Dapr fork's (testdata/dapr/scenarios.js:
// sequence, fan-out, timer, event, activity failure) against the same
// server.
func TestJSScenarios(t *testing.T) {
	node, dir := needJS(t)
	daprDir := needDapr(t)
	bin := buildDuro(t)
	stores := map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string { return filepath.Join(t.TempDir(), "js.db") },
		"postgres": func(t *testing.T) string {
			url := os.Getenv("DURO_POSTGRES_URL")
			if url == "" {
				if os.Getenv("CI") == "true" {
					t.Fatal("DURO_POSTGRES_URL is not set; CI must run the PostgreSQL scenarios")
				}
				t.Skip("DURO_POSTGRES_URL is not set")
			}
			sep := "?"
			if strings.Contains(url, "?") {
				sep = "&"
			}
			return fmt.Sprintf("%s%sduro_schema=duro_js_%d_%d", url, sep, os.Getpid(), time.Now().UnixNano())
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			store := stores[name](t)
			grpcAddr, httpURL := startServer(t, bin, store)
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "scenarios.js", "all")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "DURO_GRPC="+grpcAddr, "DURO_HTTP="+httpURL)
			out, err := cmd.CombinedOutput()
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if strings.HasPrefix(line, "PASS ") || strings.HasPrefix(line, "FAIL ") {
					t.Log(line)
				}
			}
			if err != nil {
				t.Fatalf("scenarios.js: %v\n%s", err, out)
			}
			if !regexp.MustCompile(`(?m)^18 passed, 0 failed$`).Match(out) {
				t.Fatalf("scenarios.js did not pass all 18 scenarios:\n%s", out)
			}
			// The Dapr fork of the SDK, on the same server.
			dcmd := exec.CommandContext(ctx, node, "scenarios.js", "all")
			dcmd.Dir = daprDir
			dcmd.Env = append(os.Environ(), "DURO_GRPC="+grpcAddr)
			dout, err := dcmd.CombinedOutput()
			for _, line := range strings.Split(strings.TrimSpace(string(dout)), "\n") {
				if strings.HasPrefix(line, "PASS ") || strings.HasPrefix(line, "FAIL ") {
					t.Log("dapr: " + line)
				}
			}
			if err != nil {
				t.Fatalf("dapr scenarios.js: %v\n%s", err, dout)
			}
			if !regexp.MustCompile(`(?m)^5 passed, 0 failed$`).Match(dout) {
				t.Fatalf("dapr scenarios.js did not pass all 5 scenarios:\n%s", dout)
			}
			if name == "postgres" {
				dropSchema(t, store)
			}
		})
	}
}

// buildDuro builds cmd/duro once per test binary.
var buildDuro = func() func(t *testing.T) string {
	var once sync.Once
	var bin string
	var err error
	var out []byte
	return func(t *testing.T) string {
		t.Helper()
		once.Do(func() {
			d, derr := os.MkdirTemp("", "duro-bin-")
			if derr != nil {
				err = derr
				return
			}
			bin = filepath.Join(d, "duro")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			out, err = exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/durohq/duro/cmd/duro").CombinedOutput()
		})
		if err != nil {
			t.Fatalf("build duro: %v\n%s", err, out)
		}
		return bin
	}
}()

// startServer runs `duro server` on store with the gRPC protocol on free
// loopback ports and returns their addresses once it listens.
func startServer(t *testing.T, bin, store string, extra ...string) (grpcAddr, httpURL string) {
	t.Helper()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	args := append([]string{"server", "--store", store, "--create", "--listen", httpAddr, "--grpc-listen", grpcAddr}, extra...)
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("duro server's log:\n%s", stderr.String())
		}
	})
	ready, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "Durable Task protocol (gRPC)") {
				close(ready)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case <-ready:
	case <-ended: // the server exited before it listened
		t.Fatalf("duro server exited:\n%s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("duro server did not start:\n%s", stderr.String())
	}
	return grpcAddr, "http://" + httpAddr
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// dropSchema removes a test's PostgreSQL hub.
func dropSchema(t *testing.T, store string) {
	t.Helper()
	i := strings.Index(store, "duro_schema=")
	if i < 0 {
		return
	}
	schema := store[i+len("duro_schema="):]
	url := store[:i-1]
	if psql, err := exec.LookPath("psql"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = exec.CommandContext(ctx, psql, url, "-qc", "DROP SCHEMA IF EXISTS "+schema+" CASCADE").Run()
	}
}
