package store

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// oldFile writes a file as a Hearth of the given schema left it, with
// records (key → value) in bucket and nothing else, and returns its path.
func oldFile(t *testing.T, schema uint64, bucket []byte, records map[string][]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "h.db")
	old, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = old.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(Meta)
		if err != nil {
			return err
		}
		if err := meta.Put(keySchema, PutU64(schema)); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucket)
		if err != nil {
			return err
		}
		for k, v := range records {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	old.Close()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOneTimeKeysOrderedOnUpgrade opens a schema-1 file, as Hearth wrote
// it when one-time keys were keyed by key ID: a key stored as bare JSON
// (before upload order was recorded) and one with its upload sequence in
// its value. After the upgrade both are keyed by sequence number, the
// bare one first with sequence 0, and hold their JSON alone.
func TestOneTimeKeysOrderedOnUpgrade(t *testing.T) {
	prefix := Key("@a:hs", "DEV", "signed_curve25519", "")
	bare, seqd := []byte(`{"key":"bare"}`), append(append([]byte{0}, PutU64(7)...), `{"key":"new"}`...)
	path := oldFile(t, 1, OneTimeKeys, map[string][]byte{string(prefix) + "ZZZ": bare, string(prefix) + "AAA": seqd})

	db := open(t, path, nil)
	defer db.Close()
	var order []string
	db.View(func(tx *Tx) error {
		c := tx.Cursor(OneTimeKeys)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			order = append(order, fmt.Sprintf("%s@%d=%s", k[len(prefix)+8:], U64(k[len(prefix):]), v))
		}
		if v := tx.Get(Meta, keySchema); U64(v) != schemaVersion {
			t.Errorf("schema %d after the upgrade, want %d", U64(v), schemaVersion)
		}
		return nil
	})
	want := []string{`ZZZ@0={"key":"bare"}`, `AAA@7={"key":"new"}`}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("one-time keys after the upgrade: %v, want %v", order, want)
	}
}

// TestReceiptsKeyedByUserOnUpgrade opens a schema-3 file, whose receipts
// were keyed by room, type, thread and user: after the upgrade each is
// keyed by room, user, type and thread (ReceiptKey), with its value.
func TestReceiptsKeyedByUserOnUpgrade(t *testing.T) {
	type receipt struct {
		room                     uint64
		user, typ, thread, value string
	}
	all := []receipt{
		{7, "@a:hs", "m.read", "", `{"event_id":"$1"}`},
		{7, "@a:hs", "m.read.private", "main", `{"event_id":"$2"}`},
		{7, "@b:hs", "m.read", "$root", `{"event_id":"$3"}`},
		{9, "@a:hs", "m.fully_read", "", `{"event_id":"$4"}`},
	}
	records := map[string][]byte{}
	for _, r := range all {
		records[string(NIDKey(r.room, Key(r.typ, r.thread, r.user)))] = []byte(r.value)
	}
	path := oldFile(t, 3, Receipts, records)

	db := open(t, path, nil)
	defer db.Close()
	db.View(func(tx *Tx) error {
		n := 0
		tx.Bucket(Receipts).ForEach(func(k, v []byte) error { n++; return nil })
		if n != len(all) {
			t.Errorf("%d receipts after the upgrade, want %d", n, len(all))
		}
		for _, r := range all {
			if v := tx.Get(Receipts, ReceiptKey(r.room, r.user, r.typ, r.thread)); string(v) != r.value {
				t.Errorf("%s's %s receipt in room %d: %q, want %q", r.user, r.typ, r.room, v, r.value)
			}
		}
		if v := tx.Get(Meta, keySchema); U64(v) != schemaVersion {
			t.Errorf("schema %d after the upgrade, want %d", U64(v), schemaVersion)
		}
		return nil
	})
}

// A schema-3 receipt whose thread ID holds a 0x00 byte: SetReceipt takes
// any thread ID that is the event's thread root, and a thread root is
// whatever event_id the event's m.relates_to names (threadOf), so any
// member of a room can have such a key written (room test
// TestReceiptThreadWithZeroByteRefused). The upgrade must still open the
// file: schema 4's step refused the whole migration on it, and the daemon
// would not start.
func TestReceiptWithOddThreadUpgraded(t *testing.T) {
	path := oldFile(t, 3, Receipts, map[string][]byte{
		string(NIDKey(7, Key("m.read", "$root\x00x", "@a:hs"))): []byte(`{"event_id":"$1"}`),
		string(NIDKey(7, Key("m.read", "", "@b:hs"))):           []byte(`{"event_id":"$2"}`),
	})
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
