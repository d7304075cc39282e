package room

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
)

// TestEventsAfterAndRoomFacts: the appservice follower's reads give the
// events in stream order with their room, and a room's joined local
// members (not the invited) and canonical alias.
func TestEventsAfterAndRoomFacts(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat", Invite: []string{bob, "@carol:test.local"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: roomID, Target: bob, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	if err := e.SetAlias(ctx, alice, "#hall:test.local", roomID); err != nil {
		t.Fatal(err)
	}
	sk := ""
	if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.canonical_alias", StateKey: &sk,
		Content: json.RawMessage(`{"alias":"#hall:test.local"}`)}); err != nil {
		t.Fatal(err)
	}
	members, alias, err := e.LocalJoinedAndAlias(roomID)
	slices.Sort(members)
	if err != nil || !slices.Equal(members, []string{alice, bob}) || alias != "#hall:test.local" {
		t.Fatalf("facts: %v %q %v", members, alias, err)
	}
	var types []string
	var last uint64
	err = e.EventsAfter(0, ^uint64(0), func(se *StreamEvent) error {
		if se.RoomID != roomID || se.Pos <= last || se.Event.RoomID != roomID {
			t.Fatalf("event %+v after %d", se, last)
		}
		last = se.Pos
		types = append(types, se.Event.Type)
		return nil
	})
	if err != nil || types[0] != "m.room.create" || types[len(types)-1] != "m.room.canonical_alias" {
		t.Fatalf("events: %v %v", types, err)
	}
}
