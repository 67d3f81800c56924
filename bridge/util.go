package bridge

// Small helpers: per-key locks, a bounded set of recent keys, safe names in notices.

import (
	"strings"
	"sync"
	"unicode"
)

// keyedMutex is a set of mutexes by key, created on demand and freed when unused.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// Lock locks key and returns its unlock function.
func (k *keyedMutex) Lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyedEntry)
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// boundedSet remembers recent keys, forgetting the oldest beyond its size.
type boundedSet struct {
	mu    sync.Mutex
	keys  map[string]struct{}
	order []string
}

const boundedSetSize = 4096

// Add remembers key.
func (s *boundedSet) Add(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = make(map[string]struct{})
	}
	if _, ok := s.keys[key]; ok {
		return
	}
	s.keys[key] = struct{}{}
	s.order = append(s.order, key)
	if len(s.order) > boundedSetSize {
		delete(s.keys, s.order[0])
		s.order = s.order[1:]
	}
}

// Take reports whether key was remembered, forgetting it.
func (s *boundedSet) Take(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[key]; !ok {
		return false
	}
	delete(s.keys, key)
	return true
}

// maxNoticeName bounds a remote name quoted in a bot notice.
const maxNoticeName = 64

// sanitizeName makes a remote name safe to quote in a Markdown notice: no control
// characters or line breaks (which could forge a second line), Markdown syntax escaped
// (a name cannot become a link), and a bounded length.
func sanitizeName(name string) string {
	var b strings.Builder
	n := 0
	for _, r := range name {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			r = ' '
		}
		if n == maxNoticeName {
			b.WriteString("…")
			break
		}
		if strings.ContainsRune("\\`*_{}[]()<>#+-.!|~", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
