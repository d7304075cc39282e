package room

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/hearth-chat/hearth/internal/store"
)

// Event IDs are hashes, so the eventids index (event ID → NID) has its
// keys all over the bucket: every stored event dirtied a leaf of its own,
// a page the store's writer wrote and synced per event, the largest share
// of a commit's pages left once transaction IDs went through txnlog
// (docs/performance.md, "The disk under the writer").
//
// So the IDs of new events are indexed in memory (recent) and written to
// eventids in batches, eventIDsMergeAt at a time, sorted, each leaf once
// per batch. meta "eventids_to" says up to which stream position every
// event's ID is in the bucket; the events after it are exactly those in
// recent, which is read back from the events bucket on start (an event's
// record holds its ID). Nothing new is written per event.
//
// A lookup reads the bucket in its own transaction, then recent. Memory
// is not transactional, so an entry of recent is believed only when the
// transaction sees it: its NID is within the transaction's view (a read
// that began before the event's commit has a lower position) and the
// event stored there is the one the entry names (an entry left by a write
// that rolled back names a position that holds nothing, or another event,
// once reused). An entry is added in the write that stores the event, so
// that write's later lookups find it too.
//
// A merge's write puts every entry into the bucket and moves the
// watermark; once durable it takes them out of recent. A read that began
// before that commit sees neither the bucket's new keys nor, then, the
// entries: so they are kept (retired) until every read transaction
// begun before that commit has ended (store.DB.ReadsBefore), and looked
// up there like recent's.

// eventIDsMergeAt is how many IDs in memory make the next write merge
// them into eventids (a variable for tests). Memory: about 150 bytes an
// ID; start-up reads at most this many event records more.
var eventIDsMergeAt = 4096

type eventIndex struct {
	db      *store.DB
	mu      sync.Mutex
	recent  map[string]idEntry // event ID → where it is stored, for events past the watermark
	retired []retiredIDs       // merged, kept for reads older than the merge (see above)
	// mergingTo is the watermark a merge wrote and has not yet made
	// durable (0: none). A write that sees it is the one that merged, and
	// does not merge again; a write after a rollback sees the old one.
	mergingTo uint64
}

// retiredIDs are the entries one merge moved, and the number of the
// commit that made it visible (store.DB.Commits).
type retiredIDs struct {
	ids    map[string]idEntry
	commit uint64
}

// idEntry is where an event is stored; prev, where it was stored before
// (an outlier stored again with its state, ingest_join.go), for reads
// older than the move. prev is a chain, not one position: a write that
// moved the event and rolled back (a group commit re-runs the others'
// writes) leaves a position that holds nothing, and the write run again
// must not forget the one before it.
type idEntry struct {
	nid  uint64
	prev *idEntry
}

type eventIndexKey struct{}

// eventIndexOf returns the index of tx's file, made on first use from
// the events past the watermark as tx sees them. The room engine makes it
// when it is built (New), before any write can add to it, so whichever
// transaction makes it sees every event the index must hold.
func eventIndexOf(tx *store.Tx) *eventIndex {
	return tx.DB().Shared(eventIndexKey{}, func() any {
		x := &eventIndex{db: tx.DB(), recent: map[string]idEntry{}}
		c := tx.Cursor(store.Events)
		from := store.U64(tx.Get(store.Meta, store.EventIDsTo)) + 1
		for k, v := c.Seek(store.PutU64(from)); k != nil; k, v = c.Next() {
			if id, ok := recordEventID(v); ok {
				x.recent[string(id)] = idEntry{nid: store.U64(k)}
			}
		}
		return x
	}).(*eventIndex)
}

// eventNID resolves an event ID to its NID in tx's view; 0 if unknown.
func eventNID(tx *store.Tx, eventID string) uint64 {
	if v := tx.Get(store.EventIDs, []byte(eventID)); v != nil {
		return store.U64(v)
	}
	return eventIndexOf(tx).lookup(tx, eventID)
}

func (x *eventIndex) lookup(tx *store.Tx, id string) uint64 {
	var buf [6]uint64
	cands := buf[:0]
	x.mu.Lock()
	if e, ok := x.recent[id]; ok {
		cands = e.appendNIDs(cands)
	}
	for _, gen := range x.retired {
		if e, ok := gen.ids[id]; ok {
			cands = e.appendNIDs(cands)
		}
	}
	x.mu.Unlock()
	for _, nid := range cands {
		if nid != 0 && nid <= tx.Pos() && storedAs(tx, nid, id) {
			return nid
		}
	}
	return 0
}

