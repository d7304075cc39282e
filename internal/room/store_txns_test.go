package room

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// openEngineAt opens the store at path with an engine over it.
func openEngineAt(t *testing.T, path string, key ed25519.PrivateKey) *Stack {
	t.Helper()
	st, err := Open(Options{Path: path, Engine: Config{ServerName: "test.local", KeyID: "ed25519:t", PrivateKey: key}})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// roomOnDisk opens a store in a file of its own with an engine over it,
// and creates a public room there.
func roomOnDisk(t *testing.T) (path string, key ed25519.PrivateKey, st *Stack, roomID string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "h.db")
	_, key, _ = ed25519.GenerateKey(nil)
	st = openEngineAt(t, path, key)
	roomID, err := st.Engine.CreateRoom(context.Background(), alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	return path, key, st, roomID
}

func bucketLen(t *testing.T, db *store.DB, name []byte) int {
	t.Helper()
	n := 0
	db.View(func(tx *store.Tx) error { n = tx.Bucket(name).Stats().KeyN; return nil })
	return n
}

// A send writes nothing for its transaction ID but the event's own
// record: not the txns index (whose per-session leaf cost a page write
// per event), not txnlog; a retry is still answered with the first event,
// before and after a restart (the keys read back from the records), and
// before and after the pending IDs are merged into txns.
func TestTxnIDsFromTheRecordsAndTheMerge(t *testing.T) {
	ctx := context.Background()
	path, key, st, roomID := roomOnDisk(t)
	msg := func(d string, g, i int) SendRequest {
		return SendRequest{Sender: alice, Device: fmt.Sprint(d, g), RoomID: roomID, Type: "m.room.message",
			Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"%d/%d"}`, g, i)), TxnID: fmt.Sprint("t", i)}
	}
	sendAll := func(e *Engine, d string, n int) map[string]string {
		ids := map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n / 4 {
					id, err := e.Send(ctx, msg(d, g, i))
					if err != nil {
						t.Errorf("send %d/%d: %v", g, i, err)
					}
					mu.Lock()
					ids[fmt.Sprint(g, "/", i)] = id
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return ids
	}
	head := func(db *store.DB) uint64 {
		var pos uint64
		db.View(func(tx *store.Tx) error { pos = tx.Pos(); return nil })
		return pos
	}

	first := sendAll(st.Engine, "A", 200)
	if n := bucketLen(t, st.DB, store.Txns); n != 0 {
		t.Errorf("txns holds %d keys after 200 sends; want them in memory until a merge", n)
	}
	if n := bucketLen(t, st.DB, store.TxnLog); n != 0 {
		t.Errorf("txnlog holds %d keys, want none", n)
	}
	if again := sendAll(st.Engine, "A", 200); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Error("retries before a restart made new events")
	}
	st.DB.Close()

	st = openEngineAt(t, path, key)
	pos := head(st.DB)
	if again := sendAll(st.Engine, "A", 200); fmt.Sprint(again) != fmt.Sprint(first) || head(st.DB) != pos {
		t.Error("retries after a restart made new events")
	}
	// Past txnMergeAt pending IDs a batch merges them into txns.
	more := sendAll(st.Engine, "B", 2*txnMergeAt)
	if n := bucketLen(t, st.DB, store.Txns); n < txnMergeAt {
		t.Errorf("txns holds %d keys after %d sends, want at least %d merged", n, 2*txnMergeAt, txnMergeAt)
	}
	pos = head(st.DB)
	if again := sendAll(st.Engine, "B", 2*txnMergeAt); fmt.Sprint(again) != fmt.Sprint(more) || head(st.DB) != pos {
		t.Error("retries after the merge made new events")
	}
	st.DB.Close()

	st = openEngineAt(t, path, key)
	defer st.DB.Close()
	if again := sendAll(st.Engine, "B", 2*txnMergeAt); fmt.Sprint(again) != fmt.Sprint(more) || head(st.DB) != pos {
		t.Error("retries after the merge and a restart made new events")
	}
	if again := sendAll(st.Engine, "A", 200); fmt.Sprint(again) != fmt.Sprint(first) || head(st.DB) != pos {
		t.Error("the first sends' retries after the merge and a restart made new events")
	}
}

// A read transaction begun before a merge became durable can miss a key
// the merge took out of memory; the count of merges tells the batch to
// look again in its write transaction, where the key is found.
func TestTxnMergeDuringABuildIsCaught(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	req := SendRequest{Sender: alice, Device: "D", RoomID: roomID, Type: "m.room.message",
		Content: json.RawMessage(`{"msgtype":"m.text","body":"x"}`), TxnID: "x"}
	first, err := e.Send(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	txns := txnIndexOf(db)
	before := txns.mergesDone()
	plan := []planned{{p: &pendingSend{req: req}, dupOf: -1}}
	// The read transaction of a batch, open across another builder's merge.
	err = db.View(func(old *store.Tx) error {
		if err := db.Update(ctx, txns.merge); err != nil {
			return err
		}
		if nid, err := txns.lookup(old, txnKey(req)); nid != 0 || err != nil {
			t.Fatalf("the read before the merge found the key (%d, %v); this test no longer shows the race", nid, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if txns.mergesDone() == before {
		t.Fatal("the merge was not counted")
	}
	err = db.Update(ctx, func(tx *store.Tx) error {
		found, err := sentMeanwhile(tx, txns, plan)
		if err == nil && !found {
			t.Error("the write transaction did not find the merged key")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := e.Send(ctx, req); err != nil || id != first {
		t.Fatalf("retry after the merge: %q %v, want %q", id, err, first)
	}
}

// A file from before schema 6 has its last transaction keys in txnlog and
// txns_to at the position it was upgraded at: retries of those sends are
// still found, after a restart too, and a merge moves the keys into txns
// and empties txnlog.
func TestTxnIDsLeftInTxnlog(t *testing.T) {
	ctx := context.Background()
	path, key, st, roomID := roomOnDisk(t)
	req := func(i int) SendRequest {
		return SendRequest{Sender: alice, Device: "OLD", RoomID: roomID, Type: "m.room.message",
			Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"%d"}`, i)), TxnID: fmt.Sprint("old", i)}
	}
	ids := map[int]string{}
	for i := range 3 {
		id, err := st.Engine.Send(ctx, req(i))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	// What schema 5 left: the keys in txnlog, the watermark past them.
	err := st.DB.Update(ctx, func(tx *store.Tx) error {
		for i := range 3 {
			nid := eventNID(tx, ids[i])
			if err := tx.Put(store.TxnLog, store.PutU64(nid), txnKey(req(i))); err != nil {
				return err
			}
		}
		return tx.Put(store.Meta, store.TxnsTo, store.PutU64(tx.Pos()))
	})
	if err != nil {
		t.Fatal(err)
	}
	st.DB.Close()
	st = openEngineAt(t, path, key)
	defer st.DB.Close()
	retryAll := func(when string) {
		t.Helper()
		for i := range 3 {
			if id, err := st.Engine.Send(ctx, req(i)); err != nil || id != ids[i] {
				t.Errorf("%s: retry %d gave %q (%v), want %q", when, i, id, err, ids[i])
			}
		}
	}
	retryAll("after the restart")
	if err := st.DB.Update(ctx, txnIndexOf(st.DB).merge); err != nil {
		t.Fatal(err)
	}
	if n := bucketLen(t, st.DB, store.TxnLog); n != 0 {
		t.Errorf("txnlog holds %d keys after the merge", n)
	}
	retryAll("after the merge")
}

