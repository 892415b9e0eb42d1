// Package histlru is the history cache the SQL backends share: a bounded
// LRU of the decoded history each instance's last claim handed out, so
// that the next claim reads and decodes only the events appended since.
//
// History is append-only within an execution, so a cached prefix stays
// valid until the history is deleted or replaced (a purge, the replacement
// of a finished instance, continue-as-new, a rewind). The cache is only a
// copy of committed rows: a backend fills it after the claim that read the
// rows committed, and drops or invalidates an entry whenever it deletes or
// replaces the history itself. Invalidate also moves the epoch, and a fill
// read at an older epoch is ignored, so a fill that races a change cannot
// bring back what the change removed. Changes made by other processes are
// the backend's to detect: each entry carries an opaque tag the backend
// chose when filling it (PostgreSQL: the version of the last cached row),
// which it checks against the database before it uses the prefix; SQLite
// clears the whole cache when another connection committed.
//
// Events are shared between the cache and work items: callers only read
// them.
package histlru

import (
	"container/list"
	"slices"
	"sync"

	"github.com/durohq/duro/backend"
)

// DefaultMaxEvents is the bound on the events a cache holds, over all
// instances, that the backends use by default.
const DefaultMaxEvents = 100_000

// Cache is a bounded LRU of decoded histories, safe for concurrent use. A
// nil *Cache caches nothing.
type Cache struct {
	max    int
	mu     sync.Mutex
	m      map[string]*list.Element // of *entry
	lru    list.List                // front: most recently used
	events int
	epoch  uint64
}

type entry struct {
	id, exec string
	tag      string
	events   []*backend.Event
}

// New returns a cache of at most maxEvents events (over all instances); the
// least recently used instances go first. A history longer than half the
// bound is not cached. maxEvents < 1 means no cache (nil).
func New(maxEvents int) *Cache {
	if maxEvents < 1 {
		return nil
	}
	return &Cache{max: maxEvents, m: map[string]*list.Element{}}
}

// Get returns the cached prefix of an execution's history (nil if none),
// the tag it was filled with, and the epoch to fill with.
func (c *Cache) Get(id, exec string) (events []*backend.Event, tag string, epoch uint64) {
	if c == nil {
		return nil, "", 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.m[id]
	if el == nil {
		return nil, "", c.epoch
	}
	e := el.Value.(*entry)
	if e.exec != exec {
		c.removeLocked(el)
		return nil, "", c.epoch
	}
	c.lru.MoveToFront(el)
	return e.events, e.tag, c.epoch
}

// Fill records an execution's history, read at epoch, with the backend's
// tag, unless the history was invalidated since, or a longer one is
// cached. The cache keeps events (the caller must not change it).
func (c *Cache) Fill(id, exec string, events []*backend.Event, tag string, epoch uint64) {
	if c == nil || len(events) == 0 || len(events) > c.max/2 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	if el := c.m[id]; el != nil {
		e := el.Value.(*entry)
		if e.exec == exec && len(e.events) > len(events) {
			return
		}
		c.removeLocked(el)
	}
	c.m[id] = c.lru.PushFront(&entry{id: id, exec: exec, tag: tag, events: slices.Clip(events)})
	c.events += len(events)
	for c.events > c.max {
		c.removeLocked(c.lru.Back())
	}
}

// Invalidate drops an instance whose history is deleted or replaced, and
// moves the epoch.
func (c *Cache) Invalidate(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if el := c.m[id]; el != nil {
		c.removeLocked(el)
	}
}

// Drop forgets an instance whose history stays as it is (it finished), so
// the epoch does not move.
func (c *Cache) Drop(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.m[id]; el != nil {
		c.removeLocked(el)
	}
}

// Clear drops everything and moves the epoch.
func (c *Cache) Clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	clear(c.m)
	c.lru.Init()
	c.events = 0
}

// Empty reports whether nothing is cached.
func (c *Cache) Empty() bool {
	if c == nil {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m) == 0
}

// Len returns the number of instances and of events cached.
func (c *Cache) Len() (instances, events int) {
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m), c.events
}

func (c *Cache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*entry)
	delete(c.m, e.id)
	c.events -= len(e.events)
}
