package room

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/store"
)

// TestSendAuthStateFollowsState: the auth events of a message are kept per
// room, sender and type (perform_send_authcache.go) — the next message of
// the same sender cites the same ones without reading them again — and
// are read again after every change of state they depend on: new power
// levels, the sender leaving, and a redaction of one of them (rewritten
// in place, with no new snapshot).
func TestSendAuthStateFollowsState(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	send := func(sender string) (gomatrixserverlib.PDU, error) {
		n++
		id, err := e.Send(ctx, SendRequest{Sender: sender, Device: "D", RoomID: roomID, Type: "m.room.message",
			Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`), TxnID: fmt.Sprint(n)})
		if err != nil {
			return nil, err
		}
		var pdu gomatrixserverlib.PDU
		err = db.View(func(tx *store.Tx) error {
			ev, err := e.loadEvent(tx, eventNID(tx, id))
			if err == nil {
				pdu = ev.PDU
			}
			return err
		})
		return pdu, err
	}
	state := func(sender, typ, key, content string) string {
		t.Helper()
		id, err := e.Send(ctx, SendRequest{Sender: sender, RoomID: roomID, Type: typ, StateKey: &key, Content: json.RawMessage(content)})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// provider is what a message of bob's would be checked against now.
	provider := func() *gomatrixserverlib.AuthEvents {
		t.Helper()
		var p *gomatrixserverlib.AuthEvents
		err := db.View(func(tx *store.Tx) error {
			info, err := roomInfo(tx, roomID)
			if err != nil {
				return err
			}
			p, err = e.sendAuthProvider(tx, info, &gomatrixserverlib.ProtoEvent{SenderID: bob, RoomID: roomID, Type: "m.room.message"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	memberID := state(bob, "m.room.member", bob, `{"membership":"join","displayname":"Bob B"}`)
	first, err := send(bob)
	if err != nil {
		t.Fatalf("bob's message: %v", err)
	}
	kept := provider()
	second, err := send(bob)
	if err != nil {
		t.Fatalf("bob's second message: %v", err)
	}
	if fmt.Sprint(first.AuthEventIDs()) != fmt.Sprint(second.AuthEventIDs()) {
		t.Fatalf("auth events changed with no change of state: %v → %v", first.AuthEventIDs(), second.AuthEventIDs())
	}
	if provider() != kept {
		t.Fatal("the auth events of bob's messages were read again with no change of state")
	}

	// A redaction rewrites bob's member event in place: no new snapshot.
	if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.redaction", Redacts: memberID,
		Content: json.RawMessage(`{}`), TxnID: "r1", Device: "D"}); err != nil {
		t.Fatal(err)
	}
	m, err := provider().Member(spec.SenderID(bob))
	if err != nil || m == nil {
		t.Fatalf("bob's member event: %v, %v", m, err)
	}
	if gjson.GetBytes(m.Content(), "displayname").Exists() {
		t.Errorf("after its redaction, the kept member event still says %s", m.Content())
	}

	state(alice, "m.room.power_levels", "", `{"users":{"`+alice+`":100},"events_default":50}`)
	if _, err := send(bob); errCode(err) != "M_FORBIDDEN" {
		t.Fatalf("bob's message above his level: %v, want M_FORBIDDEN", err)
	}
	state(alice, "m.room.power_levels", "", `{"users":{"`+alice+`":100}}`)
	if _, err := send(bob); err != nil {
		t.Fatalf("bob's message, levels back: %v", err)
	}
	state(bob, "m.room.member", bob, `{"membership":"leave"}`)
	if _, err := send(bob); errCode(err) != "M_FORBIDDEN" {
		t.Fatalf("bob's message after leaving: %v, want M_FORBIDDEN", err)
	}
}
