package stateres

import (
	"math/rand"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// MSC4297 problem B: Alice promotes Bob (pl1), Bob promotes Charlie (pl2).
// One state set is stale (partial sync) and still names the original power
// levels pl0, although the topic in it was authorised by pl2. Only pl0 and
// pl2 are conflicted and the auth difference is empty, so v2 never replays
// pl1 and Bob's pl2 fails: a state reset to pl0. In v2.1 pl1 lies on the
// auth path pl2 → pl1 → pl0 between two conflicted events (the conflicted
// state subgraph) and is replayed: pl2 stands.
func TestConflictedSubgraphReplaysIntermediatePowerLevels(t *testing.T) {
	r := newRoom(t)
	b := r.base(map[string]int64{}, bob, charlie)
	pl1 := r.state(alice, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]int64{bob: 100}}, b.joinA, b.pl)
	pl2 := r.state(bob, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]int64{bob: 100, charlie: 50}}, b.joins[bob], pl1)
	topic := r.state(charlie, "m.room.topic", "", map[string]any{"topic": "by charlie"}, b.joins[charlie], pl2)

	fresh := b.stateOf(r, pl2, topic)
	stale := b.stateOf(r, b.pl, topic)

	if got := r.resolveAll(v2, fresh, stale)[plKey()]; got != b.pl.EventID() {
		t.Fatalf("v2: power levels %s, want the reset to pl0 %s (the example no longer shows the problem)", got, b.pl.EventID())
	}
	for _, sets := range [][][]gomatrixserverlib.PDU{{fresh, stale}, {stale, fresh}} {
		got := r.resolveAll(v21, sets...)
		if got[plKey()] != pl2.EventID() {
			t.Fatalf("v2.1: power levels %s, want pl2 %s", got[plKey()], pl2.EventID())
		}
		if got[stateKey{"m.room.topic", ""}] != topic.EventID() {
			t.Fatal("v2.1: the unconflicted topic is gone")
		}
	}
}

// MSC4297 problem A: both state sets agree Alice has left since, but a stale
// set still names the join rules from before she changed them. v2 replays
// both join rules on top of the unconflicted state, where Alice is no longer
// a member, so both fail and the room is left without join rules. v2.1
// replays from an empty state: Alice's membership comes from each event's own
// auth events and her latest rules stand. (Nothing lies between the two join
// rules in the auth DAG, so the conflicted state subgraph cannot help here.)
func TestEmptyStartAuthsAgainstOwnAuthEvents(t *testing.T) {
	r := newRoom(t)
	b := r.base(map[string]int64{}, bob)
	jr1 := r.state(alice, spec.MRoomJoinRules, "", map[string]any{"join_rule": "invite"}, b.joinA, b.pl)
	left := r.member(alice, alice, "leave", b.joinA, b.pl)

	fresh := b.stateOf(r, jr1, left)
	stale := b.stateOf(r, left)
	jrKey := stateKey{spec.MRoomJoinRules, ""}
	for _, rl := range []rules{v2, {subgraph: true}} {
		if id, ok := r.resolveAll(rl, fresh, stale)[jrKey]; ok {
			t.Fatalf("%+v: join rules %s, want none (the example no longer shows the problem)", rl, id)
		}
	}
	got := r.resolveAll(v21, fresh, stale)
	if got[jrKey] != jr1.EventID() {
		t.Fatalf("v2.1: join rules %s, want jr1 %s", got[jrKey], jr1.EventID())
	}
	if got[memberKey(alice)] != left.EventID() {
		t.Fatal("v2.1: Alice's unconflicted leave was not kept")
	}
}

// A key the state lacks is taken from the event's auth events, but never from
// a rejected one (§"Iterative auth checks"): with Bob's join rejected his
// topic has no membership to authorise it.
func TestRejectedAuthEventIsNotUsed(t *testing.T) {
	r := newRoom(t)
	b := r.base(map[string]int64{bob: 50}, bob)
	t0 := r.state(alice, "m.room.topic", "", map[string]any{"topic": "alice's"}, b.joinA, b.pl)
	t1 := r.state(bob, "m.room.topic", "", map[string]any{"topic": "bob's"}, b.joins[bob], b.pl)
	sets := [][]gomatrixserverlib.PDU{b.stateOf(r, t0), b.stateOf(r, t1)}
	topicKey := stateKey{"m.room.topic", ""}
	for _, c := range []struct {
		rejected string
		want     gomatrixserverlib.PDU
	}{{"", t1}, {b.joins[bob].EventID(), t0}} {
		out, err := Resolve(gomatrixserverlib.RoomVersionV12, sets, r.all, func(id string) bool { return id == c.rejected })
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range out {
			if keyOf(p) == topicKey && p.EventID() != c.want.EventID() {
				t.Fatalf("rejected %q: topic %s, want %s", c.rejected, p.EventID(), c.want.EventID())
			}
		}
	}
}

