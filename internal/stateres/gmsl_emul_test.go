package stateres

import (
	"cmp"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Besides the self-authorisation bug, gomatrixserverlib's v2 orders events
// differently from ours in three ways (stateresolutionv2.go and
// stateresolutionv2heaps.go at our pin). The emulations below compute its
// orders on our inputs, so the random-fork comparison can tell which forks
// these differences reach:
//
//   - the power events are enlarged only by auth events that are in the
//     conflicted state set, reached through such events (the spec: the
//     events of P's auth chain in the full conflicted set), and an event
//     both listed and pulled in is listed twice, which leaves its auth
//     events with an in-degree that never reaches zero, so they go first;
//   - Kahn's algorithm runs from the newest events, taking the greatest
//     ready event each time and prepending it, over direct auth edges only:
//     a topological order, but not always the lexicographically smallest one
//     the spec asks for (§"Reverse topological power ordering"); and a sender
//     with no power_levels auth event counts 0, the creator included;
//   - the mainline ordering breaks ties on the number of off-mainline
//     power_levels steps before origin_server_ts, and puts events whose
//     power_levels never meet the mainline at the oldest position instead of
//     before it (§"Mainline ordering").

// gmslAuthDiff is gomatrixserverlib's auth difference, whose chains hold a
// state event only if another event cites it.
func gmslAuthDiff(r *resolver, sets []map[stateKey]string) map[string]bool {
	count := map[string]int{}
	for _, s := range sets {
		chain := map[string]bool{}
		var stack []string
		for _, id := range s {
			stack = append(stack, r.authIDs[id]...)
		}
		for len(stack) > 0 {
			id := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if !chain[id] {
				chain[id] = true
				stack = append(stack, r.authIDs[id]...)
			}
		}
		for id := range chain {
			count[id]++
		}
	}
	diff := map[string]bool{}
	for id, n := range count {
		if n < len(sets) {
			diff[id] = true
		}
	}
	return diff
}

// gmslPowerOrder is gomatrixserverlib's power list for full, in order. Its
// full conflicted set is a list, the conflicted events then the auth
// difference, so an event in both is listed twice.
func gmslPowerOrder(r *resolver, full, conflicted, diff map[string]bool) []string {
	count := map[string]int{}
	var stack []string
	for id := range full {
		if p := r.events[id]; p.Type() != spec.MRoomCreate && isPowerEvent(p) {
			count[id]++
			if conflicted[id] && diff[id] {
				count[id]++
			}
			stack = append(stack, id)
		}
	}
	reached := map[string]bool{}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, a := range r.authIDs[id] {
			if conflicted[a] && !reached[a] {
				reached[a] = true
				count[a]++
				stack = append(stack, a)
			}
		}
	}
	type item struct {
		id    string
		power int64
		ts    spec.Timestamp
	}
	less := func(a, b item) int {
		return cmp.Or(cmp.Compare(b.power, a.power), cmp.Compare(a.ts, b.ts), cmp.Compare(a.id, b.id))
	}
	mk := func(id string) item {
		power := int64(0)
		if pl := r.authOfType(id, spec.MRoomPowerLevels); pl != nil {
			if c := r.powerLevels(pl); c != nil {
				power = c.UserLevel(r.events[id].SenderID())
			}
		}
		return item{id, power, r.events[id].OriginServerTS()}
	}
	indeg := map[string]int{}
	pending := map[string]bool{}
	for id, n := range count {
		pending[id] = true
		for _, a := range r.authIDs[id] {
			indeg[a] += n
		}
	}
	var ready, out []item
	for id := range pending {
		if indeg[id] == 0 {
			ready = append(ready, mk(id))
			delete(pending, id)
		}
	}
	for len(ready) > 0 {
		slices.SortFunc(ready, less)
		it := ready[len(ready)-1]
		ready = ready[:len(ready)-1]
		out = append([]item{it}, out...)
		for _, a := range r.authIDs[it.id] {
			if indeg[a]--; indeg[a] == 0 && pending[a] {
				ready = append(ready, mk(a))
				delete(pending, a)
			}
		}
	}
	var stray []item
	for id := range pending {
		stray = append(stray, mk(id))
	}
	slices.SortFunc(stray, less)
	ids := []string{}
	for _, it := range append(stray, out...) {
		ids = append(ids, it.id)
	}
	return ids
}

