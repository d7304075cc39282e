package room

import (
	"context"
	"encoding/json"
	"testing"
)

// TestMembershipExtraKeepsMembership: the extra content a client adds to
// a member event (custom join fields, an invitee's profile) never replaces
// the membership the server sets, nor the reason.
func TestMembershipExtraKeepsMembership(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	roomID := publicRoom(t, e)
	extra := map[string]json.RawMessage{"membership": json.RawMessage(`"join"`), "reason": json.RawMessage(`"spoof"`),
		"displayname": json.RawMessage(`"Bob"`)}
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: alice, RoomID: roomID, Target: bob,
		Membership: "invite", Reason: "welcome", Extra: extra}); err != nil {
		t.Fatalf("invite: %v", err)
	}
	ev, err := e.StateEvent(alice, roomID, "m.room.member", bob)
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Membership, Reason, Displayname string }
	json.Unmarshal(ev.Content, &c)
	if c.Membership != "invite" || c.Reason != "welcome" || c.Displayname != "Bob" {
		t.Fatalf("invite content %s", ev.Content)
	}

	pdu, _, err := e.PrepareInvite(MembershipRequest{Sender: alice, RoomID: roomID, Target: "@carol:elsewhere.example",
		Membership: "invite", Extra: extra})
	if err != nil {
		t.Fatalf("prepare remote invite: %v", err)
	}
	c.Membership, c.Reason = "", ""
	json.Unmarshal(pdu.Content(), &c)
	if c.Membership != "invite" || c.Reason != "" {
		t.Fatalf("remote invite content %s", pdu.Content())
	}
}
