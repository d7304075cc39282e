package store

import (
	"context"
	"maps"
	"path/filepath"
	"testing"
)

// TestRecentChangeKinds: the kinds kept in memory are the log's, span by
// span; a span starting before the open, or ending past the last commit,
// is not answered; a rolled-back change is not kept.
func TestRecentChangeKinds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	app := func(kinds ...string) uint64 {
		t.Helper()
		var pos uint64
		if err := db.Update(ctx, func(tx *Tx) error {
			for _, k := range kinds {
				var err error
				if pos, err = tx.AppendChange(Change{Kind: k}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return pos
	}
	start := app("a")
	db.Close()
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok := db.RecentChangeKinds(start-1, start); ok {
		t.Error("a span from before the open was answered from memory")
	}
	p1 := app("b", "c")
	if err := db.Update(ctx, func(tx *Tx) error {
		tx.AppendChange(Change{Kind: "rolled-back"})
		return context.Canceled
	}); err == nil {
		t.Fatal("the failing write committed")
	}
	p2 := app("d")
	for _, c := range []struct{ from, to uint64 }{{start, p1}, {start, p2}, {p1, p2}, {p1 - 1, p1}, {p2, p2}} {
		got, ok := db.RecentChangeKinds(c.from, c.to)
		if !ok {
			t.Errorf("(%d, %d] not answered from memory", c.from, c.to)
			continue
		}
		want := map[string]bool{}
		db.View(func(tx *Tx) error {
			return tx.ChangesSince(c.from, c.to, func(_ uint64, ch Change) error { want[ch.Kind] = true; return nil })
		})
		if !maps.Equal(got, want) {
			t.Errorf("(%d, %d]: %v, the log has %v", c.from, c.to, got, want)
		}
	}
	if _, ok := db.RecentChangeKinds(p1, p2+1); ok {
		t.Error("a span past the last commit was answered")
	}
}
