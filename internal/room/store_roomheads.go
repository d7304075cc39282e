package room

import (
	"sync"

	"github.com/hearth-chat/hearth/internal/store"
)

// headMemo keeps, per room NID, the room's ID and a LastPos no lower than
// any the file holds or is about to hold, so that an incremental /sync
// finds a user's quiet rooms (quietJoined) without a read per room.
//
// The bound holds because every write of a room record raises it inside
// its write transaction (putRoomInfo), before the commit any snapshot
// could see, and a read only ever raises it too (a snapshot's value may
// be older than one a writer has raised it to). A transaction that rolls
// back leaves it higher than the file: a room then looks active and is
// read, never skipped wrongly. Entries are made on first use; a room's ID
// never changes.
type headMemo struct {
	mu    sync.RWMutex
	heads map[uint64]roomHeadEntry
}

type roomHeadEntry struct {
	id   string
	last uint64
}

type headMemoKey struct{}

func headMemoOf(db *store.DB) *headMemo {
	return db.Shared(headMemoKey{}, func() any { return &headMemo{heads: map[uint64]roomHeadEntry{}} }).(*headMemo)
}

func (h *headMemo) get(nid uint64) (roomHeadEntry, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	e, ok := h.heads[nid]
	return e, ok
}

// raise records that the room's LastPos is, or is about to be, last.
func (h *headMemo) raise(nid uint64, id string, last uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e, ok := h.heads[nid]; ok && e.last >= last {
		return
	}
	h.heads[nid] = roomHeadEntry{id: id, last: last}
}
