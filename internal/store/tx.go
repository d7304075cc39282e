package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Tx is one bbolt transaction with Hearth's bucket names and the stream
// position counter.
type Tx struct {
	btx *bolt.Tx
	db  *DB
	pos uint64 // cached stream position once read in this transaction
	// start is a write transaction's stream position before its writes
	// (StartPos).
	start uint64
	// epoch is a read's count in DB.readers (Epoch); a Snapshot's is
	// ended by Done.
	epoch uint64
	// opened are the top-level buckets a read-only transaction has
	// opened. bbolt caches a transaction's buckets only when it is
	// writable: in a read-only one every Get or Cursor looked its bucket
	// up again from the root and allocated it anew, about a tenth of a
	// /sync's CPU (docs/performance.md, "Delivery: one response built
	// once"). A transaction sees one snapshot, so an opened bucket stays
	// valid for its whole life.
	opened []openedBucket
	// opened's first backing array: most transactions open a few buckets;
	// a /sync opens 15 and grows it once. Every transaction carries it,
	// so it stays small.
	opened0 [8]openedBucket
	// committed are OnCommit's functions, run once this write
	// transaction is durable; advanced are AfterCommit's, run after
	// Options.OnCommit has been told of it.
	committed []func()
	advanced  []func()
	// changes are the change log entries this write transaction appended
	// (for DB.RecentChangeKinds once it commits).
	changes []posKind
}

type openedBucket struct {
	// name is the caller's slice, not a copy: bucket names are the
	// package's variables, never modified (a copy cost an allocation per
	// bucket per transaction).
	name   []byte
	bucket *bolt.Bucket
}

// Bucket returns a top-level bucket; every bucket exists after Open.
func (tx *Tx) Bucket(name []byte) *bolt.Bucket {
	if tx.btx.Writable() {
		return tx.writeBucket(name) // bbolt caches these itself
	}
	for _, o := range tx.opened {
		if string(o.name) == string(name) {
			return o.bucket
		}
	}
	b := tx.btx.Bucket(name)
	if b != nil {
		if tx.opened == nil {
			tx.opened = tx.opened0[:0]
		}
		tx.opened = append(tx.opened, openedBucket{name, b})
	}
	return b
}

// Writable reports whether tx may write.
func (tx *Tx) Writable() bool { return tx.btx.Writable() }

// Get returns the value at key in bucket, or nil. The slice is only valid
// for the life of the transaction.
func (tx *Tx) Get(bucket, key []byte) []byte { return tx.Bucket(bucket).Get(key) }

// Put stores value at key in bucket.
func (tx *Tx) Put(bucket, key, value []byte) error {
	if err := tx.writeBucket(bucket).Put(key, value); err != nil {
		return fmt.Errorf("store: put %s: %w", bucket, err)
	}
	return nil
}

// Delete removes key from bucket.
func (tx *Tx) Delete(bucket, key []byte) error {
	if err := tx.writeBucket(bucket).Delete(key); err != nil {
		return fmt.Errorf("store: delete %s: %w", bucket, err)
	}
	return nil
}

// Cursor opens a cursor on bucket.
func (tx *Tx) Cursor(bucket []byte) *bolt.Cursor { return tx.Bucket(bucket).Cursor() }

// OnCommit registers fn to run once this write transaction is durable:
// on the store's writer, after the fsync and before any caller of the
// group is answered or the next commit begins. If the transaction rolls
// back (its group failed, or the commit did), fn never runs; a re-run of
// the caller's fn in a new transaction registers again. It is how an
// in-memory view of recent writes (room's pending transaction IDs) stays
// exactly what the file holds. fn must be quick and must not call Update.
func (tx *Tx) OnCommit(fn func()) { tx.committed = append(tx.committed, fn) }

// AfterCommit registers fn to run once this write transaction is durable
// and Options.OnCommit has been called with its position (the stream has
// advanced): on the store's writer, before Options.Wake and before any
// caller of the group is answered. Like OnCommit's, fn never runs if the
// transaction rolls back, must be quick and must not call Update. It
// lets a writer hand on what only it knows about the commit (room's early
// push counts, which every long poll of a room waits for) without
// waiting to be scheduled again after its Update returns: in the /sync
// bench on a loaded machine that hand-off put 60–70 µs at p50, 0.4 ms at
// p90, between a message's fsync and its counts (28 µs and 60–70 µs from
// here).
func (tx *Tx) AfterCommit(fn func()) { tx.advanced = append(tx.advanced, fn) }

// DB is the file tx reads, for code that has a transaction in hand and
// needs what is kept with the open file (DB.Shared).
func (tx *Tx) DB() *DB { return tx.db }

// Epoch is, for a read-only transaction, the number of commits made
// visible (DB.Commits) before it began: it sees every one of them, and
// maybe the next. A value read in it still holds while no commit
// numbered above Epoch has written what it was read from; an in-memory
// copy kept with its Epoch can be checked against the Commits number of
// the last commit that did (see e2ee's key counts).
func (tx *Tx) Epoch() uint64 { return tx.epoch }

// Pos is the highest stream position in this transaction's view.
func (tx *Tx) Pos() uint64 {
	if tx.pos == 0 {
		tx.pos = U64(tx.Get(Meta, keyPos))
	}
	return tx.pos
}

// StartPos is the highest stream position of an earlier commit: in a
// write transaction, the position before any of its writes (a group
// commit's other writes included), in a read, Pos.
func (tx *Tx) StartPos() uint64 {
	if tx.btx.Writable() {
		return tx.start
	}
	return tx.Pos()
}

// NextPos takes the next stream position. Every event and every change a
// /sync must see takes one.
func (tx *Tx) NextPos() (uint64, error) {
	p := tx.Pos() + 1
	if err := tx.Put(Meta, keyPos, PutU64(p)); err != nil {
		return 0, err
	}
	tx.pos = p
	return p, nil
}

// SkipPos moves the stream position n ahead without using the positions
// between, leaving a gap below the next one (the room engine places
// backfilled history of a room there).
func (tx *Tx) SkipPos(n uint64) error {
	p := tx.Pos() + n
	if err := tx.Put(Meta, keyPos, PutU64(p)); err != nil {
		return err
	}
	tx.pos = p
	return nil
}

// NextID takes the next value of a bucket's own sequence (NIDs that are not
// stream positions: rooms, snapshots).
func (tx *Tx) NextID(bucket []byte) (uint64, error) {
	id, err := tx.writeBucket(bucket).NextSequence()
	if err != nil {
		return 0, fmt.Errorf("store: sequence %s: %w", bucket, err)
	}
	return id, nil
}

func (tx *Tx) lastPos() uint64 { return U64(tx.Bucket(Meta).Get(keyPos)) }

// U64 decodes a big-endian uint64; a nil or short slice is 0.
func U64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// PutU64 encodes v big-endian so byte order is numeric order.
func PutU64(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

// Key joins parts with 0x00 separators; Matrix identifiers never contain NUL.
func Key(parts ...string) []byte {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}

// NIDKey is nid followed by the given suffix: the key of a per-room range.
func NIDKey(nid uint64, suffix []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(suffix)), nid)
	return append(k, suffix...)
}
