package room

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Event returns one event the user may see (GET /rooms/{id}/event/{eventId}).
func (e *Engine) Event(userID, roomID, eventID string) (*ClientEvent, error) {
	return e.EventForSession(userID, "", roomID, eventID)
}

// EventForSession is Event as served to one client session of the user,
// which sees unsigned.transaction_id on the events it sent.
func (e *Engine) EventForSession(userID, session, roomID, eventID string) (*ClientEvent, error) {
	var out *ClientEvent
	err := e.db.View(func(tx *store.Tx) error {
		info, h, err := e.readable(tx, userID, roomID)
		if err != nil {
			// The spec answers 404 both for an unknown event and for one
			// the user may not read.
			return matrixerr.NotFound("event not found")
		}
		nid := eventNID(tx, eventID)
		if nid == 0 || !h.canSee(nid) {
			return matrixerr.NotFound("event not found")
		}
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return err
		}
		if ev.RoomNID != info.NID || ev.Flags&flagRejected != 0 {
			return matrixerr.NotFound("event not found")
		}
		ce := e.clientEvent(tx, ev, ClientView{Viewer: userID, ViewerDevice: session, NowMs: nowMs()})
		out = &ce
		return nil
	})
	return out, err
}

// State returns the current state events of a room the user can see. A user
// who has left sees the state as of their leave.
func (e *Engine) State(userID, roomID string) ([]ClientEvent, error) {
	out := []ClientEvent{}
	err := e.eachVisibleState(userID, roomID, func(tx *store.Tx, ev *Event) bool {
		out = append(out, e.clientEvent(tx, ev, ClientView{Viewer: userID}))
		return true
	})
	return out, err
}

// StateEvent returns one piece of the state State would return.
func (e *Engine) StateEvent(userID, roomID, typ, sk string) (*ClientEvent, error) {
	var out *ClientEvent
	err := e.eachVisibleState(userID, roomID, func(tx *store.Tx, ev *Event) bool {
		if ev.PDU.Type() == typ && ev.PDU.StateKeyEquals(sk) {
			ce := e.clientEvent(tx, ev, ClientView{Viewer: userID})
			out = &ce
			return false
		}
		return true
	})
	if err == nil && out == nil {
		err = matrixerr.NotFound("state event not found")
	}
	return out, err
}

// eachVisibleState calls fn with each state event of the room as the user
// may see it, until fn returns false.
func (e *Engine) eachVisibleState(userID, roomID string, fn func(*store.Tx, *Event) bool) error {
	return e.db.View(func(tx *store.Tx) error {
		info, h, err := e.readable(tx, userID, roomID)
		if err != nil {
			return err
		}
		_, hi := h.bounds()
		nids, err := e.stateNIDsAt(tx, info, hi)
		if err != nil {
			return err
		}
		for _, nid := range nids {
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return err
			}
			if !fn(tx, ev) {
				return nil
			}
		}
		return nil
	})
}

// stateNIDsAt returns the NIDs of the room state after position pos (see
// stateMapAt).
func (e *Engine) stateNIDsAt(tx *store.Tx, info *Info, pos uint64) ([]uint64, error) {
	state, err := e.stateMapAt(tx, info, pos)
	if err != nil {
		return nil, err
	}
	out := make([]uint64, 0, len(state))
	for _, nid := range state {
		out = append(out, nid)
	}
	return out, nil
}

// stateMapAt returns the room state after position pos, by (type,
// state_key): the current state when pos is at or past the room's last
// event, otherwise the snapshot after the last timeline event at or before
// pos whose state is known. Backfilled history has no state here, and a
// room joined through another server has nothing before its join but the
// state the join brought (§"Joining Rooms"): when no earlier event has
// state, it is the state before the first later event that has.
func (e *Engine) stateMapAt(tx *store.Tx, info *Info, pos uint64) (map[string]uint64, error) {
	if pos >= info.LastPos {
		out := map[string]uint64{}
		err := eachCurrentState(tx, info.NID, "", func(typ, sk string, nid uint64) error {
			out[stateKey(typ, sk)] = nid
			return nil
		})
		return out, err
	}
	var found *Event
	after := false // found is the first event after pos: take the state before it
	stateful := func(_, nid uint64) (bool, error) {
		if b := tx.Get(store.Events, store.PutU64(nid)); len(b) == 0 || b[0]&flagStateless != 0 {
			return true, nil
		}
		ev, err := e.loadEvent(tx, nid)
		found = ev
		return false, err
	}
	if err := scanTimeline(tx, info.NID, pos, Backward, stateful); err != nil {
		return nil, err
	}
	if found == nil {
		after = true
		if err := scanTimeline(tx, info.NID, pos, Forward, stateful); err != nil {
			return nil, err
		}
	}
	if found == nil {
		return map[string]uint64{}, nil
	}
	state, err := stateAt(tx, found.StateBefore)
	if err != nil {
		return nil, err
	}
	if sk := found.PDU.StateKey(); sk != nil && !after && found.Flags&flagRejected == 0 {
		state[stateKey(found.PDU.Type(), *sk)] = found.NID
	}
	return state, nil
}

// Direction of pagination.
type Direction byte

const (
	Backward Direction = 'b'
	Forward  Direction = 'f'
)

// Page is a page of /messages (Client-Server API §"Syncing": /messages).
type Page struct {
	Chunk []ClientEvent
	State []ClientEvent // member events of the chunk's senders (lazy loading)
	// End is the position to continue from; 0 with More false means the
	// edge of the room was reached.
	End  uint64
	More bool
}

