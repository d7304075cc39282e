package room

import (
	"maps"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// Room states as the ingest of other servers' events needs them: the
// state before an event whose prev events are not the room's head, the
// state after a stored event, and moving the current state to another.

// roomState is a room state, by (type, state_key) → event NID. It is
// read lazily: the room's current state from the state bucket, a stored
// snapshot when first needed in full.
type roomState struct {
	nids     map[string]uint64 // nil until loaded
	snapshot uint64            // the stored snapshot, 0 when not stored yet
	roomNID  uint64
	current  bool // the room's current state (info.Snapshot)
	// parent, key and nid describe a state not stored yet as one entry
	// over a stored snapshot, so it is written as a delta.
	parent uint64
	key    string
	nid    uint64
}

func (s *roomState) lookup(tx *store.Tx, key string) (uint64, error) {
	if s.nids == nil && s.current {
		return store.U64(tx.Get(store.State, store.NIDKey(s.roomNID, []byte(key)))), nil
	}
	if err := s.load(tx); err != nil {
		return 0, err
	}
	return s.nids[key], nil
}

func (s *roomState) load(tx *store.Tx) error {
	if s.nids != nil {
		return nil
	}
	nids, err := stateAt(tx, s.snapshot)
	s.nids = nids
	return err
}

func (s *roomState) same(tx *store.Tx, o *roomState) (bool, error) {
	if s == o || (s.snapshot != 0 && s.snapshot == o.snapshot) {
		return true, nil
	}
	if err := s.load(tx); err != nil {
		return false, err
	}
	if err := o.load(tx); err != nil {
		return false, err
	}
	return maps.Equal(s.nids, o.nids), nil
}

// stateAfter is the state after a stored event: the state before it plus
// the event itself if it is an accepted state event.
func (e *Engine) stateAfter(tx *store.Tx, ev *Event) (*roomState, error) {
	if sk := ev.PDU.StateKey(); sk != nil && ev.Flags&flagRejected == 0 {
		nids, err := stateAt(tx, ev.StateBefore)
		if err != nil {
			return nil, err
		}
		key := stateKey(ev.PDU.Type(), *sk)
		nids[key] = ev.NID
		return &roomState{nids: nids, parent: ev.StateBefore, key: key, nid: ev.NID}, nil
	}
	return &roomState{snapshot: ev.StateBefore}, nil
}

// stateBeforePrevs is the state before an event with the given prev
// events: the state after the only one, or the resolution of the states
// after each (§"Room State Resolution").
func (e *Engine) stateBeforePrevs(tx *store.Tx, info *Info, pdu gomatrixserverlib.PDU, prevs []*Event) (*roomState, error) {
	if len(prevs) == 0 {
		return &roomState{nids: map[string]uint64{}}, nil
	}
	var sets []*roomState
	for _, p := range prevs {
		s, err := e.stateAfter(tx, p)
		if err != nil {
			return nil, err
		}
		sets = append(sets, s)
	}
	return e.resolve(tx, info, sets)
}

// snapshotOf returns the snapshot NID holding s, writing one if needed.
func (e *Engine) snapshotOf(tx *store.Tx, info *Info, s *roomState) (uint64, error) {
	if s.snapshot != 0 || (s.nids != nil && len(s.nids) == 0) {
		return s.snapshot, nil
	}
	var err error
	if s.key != "" {
		s.snapshot, err = addSnapshot(tx, s.parent, s.key, s.nid)
	} else {
		s.snapshot, err = putFullSnapshot(tx, s.nids)
	}
	return s.snapshot, err
}

// setCurrentState moves the room's current state from old to next.
func (e *Engine) setCurrentState(tx *store.Tx, info *Info, old, next *roomState) error {
	if same, err := old.same(tx, next); err != nil || same {
		return err
	}
	if err := old.load(tx); err != nil {
		return err
	}
	keys := slices.Sorted(maps.Keys(next.nids))
	for _, k := range keys {
		nid := next.nids[k]
		if old.nids[k] == nid {
			continue
		}
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return err
		}
		if err := setCurrent(tx, info, ev.PDU, nid); err != nil {
			return err
		}
	}
	for k := range old.nids {
		if _, ok := next.nids[k]; !ok {
			if err := tx.Delete(store.State, store.NIDKey(info.NID, []byte(k))); err != nil {
				return err
			}
		}
	}
	snap, err := e.snapshotOf(tx, info, next)
	if err != nil {
		return err
	}
	info.Snapshot = snap
	return nil
}
