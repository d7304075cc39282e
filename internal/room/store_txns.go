package room

import (
	"fmt"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// Client transaction IDs (Client-Server API §"Transaction identifiers")
// are found again through the txns bucket, keyed by txnKey. Its keys grow
// at the end of one range per client session, so writing each send's key
// there dirtied a leaf page (about two page writes with its splits and
// branches) per event, the largest share of the store writer's cost with
// 32 senders in separate rooms (docs/performance.md, "Separate rooms: the
// writer's cycle"). The keys of recent sends are instead held in memory
// (txnIndex.recent) and moved into txns in batches, each session's leaf
// written once per batch.
//
// Nothing is written per send besides the event: its record holds the
// session and the transaction ID, and its JSON the rest of the key, so
// the keys of the events after meta's txns_to (store.TxnsTo) are read
// back from the events bucket on start, as event IDs are
// (store_eventids.go). A send's key joins recent once its transaction is
// durable (store.Tx.OnCommit); a merge puts every key in recent into
// txns, moves txns_to to the position its transaction started from (every
// event up to it was committed before, so its key is in recent), and
// takes the keys out of recent once durable. Merges come from a room's
// builder once there are txnMergeAt keys, and with every merge of event
// IDs, so that txns_to keeps up with the stream and the read on start
// stays short when nobody here sends. (Until schema 6 each key was also
// appended to txnlog in the event's transaction; a file from before has
// its last keys there, read on start, and merged like the others.)
//
// A retry is found in txns or in recent. A read transaction that started
// before a key's commit does not need it: every send of one room, and so
// every send with that key, goes through the room's builder, which reads
// after its previous commit.

// txnMergeAt is how many pending keys make the next batch merge them
// into txns. Memory: about 150 bytes a key. Start-up reads back the
// events after txns_to, which the merges of event IDs keep to about
// eventIDsMergeAt (store_eventids.go), and parses those sent under a
// transaction ID.
const txnMergeAt = 1024

type txnIndex struct {
	mu      sync.Mutex
	recent  map[string]uint64 // txnKey → event NID, for the sends not merged into txns
	merging bool              // a builder is merging recent into txns
	merges  uint64            // merges made durable so far (see mergesDone)
	err     error             // loading failed: every lookup reports it
}

type txnIndexKey struct{}

// txnIndexOf returns the index shared by every engine over db, reading
// the keys not yet merged on first use.
func txnIndexOf(db *store.DB) *txnIndex {
	return db.Shared(txnIndexKey{}, func() any {
		x := &txnIndex{recent: map[string]uint64{}}
		x.err = db.View(x.load)
		if x.err != nil {
			x.err = fmt.Errorf("room: load transaction IDs: %w", x.err)
		}
		return x
	}).(*txnIndex)
}

// load reads into recent the keys of the events after txns_to, and those
// a file from before schema 6 left in txnlog.
func (x *txnIndex) load(tx *store.Tx) error {
	err := tx.Bucket(store.TxnLog).ForEach(func(k, v []byte) error {
		x.recent[string(v)] = store.U64(k)
		return nil
	})
	if err != nil {
		return err
	}
	c := tx.Cursor(store.Events)
	for k, v := c.Seek(store.PutU64(store.U64(tx.Get(store.Meta, store.TxnsTo)) + 1)); k != nil; k, v = c.Next() {
		key, err := recordTxnKey(store.U64(k), v)
		if err != nil {
			return err
		}
		if key != nil {
			x.recent[string(key)] = store.U64(k)
		}
	}
	return nil
}

// recordTxnKey is the txnKey of the send that stored the event record b
// at nid, or nil for an event not sent under a transaction ID.
func recordTxnKey(nid uint64, b []byte) ([]byte, error) {
	ev, err := decodeEvent(nid, b)
	if err != nil || ev.TxnID == "" {
		return nil, err
	}
	ver, err := gomatrixserverlib.GetRoomVersion(ev.Version)
	if err != nil {
		return nil, err
	}
	pdu, err := ver.NewEventFromTrustedJSONWithEventID(ev.ID, ev.JSON, ev.Flags&flagRedacted != 0)
	if err != nil {
		return nil, fmt.Errorf("event %d: %w", nid, err)
	}
	return txnKey(SendRequest{Sender: string(pdu.SenderID()), Device: ev.TxnDevice, TxnID: ev.TxnID,
		RoomID: pdu.RoomID().String(), Type: pdu.Type(), Redacts: pdu.Redacts()}), nil
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
// in the write transaction that appends it (whose record of the event
// holds the key).
func (x *txnIndex) record(tx *store.Tx, key []byte, nid uint64) {
	tx.OnCommit(func() {
		x.mu.Lock()
		x.recent[string(key)] = nid
		x.mu.Unlock()
	})
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

// merge moves every pending key into txns (and out of txnlog, for a file
// from before schema 6) and txns_to up to the position tx started from.
// It may run more than once (store.DB.Update); each run takes recent
// afresh.
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
	if to := tx.StartPos(); to > store.U64(tx.Get(store.Meta, store.TxnsTo)) {
		if err := tx.Put(store.Meta, store.TxnsTo, store.PutU64(to)); err != nil {
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
