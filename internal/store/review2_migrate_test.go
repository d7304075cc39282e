package store

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A schema-3 receipt whose thread ID holds a 0x00 byte: SetReceipt takes
// any thread ID that is the event's thread root, and a thread root is
// whatever event_id the event's m.relates_to names (threadOf), so any
// member of a room can have such a key written (room test
// TestReview2ReceiptThreadWithZeroByte). The upgrade must still open the
// file: schema 4's step refused the whole migration on it, and the daemon
// would not start.
func TestReview2UpgradeWithOddReceiptKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	old, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	odd := NIDKey(7, Key("m.read", "$root\x00x", "@a:hs"))
	plain := NIDKey(7, Key("m.read", "", "@b:hs"))
	err = old.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(Meta)
		if err != nil {
			return err
		}
		if err := meta.Put(keySchema, PutU64(3)); err != nil {
			return err
		}
		b, err := tx.CreateBucket(Receipts)
		if err != nil {
			return err
		}
		if err := b.Put(odd, []byte(`{"event_id":"$1"}`)); err != nil {
			return err
		}
		return b.Put(plain, []byte(`{"event_id":"$2"}`))
	})
	old.Close()
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("the upgrade refused the file: %v", err)
	}
	defer db.Close()
	db.View(func(tx *Tx) error {
		if v := tx.Get(Receipts, ReceiptKey(7, "@b:hs", "m.read", "")); string(v) != `{"event_id":"$2"}` {
			t.Errorf("@b:hs's receipt after the upgrade: %q", v)
		}
		return nil
	})
}
