package room

import (
	"math"

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
// after, with the state at the last returned event, as served to the
// client session session (see Messages).
func (e *Engine) Context(userID, session, roomID, eventID string, limit int, f EventFilter) (*EventContext, error) {
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
		if bp, err = e.Messages(userID, session, roomID, nid-1, 0, Backward, f); err != nil {
			return nil, err
		}
	}
	if after > 0 {
		f.Limit = after
		if ap, err = e.Messages(userID, session, roomID, nid, 0, Forward, f); err != nil {
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
		out.Event = e.clientEvent(tx, target, ClientView{Viewer: userID, ViewerDevice: session, NowMs: nowMs()})
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

// RelationsRequest asks for the events relating to one event
// (Client-Server API §"Relationships": GET /relations).
type RelationsRequest struct {
	UserID, RoomID, ParentID string
	RelType, EventType       string // empty matches any
	// From and To are pagination positions; From 0 starts at the newest
	// (dir b) or oldest (dir f) relation, To 0 is unbounded.
	From, To uint64
	Dir      Direction
	Limit    int
}

// Relations returns one page of relations and the position to continue
// from (0 when there is no more).
func (e *Engine) Relations(req RelationsRequest) ([]ClientEvent, uint64, error) {
	out := []ClientEvent{}
	var next uint64
	limit := req.Limit
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	from := req.From
	if from == 0 && req.Dir == Backward {
		from = math.MaxUint64 - 1 // past every position
	}
	err := e.db.View(func(tx *store.Tx) error {
		info, h, err := e.readable(tx, req.UserID, req.RoomID)
		if err != nil {
			// relations.yaml answers 404 also when the user may not read
			// the parent event.
			return matrixerr.NotFound("event not found")
		}
		pnid := eventNID(tx, req.ParentID)
		if pnid == 0 || !h.canSee(pnid) {
			return matrixerr.NotFound("event not found")
		}
		prefix := store.NIDKey(info.NID, store.PutU64(pnid))
		return scan(tx, store.Relations, prefix, from, req.Dir, func(nid uint64, relType []byte) (bool, error) {
			if req.To != 0 && ((req.Dir == Backward && nid <= req.To) || (req.Dir == Forward && nid > req.To)) {
				return false, nil
			}
			if len(out) >= limit {
				// The token is a point: backward pages include it, forward
				// pages start after it.
				next = nid
				if req.Dir == Forward {
					next = nid - 1
				}
				return false, nil
			}
			if (req.RelType != "" && string(relType) != req.RelType) || !h.canSee(nid) {
				return true, nil
			}
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return false, err
			}
			if req.EventType == "" || ev.PDU.Type() == req.EventType {
				out = append(out, e.clientEvent(tx, ev, ClientView{Viewer: req.UserID, NowMs: nowMs()}))
			}
			return true, nil
		})
	})
	return out, next, err
}