// A ban races a state change by the banned user: the ban is a power event,
// replayed before any ordinary state, so the topic Bob set concurrently
// fails, although by origin_server_ts it came first. The same holds in v2
// (room version 10) and v2.1 (room version 12).
func TestBanBeatsConcurrentStateChangeByBannedUser(t *testing.T) {
	for _, v := range []gomatrixserverlib.RoomVersion{gomatrixserverlib.RoomVersionV10, gomatrixserverlib.RoomVersionV12} {
		r := newRoomOf(t, v)
		b := r.base(map[string]int64{bob: 50}, bob)
		t0 := r.state(alice, "m.room.topic", "", map[string]any{"topic": "alice's"}, b.joinA, b.pl)
		tb := r.state(bob, "m.room.topic", "", map[string]any{"topic": "bob's"}, b.joins[bob], b.pl)
		ban := r.member(alice, bob, "ban", b.joinA, b.pl, b.joins[bob]) // after tb, by the clock

		s1 := b.stateOf(r, t0, ban)
		s2 := b.stateOf(r, tb)
		for _, sets := range [][][]gomatrixserverlib.PDU{{s1, s2}, {s2, s1}} {
			got := r.resolved(sets...)
			if got[memberKey(bob)] != ban.EventID() {
				t.Fatalf("v%s: bob's membership %s, want the ban", v, got[memberKey(bob)])
			}
			if got[stateKey{"m.room.topic", ""}] != t0.EventID() {
				t.Fatalf("v%s: topic %s, want alice's %s: the banned user's change must lose", v, got[stateKey{"m.room.topic", ""}], t0.EventID())
			}
		}
	}
}

// Two users of equal power rename the room concurrently. The mainline
// positions tie, so origin_server_ts decides, then the event ID; the answer
// must not depend on the order of the state sets or of the events in them.
func TestEqualPowerTieBreakIsOrderIndependent(t *testing.T) {
	for _, v := range []gomatrixserverlib.RoomVersion{gomatrixserverlib.RoomVersionV10, gomatrixserverlib.RoomVersionV12} {
		t.Run("v"+string(v), func(t *testing.T) { testTieBreakOrderIndependent(t, v) })
	}
}

func testTieBreakOrderIndependent(t *testing.T, v gomatrixserverlib.RoomVersion) {
	r := newRoomOf(t, v)
	b := r.base(map[string]int64{bob: 50, charlie: 50}, bob, charlie)
	name := func(sender, n string, ts int64) gomatrixserverlib.PDU {
		return r.at(ts).state(sender, "m.room.name", "", map[string]any{"name": n}, b.joins[sender], b.pl)
	}
	later := name(bob, "bob's", 9_000_000)
	earlier := name(charlie, "charlie's", 8_000_000)
	tieB := name(bob, "bob's tie", 7_000_000)
	tieC := name(charlie, "charlie's tie", 7_000_000)
	tieWinner := max(tieB.EventID(), tieC.EventID()) // applied last

	rnd := rand.New(rand.NewSource(1))
	nameKey := stateKey{"m.room.name", ""}
	for _, c := range []struct {
		a, b gomatrixserverlib.PDU
		want string
	}{{later, earlier, later.EventID()}, {tieB, tieC, tieWinner}} {
		sets := [][]gomatrixserverlib.PDU{b.stateOf(r, c.a), b.stateOf(r, c.b), b.stateOf(r)}
		first := ""
		for i := range 30 {
			rnd.Shuffle(len(sets), func(i, j int) { sets[i], sets[j] = sets[j], sets[i] })
			for _, s := range sets {
				rnd.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
			}
			all := slices.Clone(r.all)
			rnd.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
			out, err := Resolve(v, sets, all, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids := ""
			for _, p := range out {
				ids += p.EventID() + ","
				if keyOf(p) == nameKey && p.EventID() != c.want {
					t.Fatalf("round %d: name %s, want %s", i, p.EventID(), c.want)
				}
			}
			if first == "" {
				first = ids
			} else if ids != first {
				t.Fatalf("round %d: the resolved state depends on input order", i)
			}
		}
	}
}

// The unconflicted state map is applied last, whatever the replay did: here
// Charlie's topic stays although the resolved power levels no longer let him
// set it, and every key both sets agree on keeps its event.
func TestUnconflictedStateSurvives(t *testing.T) {
	r := newRoom(t)
	b := r.base(map[string]int64{bob: 50, charlie: 50}, bob, charlie)
	topic := r.state(charlie, "m.room.topic", "", map[string]any{"topic": "charlie's"}, b.joins[charlie], b.pl)
	demote := r.state(alice, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]int64{charlie: 0}}, b.joinA, b.pl)
	name := r.state(bob, "m.room.name", "", map[string]any{"name": "x"}, b.joins[bob], b.pl)
	name2 := r.unchecked(bob, "m.room.name", "", map[string]any{"name": "y"}, b.joins[bob], demote)

	s1 := b.stateOf(r, topic, demote, name)
	s2 := b.stateOf(r, topic, name2)
	got := r.resolveAll(v21, s1, s2)
	if got[plKey()] != demote.EventID() {
		t.Fatalf("power levels %s, want the demotion", got[plKey()])
	}
	for _, p := range b.stateOf(r, topic) {
		if keyOf(p) == plKey() {
			continue // conflicted
		}
		if got[keyOf(p)] != p.EventID() {
			t.Fatalf("unconflicted %v: got %s, want %s", keyOf(p), got[keyOf(p)], p.EventID())
		}
	}
	// The conflicted names, by contrast, are checked against the resolved
	// power levels, under which Bob (demoted) may set neither.
	if id, ok := got[stateKey{"m.room.name", ""}]; ok {
		t.Fatalf("name %s set by a demoted user", id)
	}
}

