package room

import (
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
