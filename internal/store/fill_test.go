package store

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

// leafFill is the share of the leaf pages of bucket that holds data.
func leafFill(t *testing.T, db *DB, bucket []byte) (float64, int) {
	t.Helper()
	var fill float64
	var pages int
	err := db.View(func(tx *Tx) error {
		s := tx.Bucket(bucket).Stats()
		pages = s.LeafPageN + s.LeafOverflowN
		fill = float64(s.LeafInuse) / float64(pages*tx.btx.DB().Info().PageSize)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fill, pages
}

// Appends, in commits of a few events as group commit makes them, leave
// the pages of a bucket whose keys only grow (events by NID) full: at
// bbolt's default split threshold every page ended half empty (Issue 15).
// Buckets that grow at the end of many ranges at once (the timelines of
// 32 rooms, each commit appending to a few) or at random places (event
// IDs) keep the default, under which they stay reasonably full.
func TestAppendOnlyBucketsFillPages(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "h.db"), nil)
	defer db.Close()
	ctx := context.Background()
	value := bytes.Repeat([]byte("e"), 500) // about one sent message
	for commit := 0; commit < 400; commit++ {
		err := db.Update(ctx, func(tx *Tx) error {
			for i := 0; i < 12; i++ {
				pos, err := tx.NextPos()
				if err != nil {
					return err
				}
				if err := tx.Put(Events, PutU64(pos), value); err != nil {
					return err
				}
				room := uint64(pos*7919) % 32
				if err := tx.Put(Timeline, NIDKey(room, PutU64(pos)), nil); err != nil {
					return err
				}
				id := PutU64(pos * 0x9E3779B97F4A7C15) // scattered like event IDs
				if err := tx.Put(EventIDs, id, PutU64(pos)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Six 524-byte elements in a 4 KiB page are 77% of it; the default
	// split leaves three (39%).
	if fill, pages := leafFill(t, db, Events); fill < 0.75 {
		t.Errorf("events: leaf pages %.0f%% full (%d pages), want ≥ 75%%", fill*100, pages)
	}
	// Many growing ranges keep the default, whose pages are about 60% full
	// here; filled to the page they were 14% full.
	for _, b := range [][]byte{Timeline, EventIDs} {
		if fill, pages := leafFill(t, db, b); fill < 0.5 {
			t.Errorf("%s: leaf pages %.0f%% full (%d pages), want ≥ 50%%", b, fill*100, pages)
		}
	}
}
