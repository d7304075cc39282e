package e2ee

import (
	"sync"

	"github.com/hearth-chat/hearth/internal/store"
)

// A device's key counts go in every /sync response it gets, and counting
// walks its one-time keys (Element keeps 50). Uploads and claims take no
// stream position, so /sync cannot tell from its span whether the counts
// moved; instead every write transaction that may change any device's
// one-time or fallback keys notes its commit (keysWritten), and a count
// read in a transaction that began after the last such commit is still
// the count (store.Tx.Epoch). A write is rare beside the reads: a
// device's uploads, another's claims, a device's deletion.

// countsMemo is the counts last read per device, and the commit number of
// the last write to any device's keys; one per open file (store.DB.Shared),
// since more than one Service may write through it.
type countsMemo struct {
	mu        sync.Mutex
	lastWrite uint64 // store.DB.Commits of the last commit that may have changed keys
	entries   map[deviceKey]countsEntry
}

type deviceKey struct{ user, device string }

type countsEntry struct {
	epoch    uint64 // the Epoch of the transaction the counts were read in
	otk      map[string]int
	fallback []string
}

// maxCountsEntries bounds the memo (one entry per device that syncs);
// past it, it starts over.
const maxCountsEntries = 4096

type countsMemoKey struct{}

func memoOf(db *store.DB) *countsMemo {
	return db.Shared(countsMemoKey{}, func() any { return &countsMemo{} }).(*countsMemo)
}

// keysWritten is called in every write transaction that may change one-time
// or fallback keys: once it is durable, every count read before it is
// stale.
func keysWritten(tx *store.Tx) {
	db := tx.DB()
	tx.OnCommit(func() {
		m := memoOf(db)
		m.mu.Lock()
		m.lastWrite = db.Commits() // this commit's own number (store.DB.Commits)
		m.mu.Unlock()
	})
}

// CachedCounts returns the device's counts as CountsIn last read them, if
// no key has been written since that read began. The maps are shared:
// callers must not modify them.
func (s *Service) CachedCounts(userID, deviceID string) (map[string]int, []string, bool) {
	m := memoOf(s.db)
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[deviceKey{userID, deviceID}]
	if !ok || e.epoch < m.lastWrite {
		return nil, nil, false
	}
	return e.otk, e.fallback, true
}

func (m *countsMemo) put(tx *store.Tx, k deviceKey, otk map[string]int, fallback []string) {
	if tx.Writable() {
		return // a write transaction has no epoch; its reads may be its own writes
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if tx.Epoch() < m.lastWrite {
		return // the counts may predate a write already known
	}
	if m.entries == nil || len(m.entries) >= maxCountsEntries {
		m.entries = map[deviceKey]countsEntry{}
	}
	m.entries[k] = countsEntry{epoch: tx.Epoch(), otk: otk, fallback: fallback}
}
