package store

import (
	"context"
	"path/filepath"
	"testing"
)

// ReadsBefore(n) holds while a read begun before commit n is open, in
// the commit's own OnCommit too, and not for reads begun after it.
func TestReadsBeforeACommit(t *testing.T) {
	ctx := context.Background()
	db := open(t, filepath.Join(t.TempDir(), "h.db"), nil)
	defer db.Close()
	old, err := db.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	var olderOpen bool
	err = db.Update(ctx, func(tx *Tx) error {
		tx.OnCommit(func() { n = db.Commits(); olderOpen = db.ReadsBefore(n) })
		_, err := tx.NextPos()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !olderOpen {
		t.Error("in the commit's OnCommit, a read begun before it was not counted")
	}
	db.View(func(*Tx) error {
		if !db.ReadsBefore(n) {
			t.Error("with the older read still open, ReadsBefore is false")
		}
		return nil
	})
	old.Done()
	db.View(func(*Tx) error {
		if db.ReadsBefore(n) {
			t.Error("once the older read ended, a read begun after the commit counts as older")
		}
		return nil
	})
}
