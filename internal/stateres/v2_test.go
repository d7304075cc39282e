package stateres

import (
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// resolved resolves sets with the room version's own algorithm (what
// internal/room calls), every event built so far as auth events.
func (r *room) resolved(sets ...[]gomatrixserverlib.PDU) map[stateKey]string {
	r.t.Helper()
	out, err := Resolve(r.ver.Version(), sets, r.all, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	return toMap(r.t, out)
}

// gmslResolved is gomatrixserverlib's answer for the same input.
func (r *room) gmslResolved(sets ...[]gomatrixserverlib.PDU) map[stateKey]string {
	r.t.Helper()
	out, err := gomatrixserverlib.ResolveConflictsNew(r.ver.Version(), sets, r.all, userIDForSender,
		func(string) bool { return false })
	if err != nil {
		r.t.Fatal(err)
	}
	return toMap(r.t, out)
}

func toMap(t testing.TB, out []gomatrixserverlib.PDU) map[stateKey]string {
	t.Helper()
	m := map[stateKey]string{}
	for _, p := range out {
		if _, dup := m[keyOf(p)]; dup {
			t.Fatalf("two events for %v in the result", keyOf(p))
		}
		m[keyOf(p)] = p.EventID()
	}
	return m
}

// Room version 10 runs v2: the iterative auth checks of the power events
// start from the unconflicted state map, and no conflicted state subgraph is
// added. The two MSC4297 examples therefore still show v2's known resets
// through the production entry point.
func TestVersion10RunsV2(t *testing.T) {
	r := newRoomOf(t, gomatrixserverlib.RoomVersionV10)
	b := r.base(map[string]int64{}, bob, charlie)
	pl1 := r.state(alice, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]int64{alice: 100, bob: 100}}, b.joinA, b.pl)
	pl2 := r.state(bob, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]int64{alice: 100, bob: 100, charlie: 50}}, b.joins[bob], pl1)
	topic := r.state(charlie, "m.room.topic", "", map[string]any{"topic": "by charlie"}, b.joins[charlie], pl2)
	if got := r.resolved(b.stateOf(r, pl2, topic), b.stateOf(r, b.pl, topic))[plKey()]; got != b.pl.EventID() {
		t.Fatalf("power levels %s, want v2's reset to pl0 %s (v2.1 would keep pl2 %s)", got, b.pl.EventID(), pl2.EventID())
	}
}

// gomatrixserverlib's v2 (stateresolutionv2.go, authAndApplyEvents, at our
// pin) fills a key the partial state lacks with the event being checked
// instead of the auth event it found for that key. A join then stands in for
// its sender's previous membership and authorises itself.
//
// Bob joined and left a public room. Concurrently Alice made the room
// invite-only and then invited Bob (branch B) while Bob rejoined under the
// old rules (branch A). Resolved: the join rules are Alice's (a power event,
// replayed first); Bob's membership is conflicted, so his rejoin is checked
// with his membership from its auth events (his leave) against invite-only
// rules and must fail; the invite then applies. gomatrixserverlib checks the
// rejoin with the rejoin as Bob's membership ("join"), which invite-only
// rules allow, and then refuses the invite of a joined user.
func TestGMSLBugSelfAuthorisedJoin(t *testing.T) {
	r := newRoomOf(t, gomatrixserverlib.RoomVersionV10)
	b := r.base(map[string]int64{alice: 100}, bob)
	left := r.member(bob, bob, "leave", b.joins[bob], b.pl)
	b.joins[bob] = left
	inviteOnly := r.state(alice, spec.MRoomJoinRules, "", map[string]any{"join_rule": "invite"}, b.joinA, b.pl)
	rejoin := r.member(bob, bob, "join", b.pl, b.jr, left)
	invite := r.member(alice, bob, "invite", b.joinA, b.pl, inviteOnly, left)

	branchA := b.stateOf(r, rejoin)
	branchB := b.stateOf(r, inviteOnly, invite)

	// The rejoin is not allowed by the resolved join rules with Bob's
	// membership before it.
	provider, err := gomatrixserverlib.NewAuthEvents([]gomatrixserverlib.PDU{r.create, b.pl, b.joinA, inviteOnly, left})
	if err != nil {
		t.Fatal(err)
	}
	if err := gomatrixserverlib.Allowed(rejoin, provider, userIDForSender); err == nil {
		t.Fatal("the rejoin is allowed by invite-only rules: the example shows nothing")
	}

	jrKey := stateKey{spec.MRoomJoinRules, ""}
	for _, sets := range [][][]gomatrixserverlib.PDU{{branchA, branchB}, {branchB, branchA}} {
		g := r.gmslResolved(sets...)
		if g[jrKey] != inviteOnly.EventID() || g[memberKey(bob)] != rejoin.EventID() {
			t.Fatalf("gomatrixserverlib: join rules %s, bob %s; want invite-only and the self-authorised rejoin %s (bug fixed upstream?)",
				g[jrKey], g[memberKey(bob)], rejoin.EventID())
		}
		got := r.resolved(sets...)
		if got[jrKey] != inviteOnly.EventID() {
			t.Fatalf("join rules %s, want invite-only %s", got[jrKey], inviteOnly.EventID())
		}
		if got[memberKey(bob)] != invite.EventID() {
			t.Fatalf("bob's membership %s, want the invite %s (rejoin %s must fail)", got[memberKey(bob)], invite.EventID(), rejoin.EventID())
		}
	}
}

// The sender's power level for the reverse topological power ordering comes
// from the event's power_levels auth event, parsed by gomatrixserverlib for
// the event's room version: before v10 a level may be a string (floats too
// before v6, whose canonical JSON does not forbid them). With no power_levels event the creator (the create event's
// sender before v12) has 100; in v12 creators outrank every level.
func TestSenderPowerAcrossVersions(t *testing.T) {
	r := newRoomOf(t, gomatrixserverlib.RoomVersionV9)
	join := r.member(alice, alice, "join")
	pl := r.state(alice, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{alice: "100", bob: " 75 ", charlie: "+60"}}, join)
	jr := r.state(alice, spec.MRoomJoinRules, "", map[string]any{"join_rule": "public"}, join, pl)
	joinB := r.member(bob, bob, "join", pl, jr)
	joinC := r.member(charlie, charlie, "join", pl, jr)
	res := newResolver(r.ver, v2, nil, r.all)
	for _, c := range []struct {
		ev   gomatrixserverlib.PDU
		want int64
	}{{join, 100}, {pl, 100}, {joinB, 75}, {joinC, 60}} {
		if got := res.senderPower(c.ev.EventID()); got != c.want {
			t.Errorf("v9 %s by %s: power %d, want %d", c.ev.Type(), c.ev.SenderID(), got, c.want)
		}
	}

	r12 := newRoom(t)
	join12 := r12.member(alice, alice, "join")
	res12 := newResolver(r12.ver, v21, nil, r12.all)
	if got := res12.senderPower(join12.EventID()); got != gomatrixserverlib.CreatorPowerLevel {
		t.Errorf("v12 creator: power %d, want %d", got, gomatrixserverlib.CreatorPowerLevel)
	}
}
