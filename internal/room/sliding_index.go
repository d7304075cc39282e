package room

import (
	"sync"
	"sync/atomic"

	"github.com/hearth-chat/hearth/internal/store"
)

// roomIndex keeps, per room, what an incremental sliding sync request asks
// of every room of the user's (MSC4186 §"Lists": the activity order;
// §"Extensions" e2ee: device_lists), so that such a request costs what
// changed since the last one rather than a read of each room's record: the
// room record's LastPos, and the position of the newest member event
// stored for the room.
//
// It is brought forward inside the caller's read transaction by walking
// the events stored at the positions it has not seen (the events bucket is
// keyed by position), so every answer is that transaction's snapshot's;
// no write path needs to know about it. Its zero value is ready.
type roomIndex struct {
	mu sync.Mutex
	// to: every event at a position ≤ to has been looked at.
	to uint64
	// from: member holds the member events at positions in (from, to].
	from uint64
	// last: roomNID → the room record's LastPos as of to, for rooms read
	// since; a room with an event after it is dropped and read again.
	last map[uint64]uint64
	// member: roomNID → the newest position in (from, to] of an
	// m.room.member event stored for the room (a backfilled or outlier
	// one counts at its stored position, above any timeline position it
	// was given).
	member map[uint64]uint64
}

// maxIndexWalk bounds the positions one request walks to bring the index
// forward; past it, starting afresh (each room's record read once more) is
// cheaper.
const maxIndexWalk = 4096

// roomPositions returns, as of tx's snapshot, the LastPos of each room of
// nids and the newest member-event position of each (0: none in
// (memberFrom, snapshot]). ok is false when the index is ahead of tx (a
// newer request moved it on meanwhile): the caller reads the store.
func (e *Engine) roomPositions(tx *store.Tx, nids []uint64) (last, member []uint64, memberFrom uint64, ok bool, err error) {
	ix := &e.index
	ix.mu.Lock()
	defer ix.mu.Unlock()
	s := tx.Pos()
	if s < ix.to {
		return nil, nil, 0, false, nil
	}
	if ix.last == nil || s-ix.to > maxIndexWalk {
		ix.to, ix.from, ix.last, ix.member = s, s, map[uint64]uint64{}, map[uint64]uint64{}
	}
	if s > ix.to {
		if err := ix.walk(tx, s); err != nil {
			return nil, nil, 0, false, err
		}
	}
	last, member = make([]uint64, len(nids)), make([]uint64, len(nids))
	for i, nid := range nids {
		p, known := ix.last[nid]
		if !known {
			var good bool
			if p, good = roomLastPos(tx, nid); !good {
				p = 0 // a missing record: the caller's own read reports it
			} else {
				ix.last[nid] = p
			}
		}
		last[i], member[i] = p, ix.member[nid]
	}
	return last, member, ix.from, true, nil
}

// walk looks at the events stored at positions in (ix.to, s]: a room with
// one has a new LastPos (or may: an outlier does not move it) and, for a
// member event, a new member position.
func (ix *roomIndex) walk(tx *store.Tx, s uint64) error {
	err := eachEventIn(tx, ix.to, s, func(pos uint64, v []byte) error {
		ev, err := decodeEvent(pos, v)
		if err != nil {
			return err
		}
		delete(ix.last, ev.RoomNID)
		if typ, _ := jsonString(jsonMember(ev.JSON, "type")); typ == "m.room.member" {
			ix.member[ev.RoomNID] = pos
		}
		return nil
	})
	if err != nil {
		return err
	}
	ix.to = s
	return nil
}

// roomRecordRead, when set (by tests), is told of each read of a room's
// record, so a test can check which rooms a request looked at.
var roomRecordRead atomic.Pointer[func(nid uint64)]

func noteRoomRecordRead(nid uint64) {
	if f := roomRecordRead.Load(); f != nil {
		(*f)(nid)
	}
}
