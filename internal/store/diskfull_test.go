//go:build linux

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// TestCommitOnFullDisk: when the disk fills, every writer of the failed
// group commit gets the error and none of their data is visible; once
// space is freed the same DB commits again (bbolt rolls back and reloads
// its free list, it does not close or poison the file), and after a
// reopen the file passes Check.
func TestCommitOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=24m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	defer syscall.Unmount(dir, 0)
	path := filepath.Join(dir, "hearth.db")
	db := open(t, path, nil)
	put := func(key string) error {
		return db.Update(context.Background(), func(tx *Tx) error {
			// Larger than a page: its overflow pages come from the end of the file.
			return tx.Put(Users, []byte(key), bytes.Repeat([]byte{'v'}, 40<<10))
		})
	}
	if err := put("before"); err != nil {
		t.Fatal(err)
	}

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for chunk := make([]byte, 64<<10); ; {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	const writers = 8
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = put(fmt.Sprint("full", i)) }()
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("writer %d on a full disk: %v, want ENOSPC", i, err)
		}
	}
	db.View(func(tx *Tx) error {
		for i := range writers {
			if tx.Get(Users, fmt.Append(nil, "full", i)) != nil {
				t.Errorf("writer %d's refused write is visible", i)
			}
		}
		return nil
	})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := put("after"); err != nil {
		t.Fatalf("write once space is freed: %v", err)
	}
	db.Close()
	rep, err := Check(path, 0)
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("check after the full disk: %v %+v", err, rep)
	}
	db = open(t, path, nil)
	defer db.Close()
	db.View(func(tx *Tx) error {
		for _, k := range []string{"before", "after"} {
			if tx.Get(Users, []byte(k)) == nil {
				t.Errorf("acknowledged write %q lost", k)
			}
		}
		return nil
	})
}
