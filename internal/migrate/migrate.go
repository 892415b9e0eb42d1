// Package migrate reads the versioned migration files that each SQL backend
// embeds (migration/NNN_name.sql); applying them stays with each backend,
// which knows its database's locking and transactions.
package migrate

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// File is one migration file.
type File struct {
	Version int
	Name    string
	SQL     string
}

// Load reads dir/NNN_name.sql from fsys, checks the names and versions, and
// returns them in version order. who prefixes errors ("sqlite").
func Load(fsys fs.FS, dir, who string) ([]File, error) {
	names, err := fs.Glob(fsys, dir+"/*.sql")
	if err != nil {
		return nil, err
	}
	var out []File
	seen := map[int]string{}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("%s: migration file %s: want NNN_name.sql", who, n)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("%s: migrations %s and %s share version %d", who, prev, n, v)
		}
		seen[v] = n
		body, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		out = append(out, File{Version: v, Name: name, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	if len(out) == 0 {
		return nil, errors.New(who + ": no migrations embedded")
	}
	return out, nil
}
