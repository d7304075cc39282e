package store

// ReadTxs is the number of read transactions begun on the file so far
// (bbolt's TxN), for tests that bound how many a request opens.
func (db *DB) ReadTxs() int { return db.bolt.Stats().TxN }
