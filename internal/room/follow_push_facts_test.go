package room

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// TestPushFactsFollowState checks that the room facts PushEventsAfter
// keeps between calls (follow_push_facts.go) follow every change of state: each
// call covers only a message sent after a change, so a stale cache would
// show through.
func TestPushFactsFollowState(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	// lastMessage sends a message as sender and returns what
	// PushEventsAfter says of it.
	lastMessage := func(sender string) *PushEvent {
		t.Helper()
		from, _ := e.Pos()
		n++
		if _, err := e.Send(ctx, SendRequest{Sender: sender, Device: "D", RoomID: roomID, Type: "m.room.message",
			Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`), TxnID: fmt.Sprint(n)}); err != nil {
			t.Fatal(err)
		}
		to, _ := e.Pos()
		var got []*PushEvent
		if err := e.PushEventsAfter(from, to, func(pe *PushEvent) error { got = append(got, pe); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("%d events after %d, want the message", len(got), from)
		}
		return got[0]
	}
	state := func(sender, typ, key, content string) {
		t.Helper()
		if _, err := e.Send(ctx, SendRequest{Sender: sender, RoomID: roomID, Type: typ, StateKey: &key, Content: json.RawMessage(content)}); err != nil {
			t.Fatal(err)
		}
	}
	if pe := lastMessage(alice); len(pe.Local) != 0 || pe.RoomName != "" || pe.Members != 1 {
		t.Fatalf("before: local %v, name %q, members %d", pe.Local, pe.RoomName, pe.Members)
	}
	state(bob, "m.room.member", bob, `{"membership":"join","displayname":"Bob"}`)
	if pe := lastMessage(alice); len(pe.Local) != 1 || pe.Local[0] != (PushMember{bob, "Bob"}) || pe.Members != 2 {
		t.Fatalf("after bob joined: local %v, members %d", pe.Local, pe.Members)
	}
	state(alice, "m.room.name", "", `{"name":"Lounge"}`)
	if pe := lastMessage(alice); pe.RoomName != "Lounge" {
		t.Fatalf("after the name: %q", pe.RoomName)
	}
	state(bob, "m.room.member", bob, `{"membership":"join","displayname":"Robert"}`)
	if pe := lastMessage(alice); len(pe.Local) != 1 || pe.Local[0].DisplayName != "Robert" {
		t.Fatalf("after bob's new name: %v", pe.Local)
	}
	if pe := lastMessage(bob); pe.SenderLevel != 0 || pe.SenderName != "Robert" {
		t.Fatalf("bob's level %d, name %q", pe.SenderLevel, pe.SenderName)
	}
	state(alice, "m.room.power_levels", "", `{"users":{"`+alice+`":100,"`+bob+`":50},"notifications":{"room":40}}`)
	if pe := lastMessage(bob); pe.SenderLevel != 50 || pe.RoomNotifLevel != 40 {
		t.Fatalf("after power levels: bob's level %d, room notification level %d", pe.SenderLevel, pe.RoomNotifLevel)
	}
	state(bob, "m.room.member", bob, `{"membership":"leave"}`)
	if pe := lastMessage(alice); len(pe.Local) != 0 || pe.Members != 1 {
		t.Fatalf("after bob left: local %v, members %d", pe.Local, pe.Members)
	}
}

// TestPushFactsFollowRedaction: redacting a state event rewrites it
// without a new snapshot; the facts must show the redacted form — no old
// display name for contains_display_name, no old notifications.room.
func TestPushFactsFollowRedaction(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	send := func(req SendRequest) string {
		t.Helper()
		n++
		req.RoomID, req.Device, req.TxnID = roomID, "D", fmt.Sprint(n)
		id, err := e.Send(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	lastMessage := func(sender string) *PushEvent {
		t.Helper()
		from, _ := e.Pos()
		send(SendRequest{Sender: sender, Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`)})
		to, _ := e.Pos()
		var got []*PushEvent
		if err := e.PushEventsAfter(from, to, func(pe *PushEvent) error { got = append(got, pe); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("%d events after %d, want the message", len(got), from)
		}
		return got[0]
	}
	bobKey, empty := bob, ""
	member := send(SendRequest{Sender: bob, Type: "m.room.member", StateKey: &bobKey, Content: json.RawMessage(`{"membership":"join","displayname":"Bob"}`)})
	pl := send(SendRequest{Sender: alice, Type: "m.room.power_levels", StateKey: &empty,
		Content: json.RawMessage(`{"users":{"` + alice + `":100,"` + bob + `":50},"notifications":{"room":40}}`)})
	if pe := lastMessage(alice); len(pe.Local) != 1 || pe.Local[0].DisplayName != "Bob" {
		t.Fatalf("before: %v", pe.Local)
	}
	if pe := lastMessage(bob); pe.RoomNotifLevel != 40 || pe.SenderName != "Bob" {
		t.Fatalf("before: room notification level %d, name %q", pe.RoomNotifLevel, pe.SenderName)
	}
	send(SendRequest{Sender: alice, Type: "m.room.redaction", Redacts: member})
	if pe := lastMessage(alice); len(pe.Local) != 1 || pe.Local[0].DisplayName != "" {
		t.Fatalf("after redacting bob's member event: %v", pe.Local)
	}
	send(SendRequest{Sender: alice, Type: "m.room.redaction", Redacts: pl})
	// Redaction keeps users but not notifications: the default 50.
	if pe := lastMessage(bob); pe.RoomNotifLevel != 50 || pe.SenderLevel != 50 || pe.SenderName != "" {
		t.Fatalf("after redacting power levels: room notification level %d, bob's level %d, name %q",
			pe.RoomNotifLevel, pe.SenderLevel, pe.SenderName)
	}
}

// TestSentEventsCached: the events a batch appends are in the parsed-event
// cache once committed, so the readers that follow every new event (push,
// the call agent, /sync) do not parse them again.
func TestSentEventsCached(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.Send(ctx, SendRequest{Sender: alice, Device: "D", RoomID: roomID, Type: "m.room.message",
		Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`), TxnID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	var nid uint64
	db.View(func(tx *store.Tx) error { nid = eventNID(tx, id); return nil })
	if nid == 0 || e.pdus.get(nid, id, false) == nil {
		t.Fatalf("event %s (nid %d) is not in the cache after its send", id, nid)
	}
}
