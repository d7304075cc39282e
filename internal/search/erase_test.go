package search

import (
	"slices"
	"testing"
)

// TestErasedMessagesAreNotFound: a message whose sender deactivated with
// erase is served with its content erased to a user who could not see it
// at the erasure; search must not match it for them either, or the hit
// (and the count) would tell them which words it held. A user who was in
// the room then still finds it.
func TestErasedMessagesAreNotFound(t *testing.T) {
	en := newEnv(t)
	r := en.createRoom(alice, bob)
	said := en.send(alice, r, "secret rendezvous")
	pos, _ := en.n.Pos()
	en.rooms.MarkErased(alice, pos)
	en.membership(r, eve, "join") // the room's history is shared: eve may read back

	if res := en.search(Query{UserID: eve, Term: "rendezvous"}); len(res.Hits) != 0 || res.Count != 0 {
		t.Errorf("eve, who joined after the erasure, found %v (count %d)", hitIDs(res), res.Count)
	}
	if res := en.search(Query{UserID: bob, Term: "rendezvous"}); !slices.Equal(hitIDs(res), []string{said}) || res.Count != 1 {
		t.Errorf("bob, in the room at the erasure, found %v (count %d), want the message", hitIDs(res), res.Count)
	}
}
