package room

import (
	"bytes"
	"context"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// A thread root is whatever event_id an event's m.relates_to names, so a
// member can make a thread ID with a 0x00 byte in it, and SetReceipt
// (also for a remote user's m.receipt EDU, federation/edu.go) writes it
// into the receipts key, whose parts 0x00 separates: the key then splits
// into four parts. Schema 4's readers skip it silently; schema 3 wrote
// the same key, which made the upgrade to schema 4 refuse the file
// (store test TestReview2UpgradeWithOddReceiptKey). Such a thread ID must
// be refused before it reaches a key.
func TestReview2ReceiptThreadWithZeroByte(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	const root = "$root\x00x"
	id := sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"in a thread",`+
		`"m.relates_to":{"rel_type":"m.thread","event_id":"$root\u0000x"}}`)
	err = e.SetReceipt(ctx, alice, roomID, "m.read", id, root)
	stored := false
	db.View(func(tx *store.Tx) error {
		return tx.Bucket(store.Receipts).ForEach(func(k, v []byte) error {
			stored = stored || bytes.Contains(k, []byte(root))
			return nil
		})
	})
	if err == nil && stored {
		t.Errorf("a receipt for thread %q was stored under a key that does not split into user, type and thread", root)
	}
}
