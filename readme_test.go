package duro_test

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEProgram keeps the complete program the README shows equal to
// examples/checkout/main.go, which the build and vet check.
func TestREADMEProgram(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("examples/checkout/main.go")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- begin examples/checkout/main.go -->\n```go\n", "```\n<!-- end examples/checkout/main.go -->"
	s := string(readme)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README.md has no block between %q and %q", begin, end)
	}
	if got := s[i+len(begin) : j]; got != string(src) {
		t.Errorf("README.md's program differs from examples/checkout/main.go; copy the file into the README")
	}
}
