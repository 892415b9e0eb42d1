package durotest_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// fakeT is a testing.TB whose Fatalf records the failure and ends the
// goroutine, so that tests of durotest see the failures it reports.
type fakeT struct {
	testing.TB // the real test: Cleanup, Logf, ...
	mu         sync.Mutex
	msgs       []string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	runtime.Goexit()
}

// failure runs fn on its own goroutine with a fakeT and returns what it
// reported; the test fails if fn reported nothing.
func failure(t *testing.T, fn func(ft *fakeT)) string {
	t.Helper()
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ft)
	}()
	<-done
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if len(ft.msgs) == 0 {
		t.Fatalf("no failure reported")
	}
	return strings.Join(ft.msgs, "\n")
}

// mustContain fails t unless s contains each of parts.
func mustContain(t *testing.T, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Fatalf("%q is not in:\n%s", p, s)
		}
	}
}

func itoa(i int) string { return fmt.Sprint(i) }

func btoa(b bool) string { return fmt.Sprint(b) }

func join(s []string) string { return strings.Join(s, " ") }
