package store

// ReadTxs is the number of read transactions begun on the file so far
// (bbolt's TxN), for tests that bound how many a request opens.
func (db *DB) ReadTxs() int { return db.bolt.Stats().TxN }

// OpenReads is the number of read transactions open now (bbolt's
// OpenTxN). When it is 0, every read that began before a commit already
// returned has ended: in-memory state kept for such reads can go.
func (db *DB) OpenReads() int { return db.bolt.Stats().OpenTxN }
