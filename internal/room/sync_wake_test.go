package room

import (
	"context"
	"testing"

	"github.com/hearth-chat/hearth/internal/store"
)

// SyncConcerns rules out what certainly does not show in a user's /sync
// and nothing else: a message, a state change and a public receipt in a
// room bob has no membership in, and another user's private receipt, are
// not his; an invite of bob there, a message once he is in, and change-log
// kinds it does not know (unless foreign says so) are.
func TestSyncConcerns(t *testing.T) {
	ctx := context.Background()
	e, db := newEngine(t)
	const carol = "@carol:test.local"
	roomID, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	pos := func() uint64 { p, _ := e.Pos(); return p }
	check := func(what string, from uint64, foreign func(store.Change) bool, want bool) {
		t.Helper()
		got, err := e.SyncConcerns(bob, from, pos(), foreign)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got != want {
			t.Errorf("%s: SyncConcerns(bob) = %v, want %v", what, got, want)
		}
	}

	p := pos()
	msg := sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"hi"}`)
	check("message in a room bob is not in", p, nil, false)

	p = pos()
	name := ""
	if _, err := e.Send(ctx, SendRequest{Sender: alice, RoomID: roomID, Type: "m.room.topic", StateKey: &name,
		Content: []byte(`{"topic":"t"}`)}); err != nil {
		t.Fatal(err)
	}
	check("state change in a room bob is not in", p, nil, false)

	p = pos()
	if _, err := e.SetReceipt(ctx, alice, roomID, "m.read", msg, ""); err != nil {
		t.Fatal(err)
	}
	check("public receipt in a room bob is not in", p, nil, false)

	p = pos()
	if err := db.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.AppendChange(store.Change{Kind: "account_data", Localpart: "alice", Key: "m.x"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	check("unknown change kind, foreign not asked", p, nil, true)
	check("unknown change kind foreign rules out", p, func(store.Change) bool { return true }, false)
	check("unknown change kind foreign keeps", p, func(store.Change) bool { return false }, true)

	p = pos()
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: alice, RoomID: roomID, Target: bob, Membership: "invite"}); err != nil {
		t.Fatal(err)
	}
	check("invite of bob", p, nil, true)

	// carol joins the room bob is now invited to: it is his.
	p = pos()
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: carol, RoomID: roomID, Target: carol, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	check("join of carol in a room bob is invited to", p, nil, true)

	p = pos()
	if _, err := e.SetReceipt(ctx, carol, roomID, "m.read.private", msg, ""); err != nil {
		t.Fatal(err)
	}
	check("carol's private receipt", p, nil, false)

	p = pos()
	sendJSON(t, e, alice, roomID, `{"msgtype":"m.text","body":"again"}`)
	check("message in a room bob is invited to", p, nil, true)
}
