package room

import (
	"context"
	"errors"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// restore is IngestWithState's move of a stored outlier (ingest_join.go):
// its eventids key and record deleted, the event stored again at a new
// position. It returns the new NID.
func restore(t *testing.T, e *Engine, tx *store.Tx, id string) (uint64, error) {
	nid := eventNID(tx, id)
	if nid == 0 {
		t.Errorf("the write moving %s does not find it", id)
		return 0, errors.New("not found")
	}
	ev, err := e.loadEvent(tx, nid)
	if err != nil {
		return 0, err
	}
	if err := tx.Delete(store.EventIDs, []byte(id)); err != nil {
		return 0, err
	}
	if err := tx.Delete(store.Events, store.PutU64(nid)); err != nil {
		return 0, err
	}
	moved := *ev
	if err := e.storeEvent(tx, &moved); err != nil {
		return 0, err
	}
	return moved.NID, nil
}

// A group commit whose other write fails runs IngestWithState's write
// again in a new transaction (store.DB.commit), where it takes a lower
// position than in the one rolled back when the failed write took
// positions before it. The entry in memory then names the rolled-back
// position as where the event was before, instead of where it is in
// every read begun before the commit: such a read no longer finds it.
// (The first Update stands for the group that rolled back: SkipPos for
// the failed write's position, its error for the failure.)
func TestReview2MovedEventFoundByOlderReadAfterRollback(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	id := sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"moved"}`)
	var was uint64
	db.View(func(tx *store.Tx) error { was = eventNID(tx, id); return nil })

	old, err := db.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer old.Done()

	errFailed := errors.New("another write of the group failed")
	err = db.Update(ctx, func(tx *store.Tx) error {
		if err := tx.SkipPos(1); err != nil { // the failed write's position
			return err
		}
		if _, err := restore(t, e, tx, id); err != nil {
			return err
		}
		return errFailed
	})
	if !errors.Is(err, errFailed) {
		t.Fatal(err)
	}
	var now uint64
	err = db.Update(ctx, func(tx *store.Tx) error {
		var err error
		now, err = restore(t, e, tx, id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *store.Tx) error {
		if got := eventNID(tx, id); got != now {
			t.Errorf("a new read: %s at %d, want %d", id, got, now)
		}
		return nil
	})
	if got := eventNID(old, id); got != was {
		t.Errorf("a read begun before the move: %s at %d, want %d (where that read holds it)", id, got, was)
	}
}
