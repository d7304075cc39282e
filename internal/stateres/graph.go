package stateres

import (
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// fullConflictedSet is the union of the conflicted state set, the auth
// difference and the conflicted state subgraph (§"Full conflicted set", as
// amended by MSC4297). Events that are not known are left out: nothing can be
// checked about them.
func (r *resolver) fullConflictedSet(sets []map[stateKey]string, conflicted map[string]bool) map[string]bool {
	full := r.authDifference(sets)
	for id := range conflicted {
		full[id] = true
	}
	if r.rules.subgraph {
		for id := range r.conflictedSubgraph(conflicted) {
			full[id] = true
		}
	}
	for id := range full {
		if p, ok := r.events[id]; !ok || p.StateKey() == nil {
			delete(full, id)
		}
	}
	return full
}

// authDifference is ∪Ci − ∩Ci, Ci being the full auth chain of state set Si
// (§"Auth difference"). Ci here includes the events of Si themselves, as
// Synapse's implementation does: an event that is state in every set is then
// never part of the difference merely because only some sets' events cite it.
func (r *resolver) authDifference(sets []map[stateKey]string) map[string]bool {
	count := map[string]int{}
	for _, s := range sets {
		chain := make(map[string]bool, len(s))
		stack := make([]string, 0, len(s))
		for _, id := range s {
			stack = append(stack, id)
		}
		for len(stack) > 0 {
			id := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if chain[id] {
				continue
			}
			chain[id] = true
			stack = append(stack, r.authIDs[id]...)
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

// conflictedSubgraph is the union of all auth_events paths from one event of
// the conflicted state set to another, endpoints included (§"Conflicted state
// subgraph", MSC4297). An event lies on such a path exactly when it is
// reachable from a conflicted event and can itself reach a conflicted event
// (each through at least one auth edge, or it is conflicted itself). Both
// halves are one walk each over the auth chain of the conflicted events, the
// second memoised per event, so the cost is linear in that chain rather than
// in the number of paths.
func (r *resolver) conflictedSubgraph(conflicted map[string]bool) map[string]bool {
	reached := map[string]bool{}
	var stack []string
	for id := range conflicted {
		stack = append(stack, r.authIDs[id]...)
	}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if reached[id] {
			continue
		}
		reached[id] = true
		stack = append(stack, r.authIDs[id]...)
	}

	const (
		unknown = iota
		visiting
		yes
		no
	)
	memo := make(map[string]int8, len(reached))
	var leads func(id string) bool
	leads = func(id string) bool {
		switch memo[id] {
		case yes:
			return true
		case no, visiting: // visiting: a cycle, impossible with hashed IDs
			return false
		}
		memo[id] = visiting
		found := false
		for _, a := range r.authIDs[id] {
			if conflicted[a] || leads(a) {
				found = true
				break
			}
		}
		memo[id] = no
		if found {
			memo[id] = yes
		}
		return found
	}
	sub := make(map[string]bool, len(conflicted))
	for id := range conflicted {
		sub[id] = true
	}
	for id := range reached {
		if leads(id) {
			sub[id] = true
		}
	}
	return sub
}

// isPowerEvent reports a power event (§"Power events"): power levels, join
// rules, or a membership leave or ban whose sender is not its target. The
// create event counts too, as in Synapse; it is only ever in the full
// conflicted set when a state set lacks it, and must then be replayed first.
func isPowerEvent(p gomatrixserverlib.PDU) bool {
	switch p.Type() {
	case spec.MRoomPowerLevels, spec.MRoomJoinRules, spec.MRoomCreate:
		return p.StateKeyEquals("")
	case spec.MRoomMember:
		m, err := p.Membership()
		if err != nil || (m != spec.Leave && m != spec.Ban) {
			return false
		}
		return !p.StateKeyEquals(string(p.SenderID()))
	}
	return false
}

// powerClosure splits the full conflicted set for the two replay phases
// (§"Algorithm" step 1): the power events, enlarged by the events of their
// auth chains that are also in the full conflicted set, and the rest. The
// auth chains are walked in full, also through events outside the set.
func (r *resolver) powerClosure(full map[string]bool) (power, other []string) {
	in := map[string]bool{}
	visited := map[string]bool{}
	var stack []string
	for id := range full {
		if isPowerEvent(r.events[id]) {
			in[id] = true
			stack = append(stack, r.authIDs[id]...)
		}
	}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[id] {
			continue
		}
		visited[id] = true
		if full[id] {
			in[id] = true
		}
		stack = append(stack, r.authIDs[id]...)
	}
	for id := range full {
		if in[id] {
			power = append(power, id)
		} else {
			other = append(other, id)
		}
	}
	return power, other
}
