package room

import (
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/stateres"
	"github.com/hearth-chat/hearth/internal/store"
)

// resolve merges the states of branches of the room DAG with the room
// version's state resolution algorithm (Server-Server API §"Room State
// Resolution"). Identical states need no work.
//
// Our internal/stateres runs v2 (room versions 2–11) and v2.1 (room version 12):
// this gomatrixserverlib panics on v2.1 with conflicted power levels and its
// v2 can authorise an event against itself. Version 1 stays with
// gomatrixserverlib.
func (e *Engine) resolve(tx *store.Tx, info *Info, sets []*roomState) (*roomState, error) {
	if len(sets) == 1 {
		return sets[0], nil
	}
	conflict := false
	for _, s := range sets[1:] {
		same, err := sets[0].same(tx, s)
		if err != nil {
			return nil, err
		}
		conflict = conflict || !same
	}
	if !conflict {
		return sets[0], nil
	}
	loaded := map[uint64]gomatrixserverlib.PDU{}
	load := func(nid uint64) (gomatrixserverlib.PDU, error) {
		if p, ok := loaded[nid]; ok {
			return p, nil
		}
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return nil, err
		}
		loaded[nid] = ev.PDU
		return ev.PDU, nil
	}
	stateSets := make([][]gomatrixserverlib.PDU, len(sets))
	for i, s := range sets {
		if err := s.load(tx); err != nil {
			return nil, err
		}
		for _, nid := range s.nids {
			p, err := load(nid)
			if err != nil {
				return nil, err
			}
			stateSets[i] = append(stateSets[i], p)
		}
	}
	authEvents, err := e.authChains(tx, stateSets)
	if err != nil {
		return nil, err
	}
	isRejected := func(id string) bool {
		b := tx.Get(store.Events, store.PutU64(eventNID(tx, id)))
		return len(b) > 0 && b[0]&flagRejected != 0
	}
	resolved, err := resolveWith(info.Version, stateSets, authEvents, isRejected)
	if err != nil {
		return nil, err
	}
	out := &roomState{nids: make(map[string]uint64, len(resolved))}
	for _, p := range resolved {
		nid := eventNID(tx, p.EventID())
		if nid == 0 || p.StateKey() == nil {
			return nil, fmt.Errorf("room: state resolution returned unknown event %s", p.EventID())
		}
		out.nids[stateKey(p.Type(), *p.StateKey())] = nid
	}
	return out, nil
}

func resolveWith(version gomatrixserverlib.RoomVersion, sets [][]gomatrixserverlib.PDU, auth []gomatrixserverlib.PDU,
	isRejected gomatrixserverlib.IsRejected) (out []gomatrixserverlib.PDU, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("room: state resolution failed: %v", r)
		}
	}()
	ver, err := gomatrixserverlib.GetRoomVersion(version)
	if err != nil {
		return nil, err
	}
	if alg := ver.StateResAlgorithm(); alg == gomatrixserverlib.StateResV2 || alg == gomatrixserverlib.StateResV2_1 {
		return stateres.Resolve(version, sets, auth, isRejected)
	}
	return gomatrixserverlib.ResolveConflictsNew(version, sets, auth, userIDForSender, isRejected)
}

// authChains is the union of the full auth chains of every event in the
// state sets, plus the events themselves, which state resolution needs.
func (e *Engine) authChains(tx *store.Tx, sets [][]gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	seen := map[string]bool{}
	var out, queue []gomatrixserverlib.PDU
	for _, s := range sets {
		for _, p := range s {
			if !seen[p.EventID()] {
				seen[p.EventID()] = true
				queue = append(queue, p)
			}
		}
	}
	for len(queue) > 0 {
		p := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		out = append(out, p)
		for _, id := range p.AuthEventIDs() {
			if seen[id] {
				continue
			}
			seen[id] = true
			nid := eventNID(tx, id)
			if nid == 0 {
				continue // never received: resolution works with what is known
			}
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return nil, err
			}
			queue = append(queue, ev.PDU)
		}
	}
	return out, nil
}

// putFullSnapshot stores a whole state as a snapshot with no parent.
func putFullSnapshot(tx *store.Tx, nids map[string]uint64) (uint64, error) {
	s := &snapshot{entries: nids, size: uint32(len(nids))}
	nid, err := tx.NextID(store.Snapshots)
	if err != nil {
		return 0, err
	}
	return nid, tx.Put(store.Snapshots, store.PutU64(nid), s.encode())
}
