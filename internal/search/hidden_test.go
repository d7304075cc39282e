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

// TestHighlightsOnlyFromVisibleHits: the last term also matches as a
// prefix, and the whole words it matched come back as highlights; only
// words of events the user is shown may, or a prefix query would spell
// out messages they may not read (sent after they left a members-only
// room, or erased for them).
func TestHighlightsOnlyFromVisibleHits(t *testing.T) {
	en := newEnv(t)
	r := en.membersOnlyRoom()
	seen := en.send(alice, r, "password hint")
	en.membership(r, bob, "leave")
	en.send(alice, r, "password swordfish")

	res := en.search(Query{UserID: bob, Term: "password swo"})
	if len(res.Hits) != 0 || res.Count != 0 || len(res.Highlights) != 0 {
		t.Errorf("bob, gone before the second message, got hits %v and highlights %v", hitIDs(res), res.Highlights)
	}
	res = en.search(Query{UserID: bob, Term: "pass"})
	if !slices.Equal(hitIDs(res), []string{seen}) || !slices.Equal(res.Highlights, []string{"password"}) {
		t.Errorf("bob's prefix search: hits %v, highlights %v", hitIDs(res), res.Highlights)
	}
	if res := en.search(Query{UserID: alice, Term: "password swo"}); res.Count != 1 || !slices.Equal(res.Highlights, []string{"password", "swordfish"}) {
		t.Errorf("alice: count %d, highlights %v", res.Count, res.Highlights)
	}
}
