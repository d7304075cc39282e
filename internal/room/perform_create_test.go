package room

import (
	"context"
	"testing"
)

// TestPresetInviteLevel: in a public_chat room only moderators may invite;
// in a private chat every member may (the levels Synapse's presets give,
// which Complement's restricted-join tests rely on).
func TestPresetInviteLevel(t *testing.T) {
	ctx := context.Background()
	const carol = "@carol:test.local"
	for _, tc := range []struct {
		preset string
		code   string // errcode of bob's invite, "" for allowed
	}{
		{"public_chat", "M_FORBIDDEN"},
		{"private_chat", ""},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			e, _ := newEngine(t)
			roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: tc.preset, Invite: []string{bob}})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if err := join(e, bob, roomID); err != nil {
				t.Fatalf("bob joins: %v", err)
			}
			_, err = e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: roomID, Target: carol, Membership: "invite"})
			if got := errCode(err); got != tc.code {
				t.Fatalf("bob invites carol: errcode %q (%v), want %q", got, err, tc.code)
			}
		})
	}
}
