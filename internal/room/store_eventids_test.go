package room

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// storedIDs is every event ID the events bucket holds, with its NID: what
// eventNID must answer, read without it.
func storedIDs(t *testing.T, db *store.DB) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	db.View(func(tx *store.Tx) error {
		return tx.Bucket(store.Events).ForEach(func(k, v []byte) error {
			if id, ok := recordEventID(v); ok {
				out[string(id)] = store.U64(k)
			}
			return nil
		})
	})
	return out
}

// Event IDs go through memory and are merged into eventids in batches:
// every ID resolves in a new read, in a read that began before the merges
// (its own events only, however many merges happened since), and after a
// restart, which finds the ones past the last merge in the events bucket.
// The entries kept for the old read go once no read is open.
func TestEventIDsMergedAndFoundAgain(t *testing.T) {
	defer func(n int) { eventIDsMergeAt = n }(eventIDsMergeAt)
	eventIDsMergeAt = 8
	path := filepath.Join(t.TempDir(), "h.db")
	_, key, _ := ed25519.GenerateKey(nil)
	open := func() *Stack {
		st, err := Open(Options{Path: path, Engine: Config{ServerName: "test.local", KeyID: "ed25519:t", PrivateKey: key}})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	e, db := st.Engine, st.DB
	roomID := publicRoom(t, e)
	before := storedIDs(t, db)
	old, err := db.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		sendJSON(t, e, alice, roomID, fmt.Sprintf(`{"msgtype":"m.text","body":"%d"}`, i))
	}
	all := storedIDs(t, db)
	resolves := func(what string, tx *store.Tx, want map[string]uint64, absent map[string]uint64) {
		t.Helper()
		for id, nid := range want {
			if got := eventNID(tx, id); got != nid {
				t.Errorf("%s: %s resolves to %d, want %d", what, id, got, nid)
			}
		}
		for id := range absent {
			if _, mine := want[id]; !mine {
				if got := eventNID(tx, id); got != 0 {
					t.Errorf("%s: %s, stored after its view, resolves to %d", what, id, got)
				}
			}
		}
	}
	db.View(func(tx *store.Tx) error {
		if n := tx.Bucket(store.EventIDs).Stats().KeyN; n < 2*eventIDsMergeAt {
			t.Errorf("eventids holds %d keys after %d events: no merge happened", n, len(all))
		}
		resolves("a new read", tx, all, nil)
		return nil
	})
	resolves("a read begun before the merges", old, before, all)
	x := eventIndexOf(old)
	x.mu.Lock()
	kept := len(x.retired)
	x.mu.Unlock()
	if kept == 0 {
		t.Error("no merged entries kept while a read older than the merges was open")
	}
	old.Done()
	sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"after"}`)
	x.mu.Lock()
	kept = len(x.retired)
	x.mu.Unlock()
	if kept != 0 {
		t.Errorf("%d merged batches still kept once no read was open", kept)
	}

	all = storedIDs(t, db)
	db.Close()
	st = open()
	defer st.DB.Close()
	st.DB.View(func(tx *store.Tx) error {
		resolves("after a restart", tx, all, nil)
		x := eventIndexOf(tx)
		to := store.U64(tx.Get(store.Meta, store.EventIDsTo))
		for id, nid := range all {
			if _, inMemory := x.recent[id]; inMemory != (nid > to) {
				t.Errorf("after a restart %s (NID %d, watermark %d) in memory: %v", id, nid, to, inMemory)
			}
		}
		return nil
	})
}

// An ID indexed by a write that rolled back is not found, also once its
// position holds another event.
func TestEventIDOfRolledBackWriteNotFound(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID := publicRoom(t, e)
	const ghost = "$ghost"
	var pos uint64
	errNo := errors.New("rolled back")
	err := db.Update(ctx, func(tx *store.Tx) error {
		nid, err := tx.NextPos()
		if err != nil {
			return err
		}
		pos = nid
		ev := &Event{NID: nid, Version: "10", ID: ghost, JSON: []byte(`{}`)}
		if err := tx.Put(store.Events, store.PutU64(nid), ev.encode()); err != nil {
			return err
		}
		if err := eventIndexOf(tx).add(tx, ghost, nid); err != nil {
			return err
		}
		if got := eventNID(tx, ghost); got != nid {
			return fmt.Errorf("the write that stored it resolves it to %d, want %d", got, nid)
		}
		return errNo
	})
	if !errors.Is(err, errNo) {
		t.Fatal(err)
	}
	db.View(func(tx *store.Tx) error {
		if got := eventNID(tx, ghost); got != 0 {
			t.Errorf("rolled back: %s resolves to %d", ghost, got)
		}
		return nil
	})
	real := sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"real"}`)
	db.View(func(tx *store.Tx) error {
		if got := eventNID(tx, real); got != pos {
			t.Errorf("the next event is at %d, want the rolled-back position %d", got, pos)
		}
		if got := eventNID(tx, ghost); got != 0 {
			t.Errorf("once its position was reused: %s resolves to %d", ghost, got)
		}
		return nil
	})
}

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
func TestMovedEventFoundByOlderReadAfterRollback(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID := publicRoom(t, e)
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
