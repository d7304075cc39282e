package room

import (
	"slices"
	"sync"

	"github.com/hearth-chat/hearth/internal/store"
)

// ChangeKinds is the set of change-log kinds (store.Change.Kind) that have
// an entry at a stream position in a span (from, to]. It is shared between
// the /syncs that asked about the same span: read it, never modify it.
type ChangeKinds struct{ kinds map[string]bool }

// Has reports whether the span holds an entry of kind. The zero value
// (no span was read) holds every kind, so a caller that skips work when a
// kind is absent does all of it.
func (k ChangeKinds) Has(kind string) bool { return k.kinds == nil || k.kinds[kind] }

// Only reports whether every entry of the span is of one of kinds (true
// for a span with no change-log entry), false for the zero value.
func (k ChangeKinds) Only(kinds ...string) bool {
	if k.kinds == nil {
		return false
	}
	for have := range k.kinds {
		if !slices.Contains(kinds, have) {
			return false
		}
	}
	return true
}

// SpanChangeKinds reads which change-log kinds have entries in (from, to],
// so that a /sync skips the sections (account data, presence, device lists,
// receipts) whose changes the span does not hold instead of each opening a
// read transaction to scan the log and find nothing. Every long poll woken
// by one commit asks about the same span, and entries at positions the
// notifier has reached are committed and never rewritten (new ones take
// new positions), so the answer is read once and shared: the set depends
// on the span alone, never on who asks. A span past the notifier's
// position is read but not remembered.
func (e *Engine) SpanChangeKinds(from, to uint64) (ChangeKinds, error) {
	read := func() (map[string]bool, error) {
		kinds := map[string]bool{}
		err := e.db.View(func(tx *store.Tx) error {
			return tx.ChangesSince(from, to, func(_ uint64, c store.Change) error {
				kinds[c.Kind] = true
				return nil
			})
		})
		return kinds, err
	}
	if e.notifier == nil {
		kinds, err := read()
		return ChangeKinds{kinds}, err
	}
	if pos, _ := e.notifier.Pos(); to > pos {
		kinds, err := read()
		return ChangeKinds{kinds}, err
	}
	kinds, err := e.spans.get(from, to, func() (map[string]bool, error) {
		if kinds, ok := e.db.RecentChangeKinds(from, to); ok {
			return kinds, nil // the store's memory of its latest changes
		}
		return read()
	})
	return ChangeKinds{kinds}, err
}

// spanMemo keeps the last few spans' change kinds. The woken long polls of
// one commit ask at about the same moment: the first reads, the others
// wait for its answer rather than reading the same entries again.
type spanMemo struct {
	mu   sync.Mutex
	ring [16]*spanEntry
	next int
}

type spanEntry struct {
	from, to uint64
	done     chan struct{} // closed once kinds and err are set
	kinds    map[string]bool
	err      error
}

func (m *spanMemo) get(from, to uint64, read func() (map[string]bool, error)) (map[string]bool, error) {
	m.mu.Lock()
	for _, s := range m.ring {
		if s != nil && s.from == from && s.to == to {
			m.mu.Unlock()
			<-s.done
			return s.kinds, s.err
		}
	}
	s := &spanEntry{from: from, to: to, done: make(chan struct{})}
	slot := m.next
	m.ring[slot] = s
	m.next = (m.next + 1) % len(m.ring)
	m.mu.Unlock()

	s.kinds, s.err = read()
	close(s.done)
	if s.err != nil {
		m.mu.Lock()
		if m.ring[slot] == s {
			m.ring[slot] = nil // let the next asker read again
		}
		m.mu.Unlock()
	}
	return s.kinds, s.err
}
