package store

// ReadTxs is the number of read transactions begun on the file so far
// (bbolt's TxN), for tests that bound how many a request opens.
func (db *DB) ReadTxs() int { return db.bolt.Stats().TxN }

// OpenReads is the number of read transactions open now. When it is 0,
// every read that began before a commit already returned has ended:
// in-memory state kept for such reads can go. It is not bbolt's OpenTxN,
// which bbolt raises only after the read has taken its view and let go
// of the meta lock (bbolt db.go beginTx): a read that took the view
// before a commit could be uncounted when the commit's OnCommit asked.
func (db *DB) OpenReads() int { return int(db.reads.Load()) }