// txns_to keeps up with the stream through the merges of event IDs, so
// the keys read back on start are a few batches' at most, even when no
// builder here has enough keys to merge; retries are found across it.
func TestTxnsToFollowsEventIDMerges(t *testing.T) {
	defer func(n int) { eventIDsMergeAt = n }(eventIDsMergeAt)
	eventIDsMergeAt = 8
	ctx := context.Background()
	path, key, st, roomID := roomOnDisk(t)
	send := func(i int, txn string) (string, error) {
		return st.Engine.Send(ctx, SendRequest{Sender: alice, Device: "D", RoomID: roomID, Type: "m.room.message",
			Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"%d"}`, i)), TxnID: txn})
	}
	first, err := send(0, "once")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 40; i++ {
		if _, err := send(i, ""); err != nil {
			t.Fatal(err)
		}
	}
	var to, pos uint64
	st.DB.View(func(tx *store.Tx) error {
		to, pos = store.U64(tx.Get(store.Meta, store.TxnsTo)), tx.Pos()
		return nil
	})
	if pos-to > 2*uint64(eventIDsMergeAt) {
		t.Errorf("txns_to %d trails the stream at %d", to, pos)
	}
	st.DB.Close()
	st = openEngineAt(t, path, key)
	defer st.DB.Close()
	if id, err := send(0, "once"); err != nil || id != first {
		t.Errorf("retry after the restart gave %q (%v), want %q", id, err, first)
	}
}
