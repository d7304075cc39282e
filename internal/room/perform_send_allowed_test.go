package room

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
)

// TestAllowedFollowsState: a message sender's "yes" is kept for the next
// message of the same sender and type (perform_send_allowed.go), and every change
// of what the auth rules read — power levels, the sender's membership —
// asks gomatrixserverlib again.
func TestAllowedFollowsState(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	send := func(sender string) error {
		n++
		_, err := e.Send(ctx, SendRequest{Sender: sender, Device: "D", RoomID: roomID, Type: "m.room.message",
			Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`), TxnID: fmt.Sprint(n)})
		return err
	}
	state := func(typ, key, content string) {
		t.Helper()
		sender := alice
		if typ == "m.room.member" && key == bob {
			sender = bob
		}
		if _, err := e.Send(ctx, SendRequest{Sender: sender, RoomID: roomID, Type: typ, StateKey: &key, Content: json.RawMessage(content)}); err != nil {
			t.Fatal(err)
		}
	}
	state("m.room.member", bob, `{"membership":"join"}`)
	for range 3 {
		if err := send(bob); err != nil {
			t.Fatalf("bob's message: %v", err)
		}
	}
	e.allowed.mu.Lock()
	kept := len(e.allowed.yes)
	e.allowed.mu.Unlock()
	if kept != 1 {
		t.Fatalf("%d answers kept after three messages of one sender, want 1", kept)
	}
	state("m.room.power_levels", "", `{"users":{"`+alice+`":100},"events_default":50}`)
	if err := send(bob); errCode(err) != "M_FORBIDDEN" {
		t.Fatalf("bob's message above his level: %v, want M_FORBIDDEN", err)
	}
	if err := send(alice); err != nil {
		t.Fatalf("alice's message: %v", err)
	}
	state("m.room.power_levels", "", `{"users":{"`+alice+`":100}}`)
	if err := send(bob); err != nil {
		t.Fatalf("bob's message, levels back: %v", err)
	}
	state("m.room.member", bob, `{"membership":"leave"}`)
	if err := send(bob); errCode(err) != "M_FORBIDDEN" {
		t.Fatalf("bob's message after leaving: %v, want M_FORBIDDEN", err)
	}
}
