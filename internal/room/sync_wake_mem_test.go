package room

import (
	"context"
	"testing"
)

// TestSyncConcernsFromMemoryPerUser: SyncConcerns answers from the rooms
// each user's last Sync build found them in, per user. bob builds, then
// alice does; a message in alice's room concerns alice and not bob (a
// memory keyed by anything less than the user, the last build's rooms or
// a union of everyone's, tells bob yes). carol, told by the memory alone
// that she is in the room, is answered from it without the store: the
// memory is what answers. A later build refreshes the memory.
func TestSyncConcernsFromMemoryPerUser(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t)
	const carol = "@carol:test.local"
	aliceRoom, err := e.CreateRoom(ctx, alice, Profile{}, CreateRequest{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	bobRoom, err := e.CreateRoom(ctx, bob, Profile{}, CreateRequest{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	pos := func() uint64 { p, _ := e.Pos(); return p }
	for _, u := range []string{bob, alice} { // alice's build last
		if _, err := e.Sync(SyncRequest{UserID: u, Now: pos(), Timeline: EventFilter{Limit: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.memberOf.get(bob); len(got) != 1 {
		t.Fatalf("bob's remembered rooms %v, want only %s", got, bobRoom)
	}
	p := pos()
	sendJSON(t, e, alice, aliceRoom, `{"msgtype":"m.text","body":"hi"}`)
	for _, c := range []struct {
		user string
		want bool
	}{{alice, true}, {bob, false}, {carol, false}} {
		got, err := e.SyncConcerns(c.user, p, pos(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("SyncConcerns(%s) after a message in alice's room = %v, want %v", c.user, got, c.want)
		}
	}
	// A build after bob joins alice's room remembers it (a memory kept
	// from an earlier build would not).
	if _, err := e.ChangeMembership(ctx, MembershipRequest{Sender: bob, RoomID: aliceRoom, Target: bob, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Sync(SyncRequest{UserID: bob, Since: p, Now: pos(), Timeline: EventFilter{Limit: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.memberOf.get(bob)[aliceRoom]; !ok || len(e.memberOf.get(bob)) != 2 {
		t.Errorf("bob's remembered rooms after joining alice's: %v, want both rooms", e.memberOf.get(bob))
	}
	e.memberOf.set(carol, map[string]struct{}{aliceRoom: {}})
	if got, err := e.SyncConcerns(carol, p, pos(), nil); err != nil || !got {
		t.Errorf("SyncConcerns(carol) with aliceRoom remembered = %v, %v; want true from memory", got, err)
	}
}
