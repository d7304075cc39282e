package federation

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/room"
)

// wholeCreate finds the create event in the room state kept in an
// invite's or knock's unsigned field and checks it is the whole event:
// hashing it gives the room's ID (MSC4291).
func wholeCreate(t *testing.T, pdu gomatrixserverlib.PDU, field, roomID string) {
	t.Helper()
	var whole struct {
		Unsigned map[string][]map[string]any `json:"unsigned"`
	}
	json.Unmarshal(pdu.JSON(), &whole)
	var create map[string]any
	for _, ev := range whole.Unsigned[field] {
		if ev["type"] == "m.room.create" {
			create = ev
		}
	}
	if create == nil || create["origin_server_ts"] == nil || create["signatures"] == nil || create["hashes"] == nil {
		t.Fatalf("create event in %s: %v", field, create)
	}
	raw, _ := json.Marshal(create)
	p, err := gomatrixserverlib.MustGetRoomVersion("12").NewEventFromUntrustedJSON(raw)
	if err != nil || "!"+p.EventID()[1:] != roomID {
		t.Errorf("the create event in %s does not hash to the room ID %s: %v", field, roomID, err)
	}
}

// TestInviteRoomStateIsWholeEvents: an invite over federation carries the
// room's state as whole events, the create event among them (spec v1.16,
// MSC4311), and the invitee's server keeps them as sent, so its client
// sees the create event with origin_server_ts and signatures.
func TestInviteRoomStateIsWholeEvents(t *testing.T) {
	ctx := context.Background()
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	alice := hs1.addUser(t, "alice", "A", false)
	bob := hs2.addUser(t, "bob", "B", false)
	name := "Tea"
	roomID, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{RoomVersion: "12", Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hs1.svc.Invite(ctx, room.MembershipRequest{Sender: alice, RoomID: roomID, Target: bob, Membership: "invite"}); err != nil {
		t.Fatal(err)
	}
	inv := hs2.rooms.CurrentStatePDU(roomID, "m.room.member", bob)
	if inv == nil {
		t.Fatal("hs2 kept no invite")
	}
	wholeCreate(t, inv, "invite_room_state", roomID)
}

// TestKnockRoomStateIsWholeEvents: the same for the state a resident
// server answers a knock with (knock_room_state).
func TestKnockRoomStateIsWholeEvents(t *testing.T) {
	ctx := context.Background()
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	alice := hs1.addUser(t, "alice", "A", false)
	bob := hs2.addUser(t, "bob", "B", false)
	roomID, err := hs1.rooms.CreateRoom(ctx, alice, room.Profile{}, room.CreateRequest{RoomVersion: "12",
		InitialState: []room.StateEvent{{Type: spec.MRoomJoinRules, Content: json.RawMessage(`{"join_rule":"knock"}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := hs2.svc.Knock(ctx, bob, roomID, []string{"hs1.test"}, "hello"); err != nil {
		t.Fatal(err)
	}
	knock := hs2.rooms.CurrentStatePDU(roomID, "m.room.member", bob)
	if knock == nil {
		t.Fatal("hs2 kept no knock")
	}
	wholeCreate(t, knock, "knock_room_state", roomID)
}
