package room

import (
	"fmt"
	"sync"

	"github.com/hearth-chat/hearth/internal/store"
)

// Client transaction IDs (Client-Server API §"Transaction identifiers")
// are kept in two places. The txns bucket, keyed by txnKey, is the index
// a retry is looked up in; but its keys grow at the end of one range per
// client session, so writing each send's key there dirtied a leaf page
// (about two page writes with its splits and branches) per event, the
// largest share of the store writer's cost with 32 senders in separate
// rooms (docs/performance.md, "Separate rooms: the writer's cycle").
// So a send appends its key to txnlog instead, keyed by the event's NID:
// append-only, so the sends of one commit share its last page. The keys
// in txnlog are also held in memory (txnIndex.recent), and once there
// are txnMergeAt of them a room's builder moves them into txns in one
// batch and deletes them from txnlog, writing each session's leaf once
// per batch rather than once per send.
//
// A retry is found in txns or in recent. recent is exactly txnlog: it is
// loaded from txnlog when the engine starts (after a crash too: txnlog
// is written in the event's own transaction), it gains a key only once
// the transaction that appended it is durable (store.Tx.OnCommit), and
// it loses keys only once the merge that put them into txns is durable.
// A read transaction that started before a key's commit does not need
// it: every send of one room, and so every send with that key, goes
// through the room's builder, which reads after its previous commit.
//
// Files from before have an empty txnlog and every key in txns.

// txnMergeAt is how many pending keys make the next batch merge them
// into txns. Memory: about 150 bytes a key; start-up reads at most this
// many txnlog records plus one batch.
const txnMergeAt = 1024

type txnIndex struct {
	mu      sync.Mutex
	recent  map[string]uint64 // txnKey → event NID, for every record in txnlog
	merging bool              // a builder is merging recent into txns
	merges  uint64            // merges made durable so far (see mergesDone)
	err     error             // loading txnlog failed: every lookup reports it
}

type txnIndexKey struct{}

// txnIndexOf returns the index shared by every engine over db, loading
// txnlog on first use.
func txnIndexOf(db *store.DB) *txnIndex {
	return db.Shared(txnIndexKey{}, func() any {
		x := &txnIndex{recent: map[string]uint64{}}
		x.err = db.View(func(tx *store.Tx) error {
			return tx.Bucket(store.TxnLog).ForEach(func(k, v []byte) error {
				x.recent[string(v)] = store.U64(k)
				return nil
			})
		})
		if x.err != nil {
			x.err = fmt.Errorf("room: load txnlog: %w", x.err)
		}
		return x
	}).(*txnIndex)
}

// lookup returns the NID of the event the transaction key sent, or 0.
func (x *txnIndex) lookup(tx *store.Tx, key []byte) (uint64, error) {
	if nid := store.U64(tx.Get(store.Txns, key)); nid != 0 {
		return nid, nil
	}
	x.mu.Lock()
	nid, err := x.recent[string(key)], x.err
	x.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if nid > tx.Pos() {
		// Committed after this read transaction began: not in its view.
		return 0, nil
	}
	return nid, nil
}

// record notes that the event at nid was sent under the transaction key,
// in the write transaction that appends it.
func (x *txnIndex) record(tx *store.Tx, key []byte, nid uint64) error {
	if err := tx.Put(store.TxnLog, store.PutU64(nid), key); err != nil {
		return err
	}
	tx.OnCommit(func() {
		x.mu.Lock()
		x.recent[string(key)] = nid
		x.mu.Unlock()
	})
	return nil
}

// startMerge reports whether the caller should merge in its next write
// transaction; it then must call endMerge once that write has returned.
func (x *txnIndex) startMerge() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.merging || x.err != nil || len(x.recent) < txnMergeAt {
		return false
	}
	x.merging = true
	return true
}

func (x *txnIndex) endMerge() {
	x.mu.Lock()
	x.merging = false
	x.mu.Unlock()
}

// merge moves every pending key into txns and out of txnlog. It may run
// more than once (store.DB.Update); each run takes recent afresh.
func (x *txnIndex) merge(tx *store.Tx) error {
	x.mu.Lock()
	moved := make(map[string]uint64, len(x.recent))
	for k, nid := range x.recent {
		moved[k] = nid
	}
	x.mu.Unlock()
	for k, nid := range moved {
		if err := tx.Put(store.Txns, []byte(k), store.PutU64(nid)); err != nil {
			return err
		}
		if err := tx.Delete(store.TxnLog, store.PutU64(nid)); err != nil {
			return err
		}
	}
	tx.OnCommit(func() {
		x.mu.Lock()
		for k, nid := range moved {
			if x.recent[k] == nid {
				delete(x.recent, k)
			}
		}
		x.merges++
		x.mu.Unlock()
	})
	return nil
}

// mergesDone counts the merges made durable. A read transaction begun
// after mergesDone returned n misses no transaction key as long as it
// still returns n: keys leave recent only when a merge is durable, so
// every key that left before is in that transaction's txns.
func (x *txnIndex) mergesDone() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.merges
}
