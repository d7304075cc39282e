package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

func open(t *testing.T, path string, onCommit func(uint64)) *DB {
	t.Helper()
	db, err := Open(path, Options{OnCommit: onCommit})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// Concurrent writers share commits, every write lands, positions are
// unique, and OnCommit sees them in increasing order.
func TestGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	var commits atomic.Int64
	var last atomic.Uint64
	db := open(t, path, func(pos uint64) {
		if pos < last.Load() {
			t.Errorf("OnCommit went backwards: %d after %d", pos, last.Load())
		}
		last.Store(pos)
		commits.Add(1)
	})
	const writers, each = 32, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				err := db.Update(context.Background(), func(tx *Tx) error {
					p, err := tx.NextPos()
					if err != nil {
						return err
					}
					return tx.Put(Events, PutU64(p), fmt.Appendf(nil, "%d/%d", w, i))
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if got := last.Load(); got != writers*each {
		t.Fatalf("last position %d, want %d", got, writers*each)
	}
	if commits.Load() >= writers*each {
		t.Errorf("%d commits for %d writes: no grouping happened", commits.Load(), writers*each)
	}
	db.Close()
	// Reopen: everything is on disk.
	db = open(t, path, nil)
	defer db.Close()
	db.View(func(tx *Tx) error {
		if n := tx.Bucket(Events).Stats().KeyN; n != writers*each {
			t.Errorf("%d events after reopen, want %d", n, writers*each)
		}
		return nil
	})
}

// A failing write in a group is reported to its caller alone and leaves no
// trace; the others in the group still commit.
func TestFailedWriteIsIsolated(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "h.db"), nil)
	defer db.Close()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Update(context.Background(), func(tx *Tx) error {
				if err := tx.Put(Meta, fmt.Appendf(nil, "k%d", i), []byte("v")); err != nil {
					return err
				}
				if i%5 == 0 {
					return boom
				}
				return nil
			})
		}()
	}
	wg.Wait()
	db.View(func(tx *Tx) error {
		for i, err := range errs {
			stored := tx.Get(Meta, fmt.Appendf(nil, "k%d", i)) != nil
			if i%5 == 0 && (!errors.Is(err, boom) || stored) {
				t.Errorf("write %d: err %v, stored %v; want boom and nothing stored", i, err, stored)
			}
			if i%5 != 0 && (err != nil || !stored) {
				t.Errorf("write %d: err %v, stored %v; want success", i, err, stored)
			}
		}
		return nil
	})
}

func TestSecondOpenIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	db := open(t, path, nil)
	defer db.Close()
	if _, err := Open(path, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	db := open(t, path, nil)
	db.Update(context.Background(), func(tx *Tx) error { return tx.Put(Meta, keySchema, PutU64(schemaVersion+1)) })
	db.Close()
	if _, err := Open(path, Options{}); err == nil {
		t.Fatal("opened a file from a newer Hearth")
	}
}
