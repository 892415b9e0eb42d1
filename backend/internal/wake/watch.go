package wake

import "sync"

// Watchers keeps one-shot watches on keys (instance IDs): a watch's
// channel is closed the first time its key is notified, or on NotifyAll
// or Shutdown. A watch costs a map entry until it fires or is stopped, and
// nothing when nobody watches. The zero value is ready to use.
type Watchers struct {
	mu   sync.Mutex
	m    map[string]map[*watch]struct{}
	n    int
	done bool
}

type watch struct {
	ch chan struct{}
}

// noop is the stop function of a watch that needs no release.
func noop() {}

// Watch returns a channel closed when key is next notified (at once after
// Shutdown) and a function that releases the watch. stop may be called
// any number of times, from any goroutine, before or after the channel
// closed; after it the channel may never close.
func (w *Watchers) Watch(key string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return closed, noop
	}
	if w.m == nil {
		w.m = make(map[string]map[*watch]struct{})
	}
	set := w.m[key]
	if set == nil {
		set = make(map[*watch]struct{}, 1)
		w.m[key] = set
	}
	x := &watch{ch: make(chan struct{})}
	set[x] = struct{}{}
	w.n++
	return x.ch, func() { w.stop(key, x) }
}

func (w *Watchers) stop(key string, x *watch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.m[key]
	if _, ok := set[x]; !ok {
		return // fired, or stopped already
	}
	delete(set, x)
	w.n--
	if len(set) == 0 {
		delete(w.m, key)
	}
}

// Notify fires and drops every watch on key.
func (w *Watchers) Notify(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		return
	}
	w.fireLocked(key)
}

// NotifyKeys is Notify for each of keys, under one lock.
func (w *Watchers) NotifyKeys(keys []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		if w.n == 0 {
			return
		}
		w.fireLocked(k)
	}
}

func (w *Watchers) fireLocked(key string) {
	set := w.m[key]
	for x := range set {
		close(x.ch)
		w.n--
	}
	delete(w.m, key)
}

// NotifyAll fires and drops every watch: for when a notification may have
// been missed (a lost connection) or one names no key.
func (w *Watchers) NotifyAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fireAllLocked()
}

func (w *Watchers) fireAllLocked() {
	for _, set := range w.m {
		for x := range set {
			close(x.ch)
		}
	}
	w.m, w.n = nil, 0
}

// Shutdown fires every watch and makes Watch return a closed channel from
// now on.
func (w *Watchers) Shutdown() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fireAllLocked()
	w.done = true
}

// Len returns the number of live watches (neither fired nor stopped).
func (w *Watchers) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}
