package room

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestPushEventsOfTypeSkipsOthers: a walk for some types gives exactly the
// events of those types, in stream order, with their room facts, and
// passes over the rest; PushEventsAfter still gives everything.
func TestPushEventsOfTypeSkipsOthers(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	from, _ := e.Pos()
	send := func(typ, txn string) {
		t.Helper()
		if _, err := e.Send(ctx, SendRequest{Sender: alice, Device: "D", RoomID: roomID, Type: typ,
			Content: json.RawMessage(`{"body":"x"}`), TxnID: txn}); err != nil {
			t.Fatal(err)
		}
	}
	send("m.room.message", "1")
	send("m.call.invite", "2")
	send("m.room.message", "3")
	key := bob
	if _, err := e.Send(ctx, SendRequest{Sender: bob, RoomID: roomID, Type: "m.room.member", StateKey: &key,
		Content: json.RawMessage(`{"membership":"join"}`)}); err != nil {
		t.Fatal(err)
	}
	send("m.call.hangup", "4")
	to, _ := e.Pos()

	types := func(wanted func(string) bool) []string {
		t.Helper()
		var got []string
		err := e.PushEventsOfType(from, to, wanted, func(pe *PushEvent) error {
			if pe.RoomID != roomID || pe.Members == 0 {
				t.Errorf("%s: room %q, %d members", pe.Event.Type, pe.RoomID, pe.Members)
			}
			got = append(got, pe.Event.Type)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	calls := func(typ string) bool { return typ == "m.room.member" || strings.HasPrefix(typ, "m.call.") }
	if got, want := types(calls), []string{"m.call.invite", "m.room.member", "m.call.hangup"}; !slices.Equal(got, want) {
		t.Fatalf("calls and members: %v, want %v", got, want)
	}
	all := []string{"m.room.message", "m.call.invite", "m.room.message", "m.room.member", "m.call.hangup"}
	if got := types(nil); !slices.Equal(got, all) {
		t.Fatalf("all: %v, want %v", got, all)
	}
}
