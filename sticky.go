package duro

import (
	"container/list"
	"sync"

	"github.com/durohq/duro/internal/replay"
)

// Defaults of the sticky executor cache (WorkerOptions.StickyOrchestrations
// and StickyCacheBytes).
const (
	DefaultStickyOrchestrations = 1024
	DefaultStickyCacheBytes     = 64 << 20
)

// stickyCache keeps the live executors of orchestrations between their
// steps (internal/replay's Executor), by instance ID, least recently used
// evicted first, bounded by count and by approximate bytes. An executor is
// in the cache only while no step runs it: take removes it, and a step
// puts back only the executor of a step that committed. Every executor
// that leaves the cache other than by take is closed, which ends its
// goroutine; close closes them all and makes put close what it is given.
type stickyCache struct {
	maxEntries int
	maxBytes   int64
	stats      *workerStats

	mu     sync.Mutex
	m      map[string]*list.Element // of *replay.Executor
	lru    list.List                // front: most recently used
	bytes  int64
	closed bool
}

func newStickyCache(maxEntries int, maxBytes int64, stats *workerStats) *stickyCache {
	if maxEntries <= 0 || maxBytes <= 0 {
		return nil
	}
	return &stickyCache{maxEntries: maxEntries, maxBytes: maxBytes, stats: stats, m: map[string]*list.Element{}}
}

// take removes and returns the instance's executor, or nil.
func (s *stickyCache) take(id string) *replay.Executor {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	el := s.m[id]
	if el == nil {
		return nil
	}
	return s.removeLocked(el)
}

// put keeps ex, the executor of a committed step, evicting the least
// recently used executors beyond the bounds. An executor over the byte
// bound on its own is not kept.
func (s *stickyCache) put(ex *replay.Executor) {
	if s == nil || ex == nil {
		return
	}
	var evicted []*replay.Executor
	s.mu.Lock()
	if s.closed || ex.Size() > s.maxBytes {
		s.mu.Unlock()
		ex.Close()
		return
	}
	if el := s.m[ex.InstanceID()]; el != nil {
		// Another step of the instance left one meanwhile: a later step
		// (the one an eager activity of ex's step woke, committed before
		// ex was put), or an earlier delivery (a lease that lapsed and a
		// second claim). The later step's executor (the higher step
		// attempt) stays; the next step checks it against history anyway.
		if el.Value.(*replay.Executor).Attempt() > ex.Attempt() {
			s.mu.Unlock()
			ex.Close()
			return
		}
		evicted = append(evicted, s.removeLocked(el))
	}
	s.m[ex.InstanceID()] = s.lru.PushFront(ex)
	s.bytes += ex.Size()
	for len(s.m) > s.maxEntries || s.bytes > s.maxBytes {
		evicted = append(evicted, s.removeLocked(s.lru.Back()))
		s.stats.stickyEvictions.Add(1)
	}
	s.mu.Unlock()
	// Closing runs the code's deferred calls: outside the lock.
	for _, e := range evicted {
		e.Close()
	}
}

func (s *stickyCache) removeLocked(el *list.Element) *replay.Executor {
	ex := s.lru.Remove(el).(*replay.Executor)
	delete(s.m, ex.InstanceID())
	s.bytes -= ex.Size()
	return ex
}

// len returns the number of cached executors and their approximate bytes.
func (s *stickyCache) len() (int, int64) {
	if s == nil {
		return 0, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m), s.bytes
}

// close closes every cached executor; later puts close theirs at once.
func (s *stickyCache) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	all := make([]*replay.Executor, 0, len(s.m))
	for el := s.lru.Front(); el != nil; el = el.Next() {
		all = append(all, el.Value.(*replay.Executor))
	}
	s.m, s.bytes = map[string]*list.Element{}, 0
	s.lru.Init()
	s.mu.Unlock()
	for _, ex := range all {
		ex.Close()
	}
}
