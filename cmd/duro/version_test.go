package main

import (
	"regexp"
	"testing"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	r := cli(t, "version").ok(t)
	if !regexp.MustCompile(`^duro \S.* go1\.\S+ \w+/\w+\n$`).MatchString(r.stdout) {
		t.Fatalf("version printed %q", r.stdout)
	}
	cli(t, "version", "extra").fails(t, exitUsage, "unexpected argument")
}
