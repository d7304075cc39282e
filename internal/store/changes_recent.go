package store

import (
	"cmp"
	"slices"
	"sync"
)

// Every woken /sync asks which kinds of change its span holds (account
// data, receipts, presence...), to skip what it need not read; the first
// of a commit's long polls read the change log for it, on the critical
// path from a message's commit to its first delivery. The store appends
// every change itself (AppendChange), so it keeps the kinds of the latest
// in memory and answers without a transaction (RecentChangeKinds).

// recentChanges holds the kind of every change at a position in (from,
// to], in position order; to is the last commit's position.
type recentChanges struct {
	mu       sync.Mutex
	from, to uint64
	entries  []posKind
}

type posKind struct {
	pos  uint64
	kind string
}

// maxRecentChanges bounds the entries; past it the older half goes, and
// spans that start before what is left are read from the log.
const maxRecentChanges = 4096

// start sets where the log is known from: the position at open.
func (r *recentChanges) start(pos uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.from, r.to = pos, pos
}

// committed adds a commit's changes, made visible up to pos. It runs on
// the writer before the commit's position is published, so a span that
// ends at a published position is covered.
func (r *recentChanges) committed(added []posKind, pos uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, added...)
	if n := len(r.entries); n > maxRecentChanges {
		drop := n / 2
		r.from = r.entries[drop-1].pos
		r.entries = slices.Delete(r.entries, 0, drop)
	}
	r.to = max(r.to, pos)
}

// RecentChangeKinds returns the kinds of the changes at positions in
// (from, to], and false when the memory does not cover that span (it
// starts before what is kept, or ends after the last commit).
func (db *DB) RecentChangeKinds(from, to uint64) (map[string]bool, bool) {
	r := &db.recent
	r.mu.Lock()
	defer r.mu.Unlock()
	if from < r.from || to > r.to {
		return nil, false
	}
	kinds := map[string]bool{}
	i, _ := slices.BinarySearchFunc(r.entries, from+1, func(e posKind, pos uint64) int { return cmp.Compare(e.pos, pos) })
	for _, e := range r.entries[i:] {
		if e.pos > to {
			break
		}
		kinds[e.kind] = true
	}
	return kinds, true
}