// appendNIDs appends where e says the event is, then where it was.
func (e idEntry) appendNIDs(to []uint64) []uint64 {
	for p := &e; p != nil; p = p.prev {
		to = append(to, p.nid)
	}
	return to
}

// storedAs reports whether tx holds the event id at nid.
func storedAs(tx *store.Tx, nid uint64, id string) bool {
	got, ok := recordEventID(tx.Get(store.Events, store.PutU64(nid)))
	return ok && string(got) == id
}

// add indexes the event id stored at nid in the write transaction tx,
// merging what is in memory when there is enough of it.
func (x *eventIndex) add(tx *store.Tx, id string, nid uint64) error {
	to := store.U64(tx.Get(store.Meta, store.EventIDsTo))
	if nid <= to {
		// Below the watermark the bucket must hold it (positions only
		// grow, so this is not expected).
		return tx.Put(store.EventIDs, []byte(id), store.PutU64(nid))
	}
	x.mu.Lock()
	e := idEntry{nid: nid}
	if old, had := x.recent[id]; had {
		if old.nid == nid {
			e.prev = old.prev
		} else {
			e.prev = &old
		}
	}
	x.recent[id] = e
	merge := len(x.recent) >= eventIDsMergeAt && (x.mergingTo == 0 || to != x.mergingTo)
	x.mu.Unlock()
	x.release()
	if merge {
		return x.merge(tx)
	}
	return nil
}

// merge writes every ID in memory that tx confirms into eventids, in key
// order, and moves the watermark to tx's position: every event stored so
// far, this transaction's included, is then in the bucket. Once the
// write is durable the entries leave recent.
func (x *eventIndex) merge(tx *store.Tx) error {
	x.mu.Lock()
	batch := maps.Clone(x.recent)
	x.mu.Unlock()
	ids := make([]string, 0, len(batch))
	for id := range batch {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		e := batch[id]
		for _, nid := range e.appendNIDs(nil) {
			if nid != 0 && storedAs(tx, nid, id) {
				if err := tx.Put(store.EventIDs, []byte(id), store.PutU64(nid)); err != nil {
					return fmt.Errorf("room: merge event IDs: %w", err)
				}
				break
			}
		}
	}
	to := tx.Pos()
	if err := tx.Put(store.Meta, store.EventIDsTo, store.PutU64(to)); err != nil {
		return fmt.Errorf("room: merge event IDs: %w", err)
	}
	// Transaction IDs are read back on start from the same events: their
	// watermark keeps up with this one (store_txns.go).
	if err := txnIndexOf(x.db).merge(tx); err != nil {
		return fmt.Errorf("room: merge transaction IDs: %w", err)
	}
	x.mu.Lock()
	x.mergingTo = to
	x.mu.Unlock()
	tx.OnCommit(func() {
		x.mu.Lock()
		x.mergingTo = 0
		for id, e := range batch {
			if x.recent[id] == e {
				delete(x.recent, id)
			}
		}
		x.retired = append(x.retired, retiredIDs{batch, x.db.Commits()})
		x.mu.Unlock()
		x.release()
	})
	return nil
}

// release forgets the retired entries no open read transaction can need:
// those of merges made visible before every open read began.
func (x *eventIndex) release() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.retired = slices.DeleteFunc(x.retired, func(gen retiredIDs) bool { return !x.db.ReadsBefore(gen.commit) })
}

// recordEventID reads the event ID out of an events record (Event.encode)
// without decoding the rest; the bytes are the record's.
func recordEventID(b []byte) ([]byte, bool) {
	const header = 1 + 4*8 // flags, stateBefore, redactedBy, roomNID, replaces
	if len(b) < header {
		return nil, false
	}
	b = b[header:]
	var field []byte
	for range 2 { // the room version, then the event ID
		if len(b) < 2 || len(b) < 2+int(binary.BigEndian.Uint16(b)) {
			return nil, false
		}
		n := int(binary.BigEndian.Uint16(b))
		field, b = b[2:2+n], b[2+n:]
	}
	return field, true
}
