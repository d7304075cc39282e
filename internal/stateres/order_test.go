package stateres

import (
	"fmt"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// The power ordering is topological first: an auth ancestor comes before its
// descendants whatever its sender's power, also when the auth path between
// them runs through an event outside the sorted set.
func TestPowerOrderIsTopological(t *testing.T) {
	r := newRoom(t)
	b := r.base(map[string]int64{bob: 100}, bob)
	byBob := r.state(bob, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]int64{bob: 100, charlie: 10}}, b.joins[bob], b.pl)
	byAlice := r.state(alice, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]int64{bob: 100}}, b.joinA, byBob)
	ban := r.member(alice, bob, "ban", b.joinA, byAlice, b.joins[bob])

	res := newResolver(r.ver, v21, nil, r.all)
	for _, c := range []struct{ in, want []gomatrixserverlib.PDU }{
		{[]gomatrixserverlib.PDU{ban, b.joins[bob]}, []gomatrixserverlib.PDU{b.joins[bob], ban}},         // direct edge
		{[]gomatrixserverlib.PDU{byAlice, b.joins[bob]}, []gomatrixserverlib.PDU{b.joins[bob], byAlice}}, // through byBob
	} {
		got, err := res.powerOrder(ids(c.in))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(got), ids(c.want)) {
			t.Fatalf("order %v, want %v", ids(got), ids(c.want))
		}
	}
}

// Each step of this chain of power levels is a diamond in the auth DAG
// (P(i+1) cites P(i) directly and through Alice's member event M(i), which
// cites P(i) too), so 2^40 auth paths run between the two conflicted ends.
// The conflicted state subgraph must still be found in one pass, and hold
// every event of the chain.
func TestConflictedSubgraphIsLinear(t *testing.T) {
	r := newRoom(t)
	b := r.base(map[string]int64{bob: 50}, bob)
	pl, member := b.pl, b.joinA
	var chain []gomatrixserverlib.PDU
	for i := range 40 {
		member = r.state(alice, spec.MRoomMember, alice, map[string]any{"membership": "join", "displayname": fmt.Sprint(i)}, member, pl, b.jr)
		pl = r.state(alice, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]int64{bob: int64(i)}}, member, pl)
		chain = append(chain, member, pl)
	}
	topic := r.state(bob, "m.room.topic", "", map[string]any{"topic": "t"}, b.joins[bob], b.pl)
	fresh := b.stateOf(r, pl, member, topic)
	stale := b.stateOf(r, member, topic)

	res := newResolver(r.ver, v21, nil, r.all)
	sub := res.conflictedSubgraph(map[string]bool{pl.EventID(): true, b.pl.EventID(): true})
	for _, p := range chain {
		if !sub[p.EventID()] {
			t.Fatalf("%s (%s) missing from the conflicted state subgraph", p.EventID(), p.Type())
		}
	}
	if sub[b.joins[bob].EventID()] || sub[topic.EventID()] {
		t.Fatal("an event off every conflicted path is in the subgraph")
	}
	if got := r.resolveAll(v21, fresh, stale)[plKey()]; got != pl.EventID() {
		t.Fatalf("power levels %s, want the chain's last %s", got, pl.EventID())
	}
}

// Ordinary conflicted state is replayed in mainline order: an event authorised
// by an older power levels event on the resolved mainline comes first, so the
// one citing the newer power levels wins though its origin_server_ts is
// earlier.
func TestMainlineOrdering(t *testing.T) {
	r := newRoom(t)
	b := r.base(map[string]int64{charlie: 50}, bob, charlie)
	pl1 := r.state(alice, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]int64{bob: 50, charlie: 50}}, b.joinA, b.pl)
	byBob := r.at(5_000_000).state(bob, "m.room.topic", "", map[string]any{"topic": "bob's"}, b.joins[bob], pl1)
	byCharlie := r.at(6_000_000).state(charlie, "m.room.topic", "", map[string]any{"topic": "charlie's"}, b.joins[charlie], b.pl)

	got := r.resolveAll(v21, b.stateOf(r, pl1, byBob), b.stateOf(r, byCharlie))
	if got[plKey()] != pl1.EventID() {
		t.Fatalf("power levels %s, want pl1", got[plKey()])
	}
	if got[stateKey{"m.room.topic", ""}] != byBob.EventID() {
		t.Fatalf("topic %s, want bob's %s (mainline position 0, replayed last)", got[stateKey{"m.room.topic", ""}], byBob.EventID())
	}
}
