package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/durohq/duro"
)

// parseJSONFlag validates the value of a JSON flag (--input, --data) and
// returns it unchanged, to be stored as given. "@FILE" reads the JSON from a
// file. An empty value means no payload (nil).
func parseJSONFlag(flag, value string) (json.RawMessage, error) {
	if value == "" {
		return nil, nil
	}
	b := []byte(value)
	if path, ok := strings.CutPrefix(value, "@"); ok {
		var err error
		if b, err = os.ReadFile(path); err != nil {
			return nil, usageErrorf("--%s: %v", flag, err)
		}
		b = bytes.TrimSpace(b)
	}
	if !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v) // only for its message
		return nil, usageErrorf("--%s is not valid JSON (%v): %s\n"+
			"  (quote JSON for the shell, e.g. --%s '{\"sku\": \"A-1\"}' or --%s '\"text\"', or use --%s @FILE)",
			flag, err, preview(b, 60), flag, flag, flag)
	}
	return json.RawMessage(b), nil
}

// allStatuses lists the instance statuses in lifecycle order.
var allStatuses = []duro.Status{
	duro.StatusPending, duro.StatusRunning, duro.StatusSuspended, duro.StatusCompleted,
	duro.StatusFailed, duro.StatusTerminated, duro.StatusContinuedAsNew,
}

// parseStatuses parses a comma-separated list of statuses, ignoring case.
// With finishedOnly, only terminal statuses are accepted.
func parseStatuses(flag, value string, finishedOnly bool) ([]duro.Status, error) {
	var out []duro.Status
	for _, part := range strings.Split(value, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var found duro.Status
		for _, s := range allStatuses {
			if strings.EqualFold(part, string(s)) {
				found = s
			}
		}
		switch {
		case found == "":
			return nil, usageErrorf("--%s: unknown status %q (known: %s)", flag, part, statusNames(allStatuses))
		case finishedOnly && !found.IsTerminal():
			return nil, usageErrorf("--%s: %s instances have not finished and cannot be purged (use %s)",
				flag, found, statusNames(finishedStatuses()))
		}
		out = append(out, found)
	}
	if len(out) == 0 && value != "" {
		return nil, usageErrorf("--%s: no status given", flag)
	}
	return out, nil
}

func finishedStatuses() []duro.Status {
	var out []duro.Status
	for _, s := range allStatuses {
		if s.IsTerminal() {
			out = append(out, s)
		}
	}
	return out
}

func statusNames(ss []duro.Status) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// timeLayouts are the absolute time formats flags accept. Those without a
// zone are local time.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04",
	"2006-01-02 15:04",
	"2006-01-02",
}

// parseTimeFlag parses a time flag: an RFC 3339 time (or a date, or a local
// date and time), or a duration relative to now, such as 90m or 7d: in the
// future with ahead set, in the past otherwise.
func parseTimeFlag(flag, value string, now time.Time, ahead bool) (time.Time, error) {
	if value == "" {
		return time.Time{}, nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, value, time.Local); err == nil {
			return t, nil
		}
	}
	if d, ok := parseDuration(value); ok && d >= 0 {
		if ahead {
			return now.Add(d), nil
		}
		return now.Add(-d), nil
	}
	rel := "ago"
	if ahead {
		rel = "from now"
	}
	return time.Time{}, usageErrorf("--%s: %q is not a time: want RFC 3339 (2006-01-02T15:04:05Z07:00), a date (2006-01-02) or a duration %s (90m, 7d)",
		flag, value, rel)
}

// parseDuration parses a Go duration, plus whole days ("7d").
func parseDuration(s string) (time.Duration, bool) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100000 {
			return 0, false
		}
		return time.Duration(n) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// parseOutput validates -o/--output.
func parseOutput(value string) (json bool, err error) {
	switch strings.ToLower(value) {
	case "text", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usageErrorf("-o/--output: want text or json, not %q", value)
}

// notEmpty rejects an empty positional argument.
func notEmpty(what, value string) error {
	if strings.TrimSpace(value) == "" {
		return usageErrorf("%s must not be empty", what)
	}
	return nil
}

// quoteArg quotes s for a POSIX shell if it needs it, for printed commands.
func quoteArg(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@%+=,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
