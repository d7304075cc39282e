package room

import (
	"errors"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// What this server gives other servers about its rooms (Server-Server API
// §"Retrieving events", §"Backfilling", §"get_missing_events"). A server
// is served a room's events while it has a member in the room's current
// state; finer history visibility for servers is not applied.

// RoomVersion returns the version of a known room.
func (e *Engine) RoomVersion(roomID string) (gomatrixserverlib.RoomVersion, error) {
	var v gomatrixserverlib.RoomVersion
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err == nil {
			v = info.Version
		}
		return err
	})
	return v, err
}

// ServerInRoom reports whether server has a member event in the room's
// current state (of any membership: a server that left may still fetch
// the events up to its leave).
func (e *Engine) ServerInRoom(roomID, server string) bool {
	in := false
	e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return nil
		}
		return eachCurrentState(tx, info.NID, "m.room.member\x00", func(_, sk string, _ uint64) error {
			if serverOf(sk) == server {
				in = true
				return errStop
			}
			return nil
		})
	})
	return in
}

// JoinedServers lists the servers, this one included, with joined members.
func (e *Engine) JoinedServers(roomID string) ([]string, error) {
	var out []string
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		out = append([]string{string(e.serverName)}, e.joinedServers(tx, info.NID)...)
		return nil
	})
	return out, err
}

// PDU returns a stored event of the room for server, or M_NOT_FOUND (also
// for rejected events, which are never served, and events the room's
// history visibility keeps from server).
func (e *Engine) PDU(server, roomID, eventID string) (gomatrixserverlib.PDU, error) {
	var out gomatrixserverlib.PDU
	err := e.db.View(func(tx *store.Tx) error {
		ev, err := e.servable(tx, roomID, eventID)
		if err != nil {
			return err
		}
		if !e.serverCanSee(tx, ev.RoomNID, server, ev.NID) {
			return matrixerr.NotFound("unknown event")
		}
		out = e.servedPDU(tx, ev, server)
		return nil
	})
	return out, err
}

func (e *Engine) servable(tx *store.Tx, roomID, eventID string) (*Event, error) {
	info, err := roomInfo(tx, roomID)
	if err != nil {
		return nil, err
	}
	nid := eventNID(tx, eventID)
	if nid == 0 {
		return nil, matrixerr.NotFound("unknown event")
	}
	ev, err := e.loadEvent(tx, nid)
	if err != nil {
		return nil, err
	}
	if ev.RoomNID != info.NID || ev.Flags&flagRejected != 0 {
		return nil, matrixerr.NotFound("unknown event")
	}
	return ev, nil
}

// StateBefore returns the room state before an event and the auth chain
// of that state and of the event (for /state, /state_ids, /event_auth
// and send_join).
func (e *Engine) StateBefore(roomID, eventID string) (state, authChain []gomatrixserverlib.PDU, err error) {
	err = e.db.View(func(tx *store.Tx) error {
		ev, err := e.servable(tx, roomID, eventID)
		if err != nil {
			return err
		}
		if ev.Flags&flagStateless != 0 {
			return matrixerr.NotFound("the state at this event is not known here")
		}
		nids, err := stateAt(tx, ev.StateBefore)
		if err != nil {
			return err
		}
		for _, nid := range nids {
			s, err := e.loadEvent(tx, nid)
			if err != nil {
				return err
			}
			state = append(state, s.PDU)
		}
		authChain, err = e.authChainOf(tx, append(slices.Clone(state), ev.PDU))
		return err
	})
	return state, authChain, err
}

// AuthChain returns the full auth chain of an event (/event_auth).
func (e *Engine) AuthChain(roomID, eventID string) ([]gomatrixserverlib.PDU, error) {
	var out []gomatrixserverlib.PDU
	err := e.db.View(func(tx *store.Tx) error {
		ev, err := e.servable(tx, roomID, eventID)
		if err != nil {
			return err
		}
		out, err = e.authChainOf(tx, []gomatrixserverlib.PDU{ev.PDU})
		return err
	})
	return out, err
}

// authChainOf is the union of the auth chains of pdus: every event
// reached through auth_events, which may include some of pdus themselves
// (the create event is in the chain of every other state event).
func (e *Engine) authChainOf(tx *store.Tx, pdus []gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	var seeds []gomatrixserverlib.PDU
	seen := map[string]bool{}
	for _, p := range pdus {
		for _, id := range p.AuthEventIDs() {
			if seen[id] {
				continue
			}
			seen[id] = true
			if nid := eventNID(tx, id); nid != 0 {
				ev, err := e.loadEvent(tx, nid)
				if err != nil {
					return nil, err
				}
				seeds = append(seeds, ev.PDU)
			}
		}
	}
	return e.authChains(tx, [][]gomatrixserverlib.PDU{seeds})
}

// WalkBack returns up to limit events reached by following prev_events
// back from the given events, breadth first, newest first: /backfill
// (from included) and /get_missing_events (latest excluded, stopping at
// earliest and below minDepth). Events the room's history visibility
// keeps from server come as redacted copies: the server learns that they
// are there (without them its copy of the DAG would keep a hole it asks
// about again) but not what they say, as Synapse serves them and
// Complement's TestInboundCanReturnMissingEvents expects.
func (e *Engine) WalkBack(server, roomID string, from, stopAt []string, limit int, minDepth int64, includeFrom bool) ([]gomatrixserverlib.PDU, error) {
	var out []gomatrixserverlib.PDU
	err := e.db.View(func(tx *store.Tx) error {
		seen := map[string]bool{}
		for _, id := range stopAt {
			seen[id] = true
		}
		queue := slices.Clone(from)
		first := map[string]bool{}
		for _, id := range from {
			first[id] = true
		}
		for len(queue) > 0 && len(out) < limit {
			id := queue[0]
			queue = queue[1:]
			if seen[id] {
				continue
			}
			seen[id] = true
			ev, err := e.servable(tx, roomID, id)
			if err != nil {
				continue // unknown here: the walk ends on this branch
			}
			if ev.PDU.Depth() < minDepth {
				continue
			}
			if !first[id] || includeFrom {
				if e.serverCanSee(tx, ev.RoomNID, server, ev.NID) {
					out = append(out, e.servedPDU(tx, ev, server))
				} else if red := redactedCopy(ev.PDU); red != nil {
					out = append(out, red)
				}
			}
			queue = append(queue, ev.PDU.PrevEventIDs()...)
		}
		return nil
	})
	return out, err
}

