package room

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// A user's read positions come from their own receipts only, among other
// members' (one of them a user ID that starts with theirs), per thread;
// the receipts of chosen users are theirs alone, a private one shown to
// its owner only.
func TestReceiptsReadPerUser(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	const al = "@al:test.local" // and "@al:test.local.x", whose ID starts with his
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{bob, al, al + ".x"} {
		mustJoin(t, e, u, roomID)
	}
	var msgs []string
	for i := range 4 {
		msgs = append(msgs, sendJSON(t, e, alice, roomID, fmt.Sprintf(`{"msgtype":"m.text","body":"%d"}`, i)))
	}
	receipts := []struct{ user, typ, event, thread string }{
		{bob, "m.read", msgs[3], ""},
		{al + ".x", "m.read", msgs[3], ""},
		{al, "m.read", msgs[0], ""},
		{al, "m.read.private", msgs[1], "main"},
		{al, "m.fully_read", msgs[2], ""},
	}
	for _, r := range receipts {
		if _, err := e.SetReceipt(ctx, r.user, roomID, r.typ, r.event, r.thread); err != nil {
			t.Fatalf("%s's %s receipt: %v", r.user, r.typ, err)
		}
	}
	nid := func(id string) (n uint64) {
		db.View(func(tx *store.Tx) error { n = eventNID(tx, id); return nil })
		return n
	}
	got, err := e.ReadUpTo(al, roomID)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"": nid(msgs[0]), "main": nid(msgs[1])}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ReadUpTo(%s) = %v, want %v (m.fully_read and the others' receipts do not count)", al, got, want)
	}

	var content map[string]map[string]map[string]any
	db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err == nil {
			content = receiptContent(tx, info.NID, bob, map[string]bool{al: true})
		}
		return err
	})
	if len(content) != 1 || content[msgs[0]]["m.read"][al] == nil {
		t.Errorf("al's receipts as bob sees them: %v, want his public m.read of %s alone", content, msgs[0])
	}
}

