// Package stateres implements state resolution v2 (room versions 2–11) and
// v2.1 (room version 12), Server-Server API §"Room State Resolution", room
// version 2 §"State resolution" and room version 12 §"State resolution"
// (MSC4297). gomatrixserverlib's own v2.1 path cannot be used: it panics as
// soon as a control event is conflicted and writes to stdout. Its v2 path
// adds the event being checked instead of the auth event when the partial
// state lacks a key the rules need (stateresolutionv2.go, authAndApplyEvents,
// at our pin), so an event can be authorised against itself. This package
// reuses only its primitives: Allowed for the authorization rules,
// PowerLevelContent and CreatorsFromCreateEvent.
//
// The algorithm, given state sets S1…Sn:
//
//  1. split the states into the unconflicted state map and the conflicted
//     state set;
//  2. the full conflicted set is the conflicted state set, the auth
//     difference and (v2.1 only) the conflicted state subgraph;
//  3. the power events of the full conflicted set, with the events of their
//     auth chains that are also in it, are sorted by the reverse topological
//     power ordering and replayed with the iterative auth checks starting
//     from the unconflicted state map (v2) or from an empty state map (v2.1);
//  4. the other events of the full conflicted set are sorted by the mainline
//     ordering of the resulting power levels and replayed on top;
//  5. the unconflicted state map is applied over the result.
//
// Nothing else differs between the two: the definitions of power events, the
// auth difference, both orderings and the iterative auth checks are the same
// text. What differs between room versions is left to the events and to
// gomatrixserverlib's authorization rules: before v12 the create event is
// listed in auth_events and its sender is the only creator (as in
// gomatrixserverlib's rules, which ignore v1–v10's content.creator), with
// level 100 while the room has no power levels.
package stateres

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// rules are the two switches that separate v2.1 from v2 (MSC4297).
type rules struct {
	emptyStart bool // phase 1 starts from an empty state, not the unconflicted map
	subgraph   bool // the conflicted state subgraph joins the full conflicted set
}

var (
	v2  = rules{}
	v21 = rules{emptyStart: true, subgraph: true}
)

// rulesFor picks the variant of the room version's algorithm.
func rulesFor(ver gomatrixserverlib.IRoomVersion) (rules, error) {
	switch ver.StateResAlgorithm() {
	case gomatrixserverlib.StateResV2:
		return v2, nil
	case gomatrixserverlib.StateResV2_1:
		return v21, nil
	}
	return rules{}, fmt.Errorf("stateres: room version %s uses neither state resolution v2 nor v2.1", ver.Version())
}

type stateKey struct{ typ, key string }

func keyOf(p gomatrixserverlib.PDU) stateKey { return stateKey{p.Type(), *p.StateKey()} }

// resolver holds the events of one resolution and what is derived from them,
// memoised by event ID.
type resolver struct {
	ver        gomatrixserverlib.IRoomVersion
	rules      rules
	events     map[string]gomatrixserverlib.PDU
	authIDs    map[string][]string // AuthEventIDs(), which allocates on every call
	isRejected func(string) bool
	rejected   map[string]bool
	senderPL   map[string]int64 // event ID → power level of its sender at the event
	plContent  map[string]*gomatrixserverlib.PowerLevelContent
	creators   map[string][]string // create event ID → creators
	// fallback, when set, replaces fromAuthEvents in the iterative auth
	// checks. Only tests set it, to replay gomatrixserverlib's v2 bug and
	// tell forks it affects from those it does not.
	fallback func(ev gomatrixserverlib.PDU, k stateKey) gomatrixserverlib.PDU
}

// Resolve resolves the state sets of a room whose version uses state
// resolution v2 or v2.1 (room versions 2–12). authEvents must hold the full
// auth chains of every event of every set (their union); the state events
// themselves may be among them.
// isRejected reports events that were rejected; nil means none was. The
// result is the full resolved state, sorted by (type, state_key).
func Resolve(version gomatrixserverlib.RoomVersion, stateSets [][]gomatrixserverlib.PDU,
	authEvents []gomatrixserverlib.PDU, isRejected func(eventID string) bool) ([]gomatrixserverlib.PDU, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(version)
	if err != nil {
		return nil, err
	}
	r, err := rulesFor(ver)
	if err != nil {
		return nil, err
	}
	return resolve(version, r, stateSets, authEvents, isRejected, nil)
}

