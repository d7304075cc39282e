package room

import (
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// EventContext is the result of /context (Client-Server API §"Retrieving
// events around a given event").
type EventContext struct {
	Event         ClientEvent
	Before, After []ClientEvent
	Start, End    uint64
	State         []ClientEvent
}

// Context returns up to limit events around eventID, half before and half
// after, with the state at the last returned event.
func (e *Engine) Context(userID, device, roomID, eventID string, limit int, f EventFilter) (*EventContext, error) {
	var nid uint64
	var target *Event
	err := e.db.View(func(tx *store.Tx) error {
		info, h, err := e.readable(tx, userID, roomID)
		if err != nil {
			return err
		}
		nid = eventNID(tx, eventID)
		if nid == 0 || !h.canSee(nid) {
			return matrixerr.NotFound("event not found")
		}
		target, err = e.loadEvent(tx, nid)
		if err != nil {
			return err
		}
		if target.RoomNID != info.NID {
			return matrixerr.NotFound("event not found")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	before, after := limit/2, limit-limit/2
	// Messages reads a limit of 0 as its default, but /context's limit is
	// the sum of both sides and 0 means none (event_context.yaml).
	bp, ap := &Page{Chunk: []ClientEvent{}}, &Page{Chunk: []ClientEvent{}}
	if before > 0 {
		f.Limit = before
		if bp, err = e.Messages(userID, device, roomID, nid-1, 0, Backward, f); err != nil {
			return nil, err
		}
	}
	if after > 0 {
		f.Limit = after
		if ap, err = e.Messages(userID, device, roomID, nid, 0, Forward, f); err != nil {
			return nil, err
		}
	}
	out := &EventContext{Before: bp.Chunk, After: ap.Chunk, Start: bp.End, End: ap.End, State: []ClientEvent{}}
	if len(bp.Chunk) == 0 {
		out.Start = nid - 1
	}
	if len(ap.Chunk) == 0 {
		out.End = nid
	}
	err = e.db.View(func(tx *store.Tx) error {
		out.Event = e.clientEvent(tx, target, ClientView{Viewer: userID, ViewerDevice: device, NowMs: nowMs()})
		info, err := roomInfoByNID(tx, target.RoomNID)
		if err != nil {
			return err
		}
		nids, err := e.stateNIDsAt(tx, info, out.End)
		if err != nil {
			return err
		}
		senders := map[string]bool{string(target.PDU.SenderID()): true}
		for _, l := range [][]ClientEvent{out.Before, out.After} {
			for _, ev := range l {
				senders[ev.Sender] = true
			}
		}
		for _, n := range nids {
			ev, err := e.loadEvent(tx, n)
			if err != nil {
				return err
			}
			if f.LazyLoadMembers && ev.PDU.Type() == "m.room.member" && !senders[*ev.PDU.StateKey()] {
				continue
			}
			out.State = append(out.State, e.clientEvent(tx, ev, ClientView{Viewer: userID}))
		}
		return nil
	})
	return out, err
}

// Relations returns events relating to parent (GET /relations), newest
// first for dir b, optionally of one rel_type and event type, paginated by
// position.
func (e *Engine) Relations(userID, roomID, parentID, relType, eventType string, from uint64, dir Direction, limit int) ([]ClientEvent, uint64, error) {
	out := []ClientEvent{}
	var next uint64
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	err := e.db.View(func(tx *store.Tx) error {
		info, h, err := e.readable(tx, userID, roomID)
		if err != nil {
			// relations.yaml answers 404 also when the user may not read
			// the parent event.
			return matrixerr.NotFound("event not found")
		}
		pnid := eventNID(tx, parentID)
		if pnid == 0 || !h.canSee(pnid) {
			return matrixerr.NotFound("event not found")
		}
		prefix := store.NIDKey(info.NID, store.PutU64(pnid))
		c := tx.Cursor(store.Relations)
		var k, v []byte
		if dir == Forward {
			k, v = c.Seek(append(append([]byte(nil), prefix...), store.PutU64(from+1)...))
		} else {
			start := from
			if start == 0 {
				start = ^uint64(0) - 1
			}
			k, v = c.Seek(append(append([]byte(nil), prefix...), store.PutU64(start+1)...))
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		for k != nil && hasPrefix(k, prefix) {
			nid := store.U64(k[16:])
			if len(out) >= limit {
				// The token is a point: backward pages include it, forward
				// pages start after it.
				next = nid
				if dir == Forward {
					next = nid - 1
				}
				break
			}
			if (relType == "" || string(v) == relType) && h.canSee(nid) {
				ev, err := e.loadEvent(tx, nid)
				if err != nil {
					return err
				}
				if eventType == "" || ev.PDU.Type() == eventType {
					out = append(out, e.clientEvent(tx, ev, ClientView{Viewer: userID, NowMs: nowMs()}))
				}
			}
			if dir == Forward {
				k, v = c.Next()
			} else {
				k, v = c.Prev()
			}
		}
		return nil
	})
	return out, next, err
}
