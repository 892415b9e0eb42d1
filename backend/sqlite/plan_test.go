package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestClaimQueriesUseIndexes guards the cost of claims: every table access
// of the claim queries is an index search, never a scan, so a claim does not
// grow with the number of idle instances or waiting tasks.
func TestClaimQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	b, err := Open(t.Context(), filepath.Join(t.TempDir(), "plan.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	queries := map[string]string{
		"step":       claimStepQuery,
		"step claim": strings.NewReplacer("?2", "'o'", "?3", "1").Replace(claimStepUpdate),
		"activity":   strings.ReplaceAll(claimActivitiesQuery, "?2+0", "10"),
		"named activity": strings.NewReplacer("?2+0", "10", "?3", "?1").
			Replace(claimNamedActivitiesQuery),
		"messages": strings.NewReplacer("?1", "'x'", "?2", "?1", "?3", "10").
			Replace(visibleMessagesQuery),
		"control messages": strings.NewReplacer("?1", "'x'", "?2", "?1", "?3", "10").
			Replace(visibleControlMessagesQuery),
		"ready summary": strings.NewReplacer("?1", "'x'", "?2", "?1").Replace(flushQuery),
		"consume": `SELECT instance_id, id FROM inbox WHERE id IN (SELECT value FROM json_each(?1))
			AND +instance_id = 'x'`,
	}
	for name, q := range queries {
		rows, err := b.wdb.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q, `["a","b"]`)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		if err := closeRows(rows); err != nil {
			t.Fatal(err)
		}
		for _, d := range plan {
			// A step's messages come in index order: no sort of the inbox.
			if strings.Contains(name, "messages") && strings.Contains(d, "TEMP B-TREE") {
				t.Errorf("%s query sorts:\n%s", name, strings.Join(plan, "\n"))
			}
			for _, table := range []string{"instances", "activity_tasks", "inbox"} {
				if strings.HasPrefix(d, "SCAN "+table) {
					t.Errorf("%s claim query scans %s:\n%s", name, table, strings.Join(plan, "\n"))
				}
			}
		}
	}
}