// resolve runs the algorithm with the given rules; fallback is nil but in
// tests (see resolver.fallback).
func resolve(version gomatrixserverlib.RoomVersion, r rules, stateSets [][]gomatrixserverlib.PDU,
	authEvents []gomatrixserverlib.PDU, isRejected func(string) bool,
	fallback func(gomatrixserverlib.PDU, stateKey) gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(version)
	if err != nil {
		return nil, err
	}
	if _, err := rulesFor(ver); err != nil {
		return nil, err
	}
	if isRejected == nil {
		isRejected = func(string) bool { return false }
	}
	res := newResolver(ver, r, isRejected, authEvents)
	res.fallback = fallback
	maps := make([]map[stateKey]string, len(stateSets))
	for i, set := range stateSets {
		m := make(map[stateKey]string, len(set))
		for _, p := range set {
			if p.StateKey() == nil {
				return nil, fmt.Errorf("stateres: non-state event %s in a state set", p.EventID())
			}
			k := keyOf(p)
			if old, ok := m[k]; ok && old != p.EventID() {
				return nil, fmt.Errorf("stateres: state set %d has two events for (%s, %q)", i, k.typ, k.key)
			}
			m[k] = p.EventID()
			res.add(p)
		}
		maps[i] = m
	}
	return res.run(maps)
}

func newResolver(ver gomatrixserverlib.IRoomVersion, rl rules, isRejected func(string) bool,
	events []gomatrixserverlib.PDU) *resolver {
	r := &resolver{
		ver: ver, rules: rl, isRejected: isRejected,
		events:    make(map[string]gomatrixserverlib.PDU, len(events)),
		authIDs:   make(map[string][]string, len(events)),
		rejected:  map[string]bool{},
		senderPL:  map[string]int64{},
		plContent: map[string]*gomatrixserverlib.PowerLevelContent{},
		creators:  map[string][]string{},
	}
	for _, p := range events {
		r.add(p)
	}
	return r
}

func (r *resolver) add(p gomatrixserverlib.PDU) {
	id := p.EventID()
	if _, ok := r.events[id]; !ok {
		r.events[id] = p
		r.authIDs[id] = p.AuthEventIDs()
	}
}

func (r *resolver) run(sets []map[stateKey]string) ([]gomatrixserverlib.PDU, error) {
	if len(sets) == 0 {
		return nil, nil
	}
	unconflicted, conflicted := split(sets)
	resolved := map[stateKey]gomatrixserverlib.PDU{}
	if len(conflicted) > 0 {
		full := r.fullConflictedSet(sets, conflicted)
		power, other := r.powerClosure(full)
		sorted, err := r.powerOrder(power)
		if err != nil {
			return nil, err
		}
		if !r.rules.emptyStart {
			for k, id := range unconflicted {
				resolved[k] = r.events[id]
			}
		}
		r.iterativeAuthChecks(resolved, sorted)
		r.iterativeAuthChecks(resolved, r.mainlineOrder(other, resolved[stateKey{spec.MRoomPowerLevels, ""}]))
	}
	// Step 5: the unconflicted state map always wins.
	for k, id := range unconflicted {
		resolved[k] = r.events[id]
	}
	out := make([]gomatrixserverlib.PDU, 0, len(resolved))
	for _, p := range resolved {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b gomatrixserverlib.PDU) int {
		return cmp.Or(cmp.Compare(a.Type(), b.Type()), cmp.Compare(*a.StateKey(), *b.StateKey()))
	})
	return out, nil
}

// split divides the state sets (§"Unconflicted state map and conflicted
// state set"): a key is unconflicted only if every set has it with the same
// event. The conflicted state set is returned as event IDs.
func split(sets []map[stateKey]string) (map[stateKey]string, map[string]bool) {
	unconflicted := map[stateKey]string{}
	conflicted := map[string]bool{}
	seen := map[stateKey]bool{}
	for _, s := range sets {
		for k := range s {
			if seen[k] {
				continue
			}
			seen[k] = true
			id, same := s[k], true
			for _, o := range sets {
				if o[k] != id {
					same = false
					break
				}
			}
			if same {
				unconflicted[k] = id
				continue
			}
			for _, o := range sets {
				if v, ok := o[k]; ok {
					conflicted[v] = true
				}
			}
		}
	}
	return unconflicted, conflicted
}

func (r *resolver) isRej(id string) bool {
	v, ok := r.rejected[id]
	if !ok {
		v = r.isRejected(id)
		r.rejected[id] = v
	}
	return v
}