// BenchmarkReadUpToIn reads one member's read positions in a room where
// 2,000 members have a receipt each: the cost of the unread counts of
// one /sync response for one room.
func BenchmarkReadUpToIn(b *testing.B) {
	ctx := context.Background()
	e, db := newEngine(b)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	msg, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.message",
		Content: []byte(`{"msgtype":"m.text","body":"x"}`), TxnID: "1"})
	if err != nil {
		b.Fatal(err)
	}
	var nid uint64
	err = db.Update(ctx, func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		nid = info.NID
		if err != nil {
			return err
		}
		for i := range 2000 {
			k := store.ReceiptKey(nid, fmt.Sprintf("@u%04d:test.local", i), "m.read", "")
			if err := tx.Put(store.Receipts, k, []byte(`{"event_id":"`+msg+`","ts":1}`)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		db.View(func(tx *store.Tx) error {
			if got := ReadUpToIn(tx, "@u1000:test.local", roomID); len(got) != 1 {
				b.Fatalf("read positions %v", got)
			}
			return nil
		})
	}
}

// A thread root is whatever event_id an event's m.relates_to names, so a
// member can make a thread ID with a 0x00 byte in it, and SetReceipt
// (also for a remote user's m.receipt EDU, federation/edu.go) writes it
// into the receipts key, whose parts 0x00 separates: the key then splits
// into four parts. Schema 4's readers skip it silently; schema 3 wrote
// the same key, which made the upgrade to schema 4 refuse the file
// (store test TestReceiptWithOddThreadUpgraded). Such a thread ID must
// be refused before it reaches a key.
func TestReceiptThreadWithZeroByteRefused(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID := publicRoom(t, e)
	const root = "$root\x00x"
	id := sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"in a thread",`+
		`"m.relates_to":{"rel_type":"m.thread","event_id":"$root\u0000x"}}`)
	_, err := e.SetReceipt(ctx, alice, roomID, "m.read", id, root)
	stored := false
	db.View(func(tx *store.Tx) error {
		return tx.Bucket(store.Receipts).ForEach(func(k, v []byte) error {
			stored = stored || bytes.Contains(k, []byte(root))
			return nil
		})
	})
	if err == nil && stored {
		t.Errorf("a receipt for thread %q was stored under a key that does not split into user, type and thread", root)
	}
}

// A receipt moves only forward, per type and thread: one for an event no
// later than the receipt's own is ignored and appends no change, while
// m.fully_read moves either way.
func TestReceiptMovesOnlyForward(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	mustJoin(t, e, bob, roomID)
	older := sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"1"}`)
	newer := sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"2"}`)
	steps := []struct {
		typ, event, thread string
		moved              bool
	}{
		{"m.read", newer, "", true},
		{"m.read", older, "", false},        // backwards
		{"m.read", newer, "", false},        // the same again
		{"m.read", older, "main", true},     // another thread
		{"m.read.private", older, "", true}, // another type
		{"m.read.private", newer, "", true}, // forwards
		{"m.fully_read", newer, "", true},
		{"m.fully_read", older, "", true}, // read markers may go back
	}
	for _, s := range steps {
		before, _ := e.Pos()
		moved, err := e.SetReceipt(ctx, bob, roomID, s.typ, s.event, s.thread)
		if err != nil {
			t.Fatalf("%s on %s (thread %q): %v", s.typ, s.event, s.thread, err)
		}
		after, _ := e.Pos()
		if moved != s.moved || (after != before) != s.moved {
			t.Errorf("%s on %s (thread %q): moved %v, stream %d → %d; want moved %v", s.typ, s.event, s.thread, moved, before, after, s.moved)
		}
	}
	got, err := e.ReadUpTo(bob, roomID)
	if err != nil {
		t.Fatal(err)
	}
	if got[""] == 0 || got["main"] == 0 || got[""] <= got["main"] {
		t.Errorf("ReadUpTo = %v, want the unthreaded receipt on the newer message, main's on the older", got)
	}
}

// Which thread a receipt may name (receipts.yaml: 400 when the event is
// not related to the thread): a thread message and what relates to it
// are in its thread; a reference to the root, and a reaction to that, are
// related to the root and may be read under its thread or main; "main"
// holds all but a thread message itself; another root holds none of them.
func TestReceiptThreadFollowsRelations(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	rel := func(typ, to string) string {
		return fmt.Sprintf(`"m.relates_to":{"rel_type":%q,"event_id":%q}`, typ, to)
	}
	root := sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"root"}`)
	other := sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"another root"}`)
	inThread := sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"in the thread",`+rel("m.thread", root)+`}`)
	react := func(to, key string) string {
		return fmt.Sprintf(`{"m.relates_to":{"rel_type":"m.annotation","event_id":%q,"key":%q}}`, to, key)
	}
	reactInThread := sendJSON(t, e, alice, roomID, react(inThread, "x"))
	ref := sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"see the root",`+rel("m.reference", root)+`}`)
	reactToRef := sendJSON(t, e, alice, roomID, react(ref, "y"))
	cases := []struct {
		event, thread string
		ok            bool
	}{
		{root, "main", true},
		{root, root, true},
		{inThread, root, true},
		{inThread, "main", false},
		{inThread, other, false},
		{reactInThread, root, true},
		{reactInThread, "main", true},
		{ref, root, true},
		{ref, "main", true},
		{reactToRef, root, true},
		{reactToRef, other, false},
		{other, root, false},
	}
	for _, c := range cases {
		_, err := e.SetReceipt(ctx, alice, roomID, "m.read", c.event, c.thread)
		if (err == nil) != c.ok {
			t.Errorf("receipt for %s in thread %s: %v, want accepted %v", c.event, c.thread, err, c.ok)
		}
	}
}
