package room

import (
	"encoding/json"

	"github.com/hearth-chat/hearth/internal/store"
)

// Receipts returns the room's read receipts as the content of an m.receipt
// event (event ID → receipt type → user → {ts, thread_id}), for a user who
// may read the room (Client-Server API §"GET /rooms/{roomId}/initialSync").
// Private receipts are shown to their owner alone.
func (e *Engine) Receipts(userID, roomID string) (map[string]map[string]map[string]any, error) {
	var out map[string]map[string]map[string]any
	err := e.db.View(func(tx *store.Tx) error {
		info, _, err := e.readable(tx, userID, roomID)
		if err != nil {
			return err
		}
		out = receiptContent(tx, info.NID, userID, nil)
		return nil
	})
	return out, err
}

// ReadUpToIn returns, for one user in one room, the stream position of the
// newest event their m.read or m.read.private receipts cover, per thread:
// "" for unthreaded receipts (which cover every thread), "main" and thread
// root IDs for threaded ones (Client-Server API §"Threaded read receipts").
// It reads in tx, so /sync counts against the receipts of its own snapshot.
func ReadUpToIn(tx *store.Tx, userID, roomID string) map[string]uint64 {
	out := map[string]uint64{}
	nid := store.U64(tx.Get(store.Rooms, []byte(roomID)))
	if nid == 0 {
		return out
	}
	// The user's own range: a handful of keys however many members the
	// room has.
	eachReceipt(tx, store.ReceiptsOf(nid, userID), func(_, typ, thread string, v []byte) {
		if typ != "m.read" && typ != "m.read.private" {
			return
		}
		var r receipt
		if json.Unmarshal(v, &r) != nil {
			return
		}
		if pos := eventNID(tx, r.EventID); pos > out[thread] {
			out[thread] = pos
		}
	})
	return out
}