// errStop ends a scan early; it never leaves the package.
var errStop = errors.New("stop")

// Template completes proto for an event another server will finish and
// sign (make_join, make_leave, make_knock): prev_events, depth and
// auth_events from the room's current state. It returns the event built
// and signed here, for the caller's auth check, and its auth events.
func (e *Engine) Template(proto *gomatrixserverlib.ProtoEvent) (gomatrixserverlib.PDU, []gomatrixserverlib.PDU, error) {
	var pdu gomatrixserverlib.PDU
	var auth []gomatrixserverlib.PDU
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, proto.RoomID)
		if err != nil {
			return err
		}
		ver, err := gomatrixserverlib.GetRoomVersion(info.Version)
		if err != nil {
			return err
		}
		proto.PrevEvents = slices.Clone(info.Extremities)
		proto.Depth = info.Depth + 1
		provider, err := e.authProvider(tx, info.NID, proto)
		if err != nil {
			return err
		}
		eb := ver.NewEventBuilderFromProtoEvent(proto)
		if err := eb.AddAuthEvents(provider); err != nil {
			return badEvent(err)
		}
		proto.AuthEvents = eb.AuthEvents
		if pdu, err = eb.Build(e.now(), e.serverName, e.keyID, e.key); err != nil {
			return badEvent(err)
		}
		for _, id := range pdu.AuthEventIDs() {
			if ev, err := e.servable(tx, info.ID, id); err == nil {
				auth = append(auth, ev.PDU)
			}
		}
		return nil
	})
	return pdu, auth, err
}

// CurrentStatePDU returns one piece of the room's current state; nil if
// unset or the room is unknown.
func (e *Engine) CurrentStatePDU(roomID, typ, sk string) gomatrixserverlib.PDU {
	var out gomatrixserverlib.PDU
	e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return nil
		}
		if ev, err := e.currentStateEvent(tx, info.NID, typ, sk); err == nil && ev != nil {
			out = ev.PDU
		}
		return nil
	})
	return out
}

// LocalJoinedMembers returns the member events of this server's joined
// users in the room (the users who can authorise a restricted join).
func (e *Engine) LocalJoinedMembers(roomID string) []gomatrixserverlib.PDU {
	var out []gomatrixserverlib.PDU
	e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return nil
		}
		return eachCurrentState(tx, info.NID, "m.room.member\x00", func(_, sk string, nid uint64) error {
			if serverOf(sk) != string(e.serverName) || membershipIn(tx, sk, info.NID).Membership != "join" {
				return nil
			}
			if ev, err := e.loadEvent(tx, nid); err == nil {
				out = append(out, ev.PDU)
			}
			return nil
		})
	})
	return out
}

// RoomOfEvent returns the room of a stored, servable event.
func (e *Engine) RoomOfEvent(eventID string) (string, error) {
	var roomID string
	err := e.db.View(func(tx *store.Tx) error {
		nid := eventNID(tx, eventID)
		if nid == 0 {
			return matrixerr.NotFound("unknown event")
		}
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return err
		}
		info, err := roomInfoByNID(tx, ev.RoomNID)
		if err == nil {
			roomID = info.ID
		}
		return err
	})
	return roomID, err
}

// HasLocalJoined reports whether a user of this server is joined to the
// room (false for rooms this server does not know).
func (e *Engine) HasLocalJoined(roomID string) bool {
	found := false
	e.db.View(func(tx *store.Tx) error {
		if info, err := roomInfo(tx, roomID); err == nil {
			found = e.localJoined(tx, info.NID)
		}
		return nil
	})
	return found
}

// localJoined reports whether a user of this server is joined to the
// room, stopping at the first.
func (e *Engine) localJoined(tx *store.Tx, roomNID uint64) bool {
	found := false
	eachCurrentState(tx, roomNID, "m.room.member\x00", func(_, sk string, _ uint64) error {
		if serverOf(sk) == string(e.serverName) && membershipIn(tx, sk, roomNID).Membership == "join" {
			found = true
			return errStop
		}
		return nil
	})
	return found
}

// ServersSharingRooms lists the other servers with joined members in any
// room a local user is joined to.
func (e *Engine) ServersSharingRooms() []string {
	var out []string
	e.db.View(func(tx *store.Tx) error {
		var rooms []uint64
		c := tx.Cursor(store.RoomInfo)
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if nid := store.U64(k); e.localJoined(tx, nid) {
				rooms = append(rooms, nid)
			}
		}
		out = e.serversIn(tx, rooms)
		return nil
	})
	return out
}

// serversIn is the union of the other servers joined to the rooms.
func (e *Engine) serversIn(tx *store.Tx, roomNIDs []uint64) []string {
	seen := map[string]bool{}
	var out []string
	for _, nid := range roomNIDs {
		for _, s := range e.joinedServers(tx, nid) {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}
