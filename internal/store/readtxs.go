package store

import "sync"

// ReadTxs is the number of read transactions begun on the file so far
// (bbolt's TxN), for tests that bound how many a request opens.
func (db *DB) ReadTxs() int { return db.bolt.Stats().TxN }

// readers counts the read transactions open through View and Snapshot by
// the number of commits made before each began (its epoch), so that
// in-memory state kept for reads older than a commit can go as soon as
// they have ended (ReadsBefore). A read is counted before bbolt takes its
// view and uncounted after it ends; the epoch moves once a commit is
// visible, before its OnCommit functions run: so a read counted in an
// epoch sees every commit before it, and maybe the next (which only
// keeps state a little longer). bbolt's own OpenTxN is raised after the
// view is taken, outside the lock a commit's meta write waits for (bbolt
// db.go beginTx), and has no epochs.
type readers struct {
	mu      sync.Mutex
	commits uint64         // commits made visible
	open    map[uint64]int // epoch → reads open that began in it
}

func (r *readers) begin() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open == nil {
		r.open = map[uint64]int{}
	}
	r.open[r.commits]++
	return r.commits
}

func (r *readers) end(epoch uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open[epoch]--; r.open[epoch] <= 0 {
		delete(r.open, epoch)
	}
}

func (r *readers) committed() {
	r.mu.Lock()
	r.commits++
	r.mu.Unlock()
}

// Commits is the number of write transactions made visible so far; in an
// OnCommit function, its own commit included.
func (db *DB) Commits() uint64 {
	db.readers.mu.Lock()
	defer db.readers.mu.Unlock()
	return db.readers.commits
}

// ReadsBefore reports whether a read transaction that began before the
// commit numbered n (Commits) may still be open.
func (db *DB) ReadsBefore(n uint64) bool {
	db.readers.mu.Lock()
	defer db.readers.mu.Unlock()
	for epoch := range db.readers.open {
		if epoch < n {
			return true
		}
	}
	return false
}
