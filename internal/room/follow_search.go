package room

import (
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/store"
)

// This file is the room engine's side of server-side search
// (Client-Server API §"Server Side Search"): the search index
// (internal/search) reads the stream of events through IndexableEvents and
// asks a Scope which hits a user may see. The index never decodes event
// records or judges visibility itself.

// Searchable is what the search index needs of one stored event.
type Searchable struct {
	NID, RoomNID uint64
	Type, Sender string
	// Body, Name and Topic are content.body of a message, content.name of
	// m.room.name and content.topic of m.room.topic; empty when absent.
	Body, Name, Topic string
	// Redacts is the NID of the event a redaction removes (0 otherwise).
	Redacts uint64
	// Redacted events, rejected events and outliers are never indexed.
	Skip bool
}

// IndexableEvents calls fn for each event with after < NID ≤ upTo, in
// stream order, reading only the fields search needs.
func IndexableEvents(tx *store.Tx, after, upTo uint64, fn func(Searchable) error) error {
	return eachEventIn(tx, after, upTo, func(nid uint64, v []byte) error {
		ev, err := decodeEvent(nid, v)
		if err != nil {
			return err
		}
		s := Searchable{NID: nid, RoomNID: ev.RoomNID, Skip: ev.Flags&(flagRedacted|flagRejected|flagOutlier) != 0}
		r := gjson.GetManyBytes(ev.JSON, "type", "sender", "content.body", "content.name", "content.topic", "redacts", "content.redacts")
		s.Type, s.Sender = r[0].String(), r[1].String()
		switch s.Type {
		case "m.room.message":
			s.Body = r[2].String()
		case "m.room.name":
			s.Name = r[3].String()
		case "m.room.topic":
			s.Topic = r[4].String()
		case "m.room.redaction":
			target := r[5].String()
			if target == "" {
				target = r[6].String()
			}
			s.Redacts = eventNID(tx, target)
		}
		return fn(s)
	})
}

// Scope answers, inside one read transaction, what one user may find: the
// rooms they have a membership in and which events of them they may see
// by the history visibility rules.
type Scope struct {
	e       *Engine
	tx      *store.Tx
	user    string
	session string
	rooms   map[uint64]string // roomNID → room ID
	history map[uint64]*history
}

// SearchScope runs fn with the user's scope in one read transaction; fn
// may read other buckets (the search index) through the same tx.
func (e *Engine) SearchScope(userID, session string, fn func(tx *store.Tx, s *Scope) error) error {
	return e.db.View(func(tx *store.Tx) error {
		s := &Scope{e: e, tx: tx, user: userID, session: session, rooms: map[uint64]string{}, history: map[uint64]*history{}}
		for _, m := range memberships(tx, userID) {
			info, err := roomInfoByNID(tx, m.RoomNID)
			if err != nil {
				return err
			}
			s.rooms[m.RoomNID] = info.ID
		}
		return fn(tx, s)
	})
}

// Rooms are the rooms the user has or had a membership in, by NID.
func (s *Scope) Rooms() map[uint64]string { return s.rooms }

// CanSee reports whether the user may see the event at nid in a room.
func (s *Scope) CanSee(roomNID, nid uint64) bool {
	if _, ok := s.rooms[roomNID]; !ok {
		return false
	}
	h := s.history[roomNID]
	if h == nil {
		h = s.e.history(s.tx, s.user, roomNID)
		s.history[roomNID] = h
	}
	return h.canSee(nid)
}

// CanMatch reports whether a search may match the event at nid for the
// user: they may see it, and its content is not erased for them
// (read_erase.go), since a match would tell them what it said.
func (s *Scope) CanMatch(roomNID, nid uint64) bool {
	if !s.CanSee(roomNID, nid) {
		return false
	}
	if !s.e.erased.some.Load() {
		return true // nobody asked for erasure: no event need be read
	}
	b := s.tx.Get(store.Events, store.PutU64(nid))
	if b == nil {
		return false
	}
	ev, err := decodeEvent(nid, b)
	if err != nil {
		return false
	}
	r := gjson.GetManyBytes(ev.JSON, "sender", "state_key")
	return !s.e.erasedFor(s.tx, ev, s.user, r[0].String(), r[1].Exists())
}

// Event returns the event at nid as the user is served it, or false when
// it is gone, rejected, redacted, not visible or erased for the user: a
// hit the index has not yet dropped must still not be shown.
func (s *Scope) Event(nid uint64) (*ClientEvent, bool) {
	ev, err := s.e.loadEvent(s.tx, nid)
	if err != nil || ev.Flags&(flagRedacted|flagRejected|flagOutlier) != 0 || !s.CanSee(ev.RoomNID, nid) ||
		s.e.erasedFor(s.tx, ev, s.user, string(ev.PDU.SenderID()), ev.PDU.StateKey() != nil) {
		return nil, false
	}
	ce := s.e.clientEvent(s.tx, ev, ClientView{Viewer: s.user, ViewerDevice: s.session, NowMs: nowMs()})
	return &ce, true
}

// Context returns up to before visible events older than nid and up to
// after newer ones (nearest first on each side), with the positions that
// /messages continues from (Client-Server API §"Server Side Search":
// event_context).
func (s *Scope) Context(roomNID, nid uint64, before, after int) (evBefore, evAfter []ClientEvent, start, end uint64) {
	evBefore, evAfter = []ClientEvent{}, []ClientEvent{}
	start, end = nid-1, nid
	view := ClientView{Viewer: s.user, ViewerDevice: s.session, NowMs: nowMs()}
	collect := func(from uint64, dir Direction, n int, out *[]ClientEvent, edge *uint64) {
		if n <= 0 {
			return
		}
		scanTimeline(s.tx, roomNID, from, dir, func(pos, nid uint64) (bool, error) {
			if len(*out) >= n {
				return false, nil
			}
			if !s.CanSee(roomNID, pos) {
				return true, nil
			}
			ev, err := s.e.loadEvent(s.tx, nid)
			if err != nil {
				return false, err
			}
			*edge = pos
			if dir == Backward {
				*edge = pos - 1
			}
			if ev.Flags&flagRejected == 0 {
				*out = append(*out, s.e.clientEvent(s.tx, ev, view))
			}
			return true, nil
		})
	}
	collect(nid-1, Backward, before, &evBefore, &start)
	collect(nid, Forward, after, &evAfter, &end)
	return evBefore, evAfter, start, end
}

// Profile returns the sender's display name and avatar as they were when
// the event at nid was sent: the m.room.member state before it.
func (s *Scope) Profile(nid uint64) (userID, displayName, avatarURL string, ok bool) {
	ev, err := s.e.loadEvent(s.tx, nid)
	if err != nil {
		return "", "", "", false
	}
	userID = string(ev.PDU.SenderID())
	state, err := stateAt(s.tx, ev.StateBefore)
	if err != nil {
		return userID, "", "", false
	}
	mnid, found := state[stateKey("m.room.member", userID)]
	if !found {
		return userID, "", "", false
	}
	b := s.tx.Get(store.Events, store.PutU64(mnid))
	if b == nil {
		return userID, "", "", false
	}
	mev, err := decodeEvent(mnid, b)
	if err != nil {
		return userID, "", "", false
	}
	r := gjson.GetManyBytes(mev.JSON, "content.displayname", "content.avatar_url")
	return userID, r[0].String(), r[1].String(), true
}
