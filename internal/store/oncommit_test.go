package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// OnCommit's functions run once the transaction is durable, before its
// caller is answered, and never for a transaction that rolled back.
func TestOnCommitRunsOnlyAfterADurableCommit(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "h.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	ran := 0
	if err := db.Update(ctx, func(tx *Tx) error {
		if err := tx.Put(Meta, []byte("k"), []byte("v")); err != nil {
			return err
		}
		tx.OnCommit(func() { ran++ })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if ran != 1 {
		t.Fatalf("OnCommit ran %d times after a commit, want once before Update returned", ran)
	}
	refused := errors.New("refused")
	if err := db.Update(ctx, func(tx *Tx) error {
		tx.OnCommit(func() { ran++ })
		return refused
	}); !errors.Is(err, refused) {
		t.Fatalf("Update: %v", err)
	}
	if ran != 1 {
		t.Fatalf("OnCommit ran for a transaction that rolled back")
	}
}

// A write after Close (a background goroutine finishing at shutdown) is
// refused with ErrClosed; it used to panic on the closed queue.
func TestUpdateAfterCloseIsRefused(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "hearth.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	err = db.Update(context.Background(), func(*Tx) error { return nil })
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Close: %v, want ErrClosed", err)
	}
	if err := db.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
}
