package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
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

// AfterCommit's functions run after the store has told Options.OnCommit
// of the commit (a long poll woken by what they publish finds the stream
// advanced) and before the caller is answered; in a group that rolled
// back because another write failed, the re-run registers them again and
// they run once; never for the write that failed.
func TestAfterCommitRunsAfterTheStreamAdvanced(t *testing.T) {
	var order []string
	db, err := Open(filepath.Join(t.TempDir(), "h.db"), Options{OnCommit: func(pos uint64) {
		order = append(order, fmt.Sprint("advanced to ", pos))
	}, Wake: func() { order = append(order, "woken") }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.Update(ctx, func(tx *Tx) error {
		pos, err := tx.NextPos()
		if err != nil {
			return err
		}
		tx.AfterCommit(func() { order = append(order, fmt.Sprint("after commit of ", pos)) })
		tx.OnCommit(func() { order = append(order, fmt.Sprint("durable ", pos)) })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	order = append(order, "answered")
	want := []string{"durable 1", "advanced to 1", "after commit of 1", "woken", "answered"}
	if !slices.Equal(order, want) {
		t.Fatalf("order %q, want %q", order, want)
	}

	// Two writes in one group, the second failing: the first is rolled
	// back and run again on its own.
	order = nil
	refused := errors.New("refused")
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	blocker := make(chan error, 1)
	go func() { // holds the writer so that the next two share a group
		blocker <- db.Update(ctx, func(*Tx) error {
			once.Do(func() { close(started) })
			<-release
			return nil
		})
	}()
	<-started
	results := make(chan error, 2)
	go func() {
		results <- db.Update(ctx, func(tx *Tx) error {
			if _, err := tx.NextPos(); err != nil {
				return err
			}
			tx.AfterCommit(func() { order = append(order, "after commit") })
			return nil
		})
	}()
	for len(db.writes) < 1 {
		runtime.Gosched()
	}
	go func() {
		results <- db.Update(ctx, func(tx *Tx) error {
			tx.AfterCommit(func() { order = append(order, "after a refused write") })
			return refused
		})
	}()
	for len(db.writes) < 2 {
		runtime.Gosched()
	}
	close(release)
	if err := <-blocker; err != nil {
		t.Fatal(err)
	}
	var errs []error
	for range 2 {
		errs = append(errs, <-results)
	}
	if !slices.ContainsFunc(errs, func(err error) bool { return errors.Is(err, refused) }) || !slices.Contains(errs, nil) {
		t.Fatalf("results %v, want one nil and one refused", errs)
	}
	// "advanced to 1" once more for the empty blocking write.
	want = []string{"advanced to 1", "woken", "advanced to 2", "after commit", "woken"}
	if !slices.Equal(order, want) {
		t.Fatalf("order %q, want %q", order, want)
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
