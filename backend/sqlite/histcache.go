package sqlite

import (
	"sync"

	"github.com/durohq/duro/backend"

	"github.com/durohq/duro/backend/internal/histlru"
)

// History cache.
//
// A step's work item carries the instance's whole history, and decoding it
// costs more than anything else a claim does once histories grow (a
// fan-out of n activities makes O(n) steps over O(n) events). The backend
// keeps the decoded events it handed out per instance in a bounded LRU
// (package histlru, shared with the PostgreSQL backend), and a claim reads
// and decodes only the events appended since.
//
// The cache is filled after a claim commits, and an entry is dropped
// whenever this backend deletes or replaces the history (purge,
// replacement of a finished instance, continue-as-new, the end of an
// instance); see histlru for the epoch that keeps a racing fill from
// bringing back what a change removed. Changes made by other connections
// (another process, the CLI) are noticed through PRAGMA data_version at
// the start of each batch, which empties the cache.

// maxCachedEvents bounds the events the cache holds, over all instances;
// the least recently claimed instances go first.
const maxCachedEvents = histlru.DefaultMaxEvents

// histCache is the cache with the database's data_version when last
// checked.
type histCache struct {
	*histlru.Cache
	mu      sync.Mutex
	version int64
}

func newHistCache() *histCache {
	return &histCache{Cache: histlru.New(maxCachedEvents)}
}

// get returns the cached prefix of an execution's history (nil if none)
// and the epoch to fill with.
func (c *histCache) get(id, exec string) ([]*backend.Event, uint64) {
	events, _, epoch := c.Get(id, exec)
	return events, epoch
}

// fill records an execution's history, read at epoch, unless the history
// was changed since, or a longer one is cached.
func (c *histCache) fill(id, exec string, events []*backend.Event, epoch uint64) {
	c.Fill(id, exec, events, "", epoch)
}

func (c *histCache) invalidate(id string) { c.Invalidate(id) }
func (c *histCache) drop(id string)       { c.Drop(id) }
func (c *histCache) clear()               { c.Clear() }

// checkVersion empties the cache if another connection committed since the
// last check. It runs at the start of each batch, inside its transaction.
func (b *Backend) checkVersion(t *dbtx) error {
	if b.hist.Empty() {
		return nil
	}
	var v int64
	if err := t.queryRow(`PRAGMA data_version`).Scan(&v); err != nil {
		return err
	}
	b.hist.mu.Lock()
	changed := v != b.hist.version
	b.hist.version = v
	b.hist.mu.Unlock()
	if changed {
		b.hist.Clear()
	}
	return nil
}
