package store

import (
	"bytes"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestOneTimeKeysOrderedOnUpgrade opens a schema-1 file, as Hearth wrote
// it before one-time keys had an order index: a key stored as bare JSON
// (before upload order was recorded) and one with its upload sequence.
// After the upgrade both are in otkorder, the bare one first with
// sequence 0 and its value rewritten in the current form.
func TestOneTimeKeysOrderedOnUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	old, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	prefix := Key("@a:hs", "DEV", "signed_curve25519", "")
	bare, seqd := []byte(`{"key":"bare"}`), append(append([]byte{0}, PutU64(7)...), `{"key":"new"}`...)
	err = old.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(Meta)
		if err != nil {
			return err
		}
		if err := meta.Put(keySchema, PutU64(1)); err != nil {
			return err
		}
		otks, err := tx.CreateBucket(OneTimeKeys)
		if err != nil {
			return err
		}
		if err := otks.Put(append(bytes.Clone(prefix), "ZZZ"...), bare); err != nil {
			return err
		}
		return otks.Put(append(bytes.Clone(prefix), "AAA"...), seqd)
	})
	old.Close()
	if err != nil {
		t.Fatal(err)
	}

	db := open(t, path, nil)
	defer db.Close()
	var order []string
	var rewritten []byte
	db.View(func(tx *Tx) error {
		c := tx.Cursor(OTKOrder)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			order = append(order, string(k[len(prefix)+8:])+"@"+string(rune('0'+U64(k[len(prefix):]))))
		}
		rewritten = bytes.Clone(tx.Get(OneTimeKeys, append(bytes.Clone(prefix), "ZZZ"...)))
		if v := tx.Get(Meta, keySchema); U64(v) != schemaVersion {
			t.Errorf("schema %d after the upgrade, want %d", U64(v), schemaVersion)
		}
		return nil
	})
	if got := len(order); got != 2 || order[0] != "ZZZ@0" || order[1] != "AAA@7" {
		t.Fatalf("otkorder after the upgrade: %v, want [ZZZ@0 AAA@7]", order)
	}
	if want := append(append([]byte{0}, PutU64(0)...), bare...); !bytes.Equal(rewritten, want) {
		t.Fatalf("bare key rewritten as %q, want %q", rewritten, want)
	}
}
