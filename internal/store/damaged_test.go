package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// filled makes a closed store file with enough keys for several leaf pages
// and returns its path and high-water mark in bytes.
func filled(t *testing.T) (string, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hearth.db")
	db := open(t, path, nil)
	err := db.Update(context.Background(), func(tx *Tx) error {
		for i := range 3000 {
			if err := tx.Put(Users, fmt.Appendf(nil, "user%05d", i), []byte(strings.Repeat("x", 40))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	size := db.Size()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path, size
}

// TestOpenDamaged: a file cut short after its meta pages, one whose meta
// pages are garbage, and an empty one each give ErrDamaged with a message
// naming the file and the way out, instead of a SIGBUS on the first read
// past the end (truncated) or a silent new database (empty).
func TestOpenDamaged(t *testing.T) {
	cases := map[string]func(path string, size int64) error{
		"truncated to half": func(path string, size int64) error { return os.Truncate(path, size/2) },
		"garbage meta pages": func(path string, _ int64) error {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte(strings.Repeat("garbage!", 2*4096/8)), 0)
			return err
		},
		"empty":               func(path string, _ int64) error { return os.Truncate(path, 0) },
		"shorter than a page": func(path string, _ int64) error { return os.Truncate(path, 100) },
		"one meta page only":  func(path string, _ int64) error { return os.Truncate(path, 4096) },
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			path, size := filled(t)
			if err := damage(path, size); err != nil {
				t.Fatal(err)
			}
			db, err := Open(path, Options{})
			if err == nil {
				db.Close()
				t.Fatal("a damaged file opened")
			}
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("error %v does not match ErrDamaged", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, path) || !strings.Contains(msg, "hearth check") {
				t.Errorf("message %q: want one line naming the file and 'hearth check'", msg)
			}
		})
	}
}

// TestOpenSound: a whole file still opens (the size check must not refuse
// the preallocated tail bbolt leaves past the high-water mark).
func TestOpenSound(t *testing.T) {
	path, _ := filled(t)
	open(t, path, nil).Close()
}

// corruptLeaf overwrites the page header of a leaf page in use in the
// middle of the users bucket (one holding "user01…" keys), which neither
// bbolt's Open nor the store's migration reads, but Check does.
func corruptLeaf(t *testing.T, path string) int {
	t.Helper()
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var leaves []int
	pageSize := b.Info().PageSize
	b.View(func(tx *bolt.Tx) error {
		for id := 2; int64(id)*int64(pageSize) < tx.Size(); id++ {
			if info, err := tx.Page(id); err == nil && info != nil && info.Type == "leaf" {
				leaves = append(leaves, id)
			}
		}
		return nil
	})
	b.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	leaf := -1
	for _, id := range leaves {
		if bytes.Contains(raw[id*pageSize:(id+1)*pageSize], []byte("user01")) {
			leaf = id
			break
		}
	}
	if leaf < 0 {
		t.Fatal("no leaf page of the users bucket")
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The header: page id (8 bytes), flags (2), count (2), overflow (4).
	if _, err := f.WriteAt([]byte{0x55, 0x55}, int64(leaf)*int64(pageSize)+8); err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestCheck: a sound file reports no problem and its page count; a file
// with a damaged leaf page in the middle opens (the meta pages are fine)
// but Check reports the page.
func TestCheck(t *testing.T) {
	path, size := filled(t)
	rep, err := Check(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 || rep.Pages != size/int64(rep.PageSize) || rep.FileBytes < size {
		t.Fatalf("sound file: %+v (high-water %d bytes)", rep, size)
	}
	leaf := corruptLeaf(t, path)
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("the file with a damaged leaf page should still open: %v", err)
	}
	db.Close()
	rep, err = Check(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) == 0 || !strings.Contains(strings.Join(rep.Problems, "\n"), fmt.Sprint(leaf)) {
		t.Fatalf("damaged page %d: Check reported %q", leaf, rep.Problems)
	}
}

// TestCheckWhileOpen: Check does not read a file another process writes;
// it says the file is in use.
func TestCheckWhileOpen(t *testing.T) {
	path, _ := filled(t)
	db := open(t, path, nil)
	defer db.Close()
	if _, err := Check(path, 0); !errors.Is(err, ErrLocked) {
		t.Fatalf("Check on an open file: %v, want ErrLocked", err)
	}
}

// TestServerNameRecorded: the first name recorded stays.
func TestServerNameRecorded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	db := open(t, path, nil)
	if name, err := db.ServerName(); err != nil || name != "" {
		t.Fatalf("new file: %q, %v", name, err)
	}
	if held, err := db.RecordServerName(context.Background(), "a.example"); err != nil || held != "a.example" {
		t.Fatalf("record: %q, %v", held, err)
	}
	db.Close()
	db = open(t, path, nil)
	defer db.Close()
	if held, err := db.RecordServerName(context.Background(), "b.example"); err != nil || held != "a.example" {
		t.Fatalf("second record: %q, %v; want the first name kept", held, err)
	}
}
