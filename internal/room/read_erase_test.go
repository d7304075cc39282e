package room

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// TestErasureAsksOnlyAboutLocalSenders: serving events asks whether their
// senders asked for erasure, and caches the answer; only users of this
// server can have asked, so senders of other servers are neither asked
// about nor remembered (else the cache grows with every remote sender the
// rooms ever had).
func TestErasureAsksOnlyAboutLocalSenders(t *testing.T) {
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	mustJoin(t, e, bob, roomID)
	mustSend(t, e, message(roomID, alice, "local"))
	for i := range 20 {
		u := fmt.Sprintf("@u%d:remote.example", i)
		remoteMember(t, e, roomID, u, u, "join")
		content := json.RawMessage(`{"msgtype":"m.text","body":"remote"}`)
		if err := remoteEvent(t, e, SendRequest{Sender: u, RoomID: roomID, Type: "m.room.message", Content: content}, IngestOptions{}); err != nil {
			t.Fatalf("message of %s: %v", u, err)
		}
	}
	var asked []string
	e.SetErased(func(_ *store.Tx, userID string) (uint64, bool) {
		asked = append(asked, userID)
		return 0, false
	}, true)
	now, _ := e.Pos()
	page, err := e.Messages(bob, "", roomID, now, 0, Backward, EventFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Chunk) < 41 {
		t.Fatalf("served %d events, want the 41 messages and joins at least", len(page.Chunk))
	}
	if fmt.Sprint(asked) != fmt.Sprint([]string{alice}) {
		t.Errorf("asked about %v, want alice alone", asked)
	}
	if n := len(e.erased.known); n != 1 {
		t.Errorf("%d senders cached, want 1 (alice)", n)
	}
}

// TestNoErasureNoLookups: while nobody has asked for erasure, serving
// events asks about no sender (a search matching most of a big room would
// otherwise read every hit); once someone has, their events are asked
// about again.
func TestNoErasureNoLookups(t *testing.T) {
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	mustJoin(t, e, bob, roomID)
	mustSend(t, e, message(roomID, alice, "hello"))
	var asked []string
	e.SetErased(func(_ *store.Tx, userID string) (uint64, bool) {
		asked = append(asked, userID)
		return 0, false
	}, false)
	serve := func() {
		now, _ := e.Pos()
		if _, err := e.Messages(bob, "", roomID, now, 0, Backward, EventFilter{Limit: 100}); err != nil {
			t.Fatal(err)
		}
	}
	serve()
	if len(asked) != 0 {
		t.Fatalf("asked about %v while nobody asked for erasure", asked)
	}
	e.MarkErased("@carol:test.local", 1)
	serve()
	if len(asked) == 0 {
		t.Fatal("asked about nobody after an erasure")
	}
}

// TestErasedRedactionReason: the reason of a redaction by a user who then
// asked for erasure is erased where the redaction is shown inside the
// event it redacted (unsigned.redacted_because), as where it is served
// itself.
func TestErasedRedactionReason(t *testing.T) {
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	msg := mustSend(t, e, message(roomID, alice, "oops"))
	mustSend(t, e, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.redaction", Redacts: msg,
		Content: json.RawMessage(`{"reason":"my private reason"}`)})
	pos, _ := e.Pos()
	e.MarkErased(alice, pos)
	mustJoin(t, e, bob, roomID) // after the erasure; the history is shared

	ev, err := e.Event(bob, roomID, msg)
	if err != nil {
		t.Fatal(err)
	}
	rb, ok := ev.Unsigned["redacted_because"].(ClientEvent)
	if !ok {
		t.Fatalf("no redacted_because: %v", ev.Unsigned)
	}
	if strings.Contains(string(rb.Content), "private") {
		t.Errorf("redacted_because shows the erased reason: %s", rb.Content)
	}
}
