package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestMigrate(t *testing.T) {
	t.Parallel()
	store := filepath.Join(t.TempDir(), "m.db")
	cli(t, "migrate", "--status", "--store", store).fails(t, exitFailure, "does not exist")
	r := cli(t, "migrate", "--store", store).ok(t)
	for _, want := range []string{"001  initial", "002  heartbeat_details", "003  suspend_rewind", "applied 2"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("migrate output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "pending") {
		t.Fatalf("pending after migrate:\n%s", r.stdout)
	}
	s := cli(t, "migrate", "--status", "--store", store).ok(t)
	if s.stdout != r.stdout {
		t.Fatalf("status after migrate differs:\n%s\nvs\n%s", s.stdout, r.stdout)
	}
}