// Creators (the create event's sender and additional_creators) outrank any
// power level in the reverse topological power ordering, even a later one.
// Events ordered first are applied first, so a lower-power change that is
// still allowed afterwards lands on top: Bob's (earlier) change must come
// after Carol's and win. Bob's ban of Carol, which no power level can
// authorise, never applies.
func TestCreatorsOutrankAnyPowerLevel(t *testing.T) {
	r := newRoom(t, carol)
	top := int64(1<<53 - 1)
	b := r.base(map[string]int64{bob: top, dave: 50}, bob, carol, dave)
	t0 := r.ts
	byBob := r.at(t0+1000).state(bob, spec.MRoomPowerLevels, "",
		map[string]any{"users": map[string]int64{bob: top, dave: 0}}, b.joins[bob], b.pl)
	byCarol := r.at(t0+9000).state(carol, spec.MRoomPowerLevels, "",
		map[string]any{"users": map[string]int64{bob: top, dave: 50}, "events_default": 10}, b.joins[carol], b.pl)
	banCarol := r.unchecked(bob, spec.MRoomMember, carol, map[string]any{"membership": "ban"}, b.joins[bob], b.pl, b.joins[carol])

	res := newResolver(r.ver, v21, nil, r.all)
	order, err := res.powerOrder([]string{byBob.EventID(), byCarol.EventID(), b.pl.EventID()})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{b.pl.EventID(), byCarol.EventID(), byBob.EventID()}; !slices.Equal(ids(order), want) {
		t.Fatalf("power order %v, want pl0, carol's, bob's %v", ids(order), want)
	}

	got := r.resolveAll(v21, b.stateOf(r, byCarol), b.stateOf(r, byBob, banCarol))
	if got[plKey()] != byBob.EventID() {
		t.Fatalf("power levels %s, want bob's %s (carol's replayed first)", got[plKey()], byBob.EventID())
	}
	if got[memberKey(carol)] != b.joins[carol].EventID() {
		t.Fatal("a creator was banned")
	}
}

func TestResolveEdgeCases(t *testing.T) {
	r := newRoom(t)
	b := r.base(map[string]int64{}, bob)
	if _, err := Resolve(gomatrixserverlib.RoomVersionV1, nil, nil, nil); err == nil {
		t.Fatal("v1 (state resolution v1) accepted")
	}
	one := b.stateOf(r)
	got := r.resolveAll(v21, one)
	if len(got) != len(one) {
		t.Fatalf("one set: %d events, want %d", len(got), len(one))
	}
	if _, err := Resolve(gomatrixserverlib.RoomVersionV12, [][]gomatrixserverlib.PDU{append(one, b.pl, r.all[len(r.all)-1])}, r.all, nil); err != nil {
		t.Fatalf("duplicate of the same event refused: %v", err)
	}
}

func ids(ps []gomatrixserverlib.PDU) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.EventID()
	}
	return out
}
