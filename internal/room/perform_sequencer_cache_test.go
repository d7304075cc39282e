package room

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// The followers a commit wakes (push, search, /sync) read its events at
// once: the parsed events must be in the engine's cache by then, not put
// there after the sender's goroutine gets its answer, or each follower
// parses each event's JSON again.
func TestSentEventsCachedBeforeTheCommitWakes(t *testing.T) {
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(nil)
	var eng atomic.Pointer[Engine]
	var watch atomic.Bool
	var seen, missing atomic.Int32
	st, err := Open(Options{Path: filepath.Join(t.TempDir(), "h.db"),
		Engine: Config{ServerName: "test.local", KeyID: "ed25519:t", PrivateKey: key},
		Store: store.Options{OnCommit: func(pos uint64) {
			e := eng.Load()
			if e == nil || !watch.Load() {
				return
			}
			seen.Add(1)
			e.pdus.mu.Lock()
			_, ok := e.pdus.young[pos]
			e.pdus.mu.Unlock()
			if !ok {
				missing.Add(1)
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.DB.Close()
	eng.Store(st.Engine)
	roomID, err := st.Engine.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	watch.Store(true)
	for i := range 5 {
		if _, err := st.Engine.Send(ctx, SendRequest{Sender: alice, Device: "D", RoomID: roomID, Type: "m.room.message",
			Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"%d"}`, i)), TxnID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	watch.Store(false)
	if seen.Load() != 5 || missing.Load() != 0 {
		t.Fatalf("%d commits woke the stream, %d of them before their event was cached", seen.Load(), missing.Load())
	}
}
