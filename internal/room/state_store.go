package room

import (
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// StateKey names one piece of room state: (event type, state_key).
func stateKey(typ, sk string) string { return typ + "\x00" + sk }

// currentStateNID returns the event NID of one piece of current state; 0 if unset.
func currentStateNID(tx *store.Tx, roomNID uint64, typ, sk string) uint64 {
	return store.U64(tx.Get(store.State, store.NIDKey(roomNID, []byte(stateKey(typ, sk)))))
}

// currentStateEvent loads one piece of current state; nil if unset.
func (e *Engine) currentStateEvent(tx *store.Tx, roomNID uint64, typ, sk string) (*Event, error) {
	nid := currentStateNID(tx, roomNID, typ, sk)
	if nid == 0 {
		return nil, nil
	}
	return e.loadEvent(tx, nid)
}

// eachCurrentState calls fn for every current state entry of the room whose
// type has the given prefix ("" for all).
func eachCurrentState(tx *store.Tx, roomNID uint64, typePrefix string, fn func(typ, sk string, nid uint64) error) error {
	prefix := store.NIDKey(roomNID, []byte(typePrefix))
	c := tx.Cursor(store.State)
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		typ, sk := splitStateKey(string(k[8:]))
		if err := fn(typ, sk, store.U64(v)); err != nil {
			return err
		}
	}
	return nil
}

func splitStateKey(k string) (typ, sk string) {
	for i := 0; i < len(k); i++ {
		if k[i] == 0 {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}

// authProvider loads the current state events gomatrixserverlib needs to
// authorise proto (create, power levels, join rules, the members involved).
func (e *Engine) authProvider(tx *store.Tx, roomNID uint64, proto *gomatrixserverlib.ProtoEvent) (*gomatrixserverlib.AuthEvents, error) {
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(proto)
	if err != nil {
		return nil, badEvent(err)
	}
	var pdus []gomatrixserverlib.PDU
	for _, t := range needed.Tuples() {
		ev, err := e.currentStateEvent(tx, roomNID, t.EventType, t.StateKey)
		if err != nil {
			return nil, err
		}
		if ev != nil {
			pdus = append(pdus, ev.PDU)
		}
	}
	return gomatrixserverlib.NewAuthEvents(pdus)
}

// Snapshots: the state of a room after each state event is a snapshot, kept
// as a delta over its parent. When a chain of deltas grows past a quarter
// of the state's size (and at least 16), the next snapshot is written whole,
// which keeps both the write cost per state event and the read cost of a
// historical state linear in the state size, amortised.
//
// Encoding: parent, chainLen, size, entry count, then (key, nid) pairs.
type snapshot struct {
	parent   uint64
	chainLen uint32
	size     uint32
	entries  map[string]uint64
}

func (s *snapshot) encode() []byte {
	w := recordWriter{b: make([]byte, 0, 20+len(s.entries)*48)}
	w.u64(s.parent)
	w.u32(s.chainLen)
	w.u32(s.size)
	w.u32(uint32(len(s.entries)))
	for k, nid := range s.entries {
		w.str(k)
		w.u64(nid)
	}
	return w.b
}

func decodeSnapshot(b []byte) (*snapshot, error) {
	r := recordReader{b: b}
	s := &snapshot{parent: r.u64(), chainLen: r.u32(), size: r.u32(), entries: map[string]uint64{}}
	for n := r.u32(); n > 0 && !r.bad; n-- {
		k := r.str()
		s.entries[k] = r.u64()
	}
	return s, r.err()
}

func getSnapshot(tx *store.Tx, nid uint64) (*snapshot, error) {
	b := tx.Get(store.Snapshots, store.PutU64(nid))
	if b == nil {
		return nil, fmt.Errorf("room: snapshot %d missing", nid)
	}
	return decodeSnapshot(b)
}

// stateAt materialises the full state of snapshot nid (0 is the empty state).
func stateAt(tx *store.Tx, nid uint64) (map[string]uint64, error) {
	var chain []*snapshot
	for nid != 0 {
		s, err := getSnapshot(tx, nid)
		if err != nil {
			return nil, err
		}
		chain = append(chain, s)
		if s.chainLen == 0 {
			break
		}
		nid = s.parent
	}
	out := map[string]uint64{}
	for i := len(chain) - 1; i >= 0; i-- {
		for k, v := range chain[i].entries {
			out[k] = v
		}
	}
	return out, nil
}

// addSnapshot records the state after setting key to eventNID on top of
// snapshot parent, and returns the new snapshot's NID.
func addSnapshot(tx *store.Tx, parent uint64, key string, eventNID uint64) (uint64, error) {
	s := &snapshot{parent: parent, entries: map[string]uint64{key: eventNID}}
	if parent != 0 {
		p, err := getSnapshot(tx, parent)
		if err != nil {
			return 0, err
		}
		s.chainLen, s.size = p.chainLen+1, p.size+1
		if _, ok := p.entries[key]; ok && p.chainLen == 0 {
			s.size = p.size
		}
		if s.chainLen >= 16 && s.chainLen >= s.size/4 {
			full, err := stateAt(tx, parent)
			if err != nil {
				return 0, err
			}
			full[key] = eventNID
			s = &snapshot{entries: full, size: uint32(len(full))}
		}
	} else {
		s.size = 1
	}
	nid, err := tx.NextID(store.Snapshots)
	if err != nil {
		return 0, err
	}
	return nid, tx.Put(store.Snapshots, store.PutU64(nid), s.encode())
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}
