package store

import (
	"context"
	"path/filepath"
	"testing"
)

// A read-only transaction opens each bucket once: later reads of the same
// bucket allocate no bucket again (bbolt's own cursor for the read is the
// one allocation left) and still read that bucket, not another one opened
// in the same transaction (a /sync makes dozens of reads in one).
func TestReadTxOpensEachBucketOnce(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "h.db"), nil)
	defer db.Close()
	key := []byte("k")
	if err := db.Update(context.Background(), func(tx *Tx) error {
		if err := tx.Put(Events, key, []byte("event")); err != nil {
			return err
		}
		return tx.Put(Rooms, key, []byte("room"))
	}); err != nil {
		t.Fatal(err)
	}
	err := db.View(func(tx *Tx) error {
		if got := string(tx.Get(Events, key)); got != "event" {
			t.Errorf("Events: got %q", got)
		}
		if got := string(tx.Get(Rooms, key)); got != "room" {
			t.Errorf("Rooms: got %q", got)
		}
		if k, v := tx.Cursor(Events).First(); string(k) != "k" || string(v) != "event" {
			t.Errorf("Events cursor: got %q=%q", k, v)
		}
		allocs := testing.AllocsPerRun(100, func() {
			tx.Get(Events, key)
			tx.Get(Rooms, key)
		})
		if allocs > 2 { // was 8: each Get opened its bucket anew
			t.Errorf("two reads of opened buckets allocate %.1f times, want at most 2", allocs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
