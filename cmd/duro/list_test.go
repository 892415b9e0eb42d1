package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestList(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	for i := range 5 {
		name := "Alpha"
		if i%2 == 1 {
			name = "Beta"
		}
		cli(t, "start", name, "--store", store, "--id", fmt.Sprintf("i%d", i)).ok(t)
	}
	tests := []struct {
		name    string
		args    []string
		want    []string
		notWant []string
	}{
		{"all", []string{"list"}, []string{"ID  NAME   STATUS   CREATED", "i0  Alpha  Pending", "i4  Alpha  Pending", "i3  Beta"}, []string{"next page"}},
		{"by name", []string{"list", "--name", "Beta"}, []string{"i1", "i3"}, []string{"i0", "i2", "i4"}},
		{"by status", []string{"list", "--status", "completed,FAILED"}, []string{"no instances"}, []string{"i0"}},
		{"pending", []string{"list", "--status", " Pending "}, []string{"i0", "i4"}, nil},
		{"created later", []string{"list", "--created-from", time.Now().Add(time.Hour).Format(time.RFC3339)}, []string{"no instances"}, nil},
		{"created earlier", []string{"list", "--created-to", "2001-01-01"}, []string{"no instances"}, nil},
		{"relative", []string{"list", "--created-from", "1h"}, []string{"i0", "i4"}, nil},
		{"first page", []string{"list", "--page-size", "2"}, []string{"i4", "i3", "next page token: "}, []string{"i2"}},
		{"every page", []string{"list", "--page-size", "2", "--all"}, []string{"i4", "i2", "i0"}, []string{"next page"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := cli(t, append(tt.args, "--store", store)...).ok(t)
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(r.stdout, w) {
					t.Errorf("stdout has %q:\n%s", w, r.stdout)
				}
			}
		})
	}
}

func TestListPaging(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	for i := range 5 {
		cli(t, "start", "Alpha", "--store", store, "--id", fmt.Sprintf("p%d", i)).ok(t)
	}
	var seen []string
	token := ""
	for range 10 {
		r := cli(t, "list", "--store", store, "--page-size", "2", "--page-token", token, "-o", "json").ok(t)
		var page listJSON
		decodeJSON(t, r.stdout, &page)
		for _, i := range page.Instances {
			seen = append(seen, i.ID)
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if got := strings.Join(seen, ","); got != "p4,p3,p2,p1,p0" {
		t.Fatalf("pages gave %s, want p4,p3,p2,p1,p0 (newest first)", got)
	}

	// The text form prints the token to continue with.
	r := cli(t, "list", "--store", store, "--page-size", "4").ok(t)
	m := regexp.MustCompile(`next page token: (\S+)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no next page token:\n%s", r.stdout)
	}
	r = cli(t, "list", "--store", store, "--page-size", "4", "--page-token", m[1]).ok(t)
	if !strings.Contains(r.stdout, "p0") || strings.Contains(r.stdout, "p1") {
		t.Fatalf("second page:\n%s", r.stdout)
	}
}

func TestListJSONEmpty(t *testing.T) {
	t.Parallel()
	r := cli(t, "list", "--store", newStore(t), "-o", "json").ok(t)
	if strings.TrimSpace(r.stdout) != `{
  "instances": []
}` {
		t.Fatalf("empty list -o json:\n%s", r.stdout)
	}
}

func TestListErrors(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	tests := []struct {
		name string
		args []string
		err  string
	}{
		{"unknown status", []string{"--status", "Running,Done"}, `unknown status "Done" (known: Pending, Running,`},
		{"empty status", []string{"--status", ","}, "no status given"},
		{"bad time", []string{"--created-from", "yesterday"}, `--created-from: "yesterday" is not a time`},
		{"bad relative", []string{"--created-to", "-5m"}, "is not a time"},
		{"negative page size", []string{"--page-size", "-1"}, "--page-size"},
		{"argument", []string{"extra"}, `unexpected argument "extra"`},
		{"bad output", []string{"-o", "xml"}, "want text or json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cli(t, append([]string{"list", "--store", store}, tt.args...)...).fails(t, exitUsage, tt.err)
		})
	}
}
