package store

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestOneTimeKeysOrderedOnUpgrade opens a schema-1 file, as Hearth wrote
// it when one-time keys were keyed by key ID: a key stored as bare JSON
// (before upload order was recorded) and one with its upload sequence in
// its value. After the upgrade both are keyed by sequence number, the
// bare one first with sequence 0, and hold their JSON alone.
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
