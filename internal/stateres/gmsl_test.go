package stateres

import (
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// gmslSelfAuth replays gomatrixserverlib's v2 bug (stateresolutionv2.go,
// authAndApplyEvents): where the partial state lacks key k and ev has a
// usable auth event for k, ev itself is handed to the rules (and lands at
// its own key).
func gmslSelfAuth(r *resolver) func(gomatrixserverlib.PDU, stateKey) gomatrixserverlib.PDU {
	return func(ev gomatrixserverlib.PDU, k stateKey) gomatrixserverlib.PDU {
		if r.fromAuthEvents(ev.EventID(), k) != nil {
			return ev
		}
		return nil
	}
}

// forker grows two or three branches of a room version 10 room from a common
// base with random name, topic, power levels, join rules and membership
// changes. Every event cites its branch's state as auth events and is kept
// only if the authorization rules allow it against that state, as a server
// would have accepted it.
type forker struct {
	t        *testing.T
	rnd      *rand.Rand
	r        *room
	branches []map[stateKey]gomatrixserverlib.PDU
}

func newFork(t *testing.T, rnd *rand.Rand) *forker {
	r := newRoomOf(t, gomatrixserverlib.RoomVersionV10)
	b := r.base(map[string]int64{bob: 50, charlie: 50}, bob, charlie, dave)
	f := &forker{t: t, rnd: rnd, r: r}
	for range 2 + rnd.Intn(2) {
		m := map[stateKey]gomatrixserverlib.PDU{}
		for _, p := range b.stateOf(r) {
			m[keyOf(p)] = p
		}
		f.branches = append(f.branches, m)
	}
	for i := range f.branches {
		for n, want := 0, 1+rnd.Intn(4); n < want; {
			if f.step(i) {
				n++
			}
		}
	}
	return f
}

// step tries one random change in branch i and reports whether it was kept.
func (f *forker) step(i int) bool {
	br, rnd := f.branches[i], f.rnd
	users := []string{alice, bob, charlie, dave}
	pick := func() string { return users[rnd.Intn(len(users))] }
	sender, target := pick(), pick()
	switch rnd.Intn(8) {
	case 0:
		return f.try(br, sender, "m.room.name", "", map[string]any{"name": fmt.Sprint("n", rnd.Intn(1000))})
	case 1:
		return f.try(br, sender, "m.room.topic", "", map[string]any{"topic": fmt.Sprint("t", rnd.Intn(1000))})
	case 2, 3:
		lv := []int64{0, 50}
		levels := map[string]int64{alice: 100}
		for _, u := range users[1:] {
			levels[u] = lv[rnd.Intn(2)]
		}
		return f.try(br, sender, spec.MRoomPowerLevels, "", map[string]any{"users": levels})
	case 4:
		rule := []string{"public", "invite"}[rnd.Intn(2)]
		return f.try(br, sender, spec.MRoomJoinRules, "", map[string]any{"join_rule": rule})
	case 5:
		return f.try(br, target, spec.MRoomMember, target, map[string]any{"membership": []string{"join", "leave"}[rnd.Intn(2)]})
	default:
		m := []string{"leave", "ban", "invite"}[rnd.Intn(3)]
		return f.try(br, sender, spec.MRoomMember, target, map[string]any{"membership": m})
	}
}

func (f *forker) try(br map[stateKey]gomatrixserverlib.PDU, sender, typ, key string, content any) bool {
	t := f.t
	proto := gomatrixserverlib.ProtoEvent{SenderID: sender, Type: typ, StateKey: &key, Content: mustJSON(t, content)}
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(&proto)
	if err != nil {
		t.Fatal(err)
	}
	var auth []gomatrixserverlib.PDU
	for _, tk := range needed.Tuples() {
		if p, ok := br[stateKey{tk.EventType, tk.StateKey}]; ok && tk.EventType != spec.MRoomCreate {
			auth = append(auth, p)
		}
	}
	ev := f.r.unchecked(sender, typ, key, content, auth...)
	provider, err := gomatrixserverlib.NewAuthEvents(slices.Collect(maps.Values(br)))
	if err != nil {
		t.Fatal(err)
	}
	if gomatrixserverlib.Allowed(ev, provider, userIDForSender) != nil {
		f.r.all = f.r.all[:len(f.r.all)-1] // never sent
		return false
	}
	br[keyOf(ev)] = ev
	return true
}

func (f *forker) sets() [][]gomatrixserverlib.PDU {
	var out [][]gomatrixserverlib.PDU
	for _, br := range f.branches {
		out = append(out, slices.Collect(maps.Values(br)))
	}
	return out
}

// On random forks of room version 10, gomatrixserverlib's v2 is held to two
// things. On every fork, our phases run with its orders and its
// self-authorisation bug (gmsl_emul_test.go) must give its answer: nothing
// else separates the two implementations. On the forks none of its ordering
// differences reaches, it must give our answer where replaying the bug
// changes nothing, and our answer with the bug replayed where it does.
func TestAgreesWithGMSLv2OnRandomForks(t *testing.T) {
	rnd := rand.New(rand.NewSource(20260506))
	const forks = 100
	clean, buggy, conflictedKeys, agreedAnyway := 0, 0, 0, 0
	deviating := map[string]int{}
	for n := range forks {
		f := newFork(t, rnd)
		sets := f.sets()
		unconflicted, _ := split(setMaps(sets))
		conflictedKeys += len(f.keys()) - len(unconflicted)

		ours, err := Resolve(gomatrixserverlib.RoomVersionV10, sets, f.r.all, nil)
		if err != nil {
			t.Fatal(err)
		}
		// fromAuthEvents depends only on the events, so a second resolver
		// over the same events serves the replay.
		lookup := newResolver(f.r.ver, v2, func(string) bool { return false }, f.r.all)
		emu, err := resolve(gomatrixserverlib.RoomVersionV10, v2, sets, f.r.all, nil, gmslSelfAuth(lookup))
		if err != nil {
			t.Fatal(err)
		}
		g, err := gomatrixserverlib.ResolveConflictsNew(gomatrixserverlib.RoomVersionV10, sets, f.r.all, userIDForSender,
			func(string) bool { return false })
		if err != nil {
			t.Fatal(err)
		}
		om, em, gm := toMap(t, ours), toMap(t, emu), toMap(t, g)
		if rm := gmslReplay(newResolver(f.r.ver, v2, func(string) bool { return false }, f.r.all), sets); !maps.Equal(rm, gm) {
			t.Errorf("fork %d: replaying gomatrixserverlib's known differences does not give its answer:\n%s", n, diff(f.r, rm, gm))
		}
		if dev := gmslDeviates(lookup, sets); dev != "" {
			// gomatrixserverlib orders differently here: no claim.
			deviating[dev]++
			if maps.Equal(om, gm) {
				agreedAnyway++
			}
			continue
		}
		want, what := om, "ours"
		if maps.Equal(om, em) {
			clean++
		} else {
			buggy++
			want, what = em, "ours with the bug replayed"
		}
		if !maps.Equal(gm, want) {
			t.Errorf("fork %d (%d branches): gomatrixserverlib differs from %s:\n%s", n, len(sets), what, diff(f.r, want, gm))
		}
	}
	t.Logf("%d forks, %d conflicted keys: %d where the bug cannot matter (gomatrixserverlib agrees), %d where it does "+
		"(gomatrixserverlib gives our answer with the bug replayed); ordering differences %v (%d of these agree anyway)",
		forks, conflictedKeys, clean, buggy, deviating, agreedAnyway)
	if clean < 20 || conflictedKeys < forks {
		t.Fatalf("too few informative forks: %d unaffected, %d conflicted keys", clean, conflictedKeys)
	}
}

func (f *forker) keys() map[stateKey]bool {
	out := map[stateKey]bool{}
	for _, br := range f.branches {
		for k := range br {
			out[k] = true
		}
	}
	return out
}

func setMaps(sets [][]gomatrixserverlib.PDU) []map[stateKey]string {
	out := make([]map[stateKey]string, len(sets))
	for i, s := range sets {
		out[i] = map[stateKey]string{}
		for _, p := range s {
			out[i][keyOf(p)] = p.EventID()
		}
	}
	return out
}

func diff(r *room, want, got map[stateKey]string) string {
	byID := map[string]gomatrixserverlib.PDU{}
	for _, p := range r.all {
		byID[p.EventID()] = p
	}
	desc := func(id string) string {
		if p, ok := byID[id]; ok {
			return fmt.Sprintf("%s by %s %s", id[:8], p.SenderID(), p.Content())
		}
		return "none"
	}
	out := ""
	for k := range maps.Keys(mergeKeys(want, got)) {
		if want[k] != got[k] {
			out += fmt.Sprintf("  %v: want %s, got %s\n", k, desc(want[k]), desc(got[k]))
		}
	}
	return out
}

func mergeKeys(a, b map[stateKey]string) map[stateKey]bool {
	out := map[stateKey]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