// EventFilter selects events by type and sender; empty lists match all.
type EventFilter struct {
	Types, NotTypes     []string
	Senders, NotSenders []string
	Limit               int
	LazyLoadMembers     bool
	ContainsURL         *bool
}

// Messages pages through a room's timeline from position from. Backward
// pages cover positions ≤ from, newest first; forward pages cover
// positions > from, oldest first. A to position of 0 means unbounded.
// session is the viewer's client session (account.Token.TxnScope), which
// alone sees unsigned.transaction_id on the events it sent.
func (e *Engine) Messages(userID, session, roomID string, from, to uint64, dir Direction, f EventFilter) (*Page, error) {
	page := &Page{Chunk: []ClientEvent{}, State: []ClientEvent{}}
	limit := f.Limit
	if limit <= 0 {
		limit = 10
	}
	if limit > 1000 {
		limit = 1000
	}
	err := e.db.View(func(tx *store.Tx) error {
		info, h, err := e.readable(tx, userID, roomID)
		if err != nil {
			return err
		}
		lo, hi := h.bounds()
		senders := map[string]bool{}
		view := ClientView{Viewer: userID, ViewerDevice: session, NowMs: nowMs()}
		err = scanTimeline(tx, info.NID, from, dir, func(pos, nid uint64) (bool, error) {
			if to != 0 && ((dir == Backward && pos <= to) || (dir == Forward && pos > to)) {
				return false, nil
			}
			if (dir == Backward && pos < lo) || (dir == Forward && pos > hi) {
				return false, nil // nothing further is visible
			}
			if !h.canSee(pos) {
				return true, nil
			}
			if len(page.Chunk) >= limit {
				page.More = true
				return false, nil
			}
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return false, err
			}
			page.End = pos
			if dir == Backward {
				page.End = pos - 1
			}
			if ev.Flags&flagRejected != 0 || !f.matches(ev) {
				return true, nil
			}
			page.Chunk = append(page.Chunk, e.clientEvent(tx, ev, view))
			senders[string(ev.PDU.SenderID())] = true
			return true, nil
		})
		if err != nil {
			return err
		}
		if f.LazyLoadMembers {
			for s := range senders {
				if nid := currentStateNID(tx, info.NID, "m.room.member", s); nid != 0 {
					ev, err := e.loadEvent(tx, nid)
					if err != nil {
						return err
					}
					page.State = append(page.State, e.clientEvent(tx, ev, view))
				}
			}
		}
		return nil
	})
	return page, err
}

// scanTimeline walks a room's timeline from a position in a direction,
// calling fn with each entry's position and event NID until fn returns
// false. The two are the same except for backfilled history, which is
// placed before the room's first event here (see ingest_backfill.go).
func scanTimeline(tx *store.Tx, roomNID, from uint64, dir Direction, fn func(pos, nid uint64) (bool, error)) error {
	return scan(tx, store.Timeline, store.PutU64(roomNID), from, dir, func(pos uint64, v []byte) (bool, error) {
		return fn(pos, timelineNID(pos, v))
	})
}

// timelineNID is the event NID of a timeline entry: its value if it has
// one, else its position.
func timelineNID(pos uint64, v []byte) uint64 {
	if len(v) == 8 {
		return store.U64(v)
	}
	return pos
}

// scan walks the keys prefix ‖ pos of a bucket from the point after
// position from: forward over pos > from, oldest first; backward over
// pos ≤ from, newest first. fn returns false to stop.
func scan(tx *store.Tx, bucket, prefix []byte, from uint64, dir Direction, fn func(pos uint64, v []byte) (bool, error)) error {
	c := tx.Cursor(bucket)
	start := append(append(make([]byte, 0, len(prefix)+8), prefix...), store.PutU64(from+1)...)
	k, v := c.Seek(start)
	if dir == Backward {
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	for k != nil && hasPrefix(k, prefix) {
		more, err := fn(store.U64(k[len(prefix):]), v)
		if err != nil || !more {
			return err
		}
		if dir == Forward {
			k, v = c.Next()
		} else {
			k, v = c.Prev()
		}
	}
	return nil
}

// Allows reports whether the filter admits an event of this type and
// sender (Client-Server API §"Filtering": types and not_types with '*'
// wildcards, senders and not_senders; the not_ lists win).
func (f *EventFilter) Allows(typ, sender string) bool {
	if len(f.Types) > 0 && !matchAny(f.Types, typ) {
		return false
	}
	if matchAny(f.NotTypes, typ) {
		return false
	}
	if len(f.Senders) > 0 && !slices.Contains(f.Senders, sender) {
		return false
	}
	return !slices.Contains(f.NotSenders, sender)
}

func (f *EventFilter) matches(ev *Event) bool {
	if !f.Allows(ev.PDU.Type(), string(ev.PDU.SenderID())) {
		return false
	}
	if f.ContainsURL != nil {
		var c struct {
			URL *string `json:"url"`
		}
		json.Unmarshal(ev.PDU.Content(), &c)
		if (c.URL != nil) != *f.ContainsURL {
			return false
		}
	}
	return true
}

// matchAny matches event types with the spec's trailing '*' wildcard.
func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if p == s || (len(p) > 0 && p[len(p)-1] == '*' && len(s) >= len(p)-1 && s[:len(p)-1] == p[:len(p)-1]) {
			return true
		}
	}
	return false
}

func nowMs() int64 { return time.Now().UnixMilli() }
