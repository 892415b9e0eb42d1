package sqlite

import (
	"container/list"
	"slices"
	"sync"

	"github.com/durohq/duro/backend"
)

// History cache.
//
// A step's work item carries the instance's whole history, and decoding it
// costs more than anything else a claim does once histories grow (a
// fan-out of n activities makes O(n) steps over O(n) events). History is
// append-only within an execution, so the backend keeps the decoded events
// it handed out per instance, and a claim reads and decodes only the events
// appended since.
//
// The cache is only a copy of committed rows. It is filled after a claim
// commits, and an entry is dropped whenever this backend deletes or
// replaces the history (purge, replacement of a finished instance,
// continue-as-new, the end of an instance). Every such change also moves
// the epoch, and a fill read at an older epoch is ignored, so a fill that
// races a change cannot bring back what the change removed. Changes made
// by other connections (another process, the CLI) are noticed through
// PRAGMA data_version at the start of each batch, which empties the cache.
// Events are shared between the cache and work items: the engine only reads
// them.

// maxCachedEvents bounds the events the cache holds, over all instances;
// the least recently claimed instances go first.
const maxCachedEvents = 100_000

type histCache struct {
	mu     sync.Mutex
	m      map[string]*list.Element // of *histEntry
	lru    list.List                // front: most recently used
	events int
	epoch  uint64
	// version is the database's data_version when last checked.
	version int64
}

type histEntry struct {
	id, exec string
	events   []*backend.Event
}

func newHistCache() *histCache {
	return &histCache{m: map[string]*list.Element{}}
}

// get returns the cached prefix of an execution's history (nil if none)
// and the epoch to fill with.
func (c *histCache) get(id, exec string) ([]*backend.Event, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.m[id]
	if el == nil {
		return nil, c.epoch
	}
	e := el.Value.(*histEntry)
	if e.exec != exec {
		c.removeLocked(el)
		return nil, c.epoch
	}
	c.lru.MoveToFront(el)
	return e.events, c.epoch
}

// fill records an execution's history, read at epoch, unless the history
// was changed since, or a longer one is cached.
func (c *histCache) fill(id, exec string, events []*backend.Event, epoch uint64) {
	if len(events) == 0 || len(events) > maxCachedEvents/2 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	if el := c.m[id]; el != nil {
		e := el.Value.(*histEntry)
		if e.exec == exec && len(e.events) >= len(events) {
			return
		}
		c.removeLocked(el)
	}
	c.m[id] = c.lru.PushFront(&histEntry{id: id, exec: exec, events: slices.Clip(events)})
	c.events += len(events)
	for c.events > maxCachedEvents {
		c.removeLocked(c.lru.Back())
	}
}

// invalidate drops an instance whose history is deleted or replaced.
func (c *histCache) invalidate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if el := c.m[id]; el != nil {
		c.removeLocked(el)
	}
}

// drop forgets an instance that finished; its history stays as it is, so
// the epoch does not move.
func (c *histCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.m[id]; el != nil {
		c.removeLocked(el)
	}
}

// clear drops everything.
func (c *histCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	clear(c.m)
	c.lru.Init()
	c.events = 0
}

// empty reports whether nothing is cached.
func (c *histCache) empty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m) == 0
}

func (c *histCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*histEntry)
	delete(c.m, e.id)
	c.events -= len(e.events)
}

// checkVersion empties the cache if another connection committed since the
// last check. It runs at the start of each batch, inside its transaction.
func (b *Backend) checkVersion(t *dbtx) error {
	if b.hist.empty() {
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
		b.hist.clear()
	}
	return nil
}