// gmslMainlineOrder is gomatrixserverlib's mainline ordering of ids.
func gmslMainlineOrder(r *resolver, ids []string, pl gomatrixserverlib.PDU) []string {
	var line []string // newest first
	for p := pl; p != nil && !slices.Contains(line, p.EventID()); p = r.authOfType(p.EventID(), spec.MRoomPowerLevels) {
		line = append(line, p.EventID())
	}
	type item struct {
		id         string
		pos, steps int
		ts         spec.Timestamp
	}
	items := make([]item, 0, len(ids))
	for _, id := range ids {
		it := item{id: id, ts: r.events[id].OriginServerTS()}
		for p := r.authOfType(id, spec.MRoomPowerLevels); p != nil; p = r.authOfType(p.EventID(), spec.MRoomPowerLevels) {
			if i := slices.Index(line, p.EventID()); i >= 0 {
				it.pos = len(line) - 1 - i
				break
			}
			it.steps++
		}
		items = append(items, it)
	}
	slices.SortStableFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.pos, b.pos), cmp.Compare(a.steps, b.steps), cmp.Compare(a.ts, b.ts), cmp.Compare(a.id, b.id))
	})
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.id
	}
	return out
}

// gmslDeviates reports which of gomatrixserverlib's ordering differences
// reach the resolution of sets, if any: "power set", "power order" or
// "mainline order". It replays our phase 1 to find the mainline.
func gmslDeviates(r *resolver, sets [][]gomatrixserverlib.PDU) string {
	maps := setMaps(sets)
	unconflicted, conflicted := split(maps)
	if len(conflicted) == 0 {
		return ""
	}
	full := r.fullConflictedSet(maps, conflicted)
	power, other := r.powerClosure(full)
	theirs := gmslPowerOrder(r, full, conflicted, gmslAuthDiff(r, maps))
	slices.Sort(power)
	if !slices.Equal(slices.Sorted(slices.Values(theirs)), power) {
		return "power set"
	}
	ours, err := r.powerOrder(power)
	if err != nil || !slices.Equal(ids(ours), theirs) {
		return "power order"
	}
	state := map[stateKey]gomatrixserverlib.PDU{}
	for k, id := range unconflicted {
		state[k] = r.events[id]
	}
	r.iterativeAuthChecks(state, ours)
	pl := state[plKey()]
	if !slices.Equal(ids(r.mainlineOrder(other, pl)), gmslMainlineOrder(r, other, pl)) {
		return "mainline order"
	}
	return ""
}

// gmslReplay runs our phases with gomatrixserverlib's orders and its
// self-authorisation bug in place of ours (r must not be used for anything
// else). Its answer equalling gomatrixserverlib's on every fork shows the
// differences listed above are all there is.
func gmslReplay(r *resolver, sets [][]gomatrixserverlib.PDU) map[stateKey]string {
	r.fallback = gmslSelfAuth(r)
	maps := setMaps(sets)
	unconflicted, conflicted := split(maps)
	state := map[stateKey]gomatrixserverlib.PDU{}
	for k, id := range unconflicted {
		state[k] = r.events[id]
	}
	if len(conflicted) > 0 {
		full := r.fullConflictedSet(maps, conflicted)
		power := gmslPowerOrder(r, full, conflicted, gmslAuthDiff(r, maps))
		var other []string
		for id := range full {
			if !slices.Contains(power, id) {
				other = append(other, id)
			}
		}
		r.iterativeAuthChecks(state, r.pdus(power))
		r.iterativeAuthChecks(state, r.pdus(gmslMainlineOrder(r, other, state[plKey()])))
	}
	out := map[stateKey]string{}
	for k, p := range state {
		out[k] = p.EventID()
	}
	for k, id := range unconflicted {
		out[k] = id
	}
	return out
}

func (r *resolver) pdus(ids []string) []gomatrixserverlib.PDU {
	out := make([]gomatrixserverlib.PDU, len(ids))
	for i, id := range ids {
		out[i] = r.events[id]
	}
	return out
}
