package room

import (
	"fmt"
	"slices"

	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/store"
)

// Outbound is one event the federation queue must send, and where
// (Server-Server API §"Transactions": a server sends the events it
// originates to every other server in the room).
type Outbound struct {
	NID    uint64
	RoomID string
	// Destinations are the other servers in the room at the event (the
	// servers with a joined member before or after it, to which Server-
	// Server API §"Transactions" sends a room's PDUs): the servers joined
	// since before it, plus, for a member event that ends a join (leave,
	// kick, ban), the target's server, so a remote user learns of their
	// own departure. An invited server is not in the
	// room: it learns of its invite through /invite alone, and a strict
	// server refuses room events for rooms it has no member in.
	Destinations []string
	// Joined is set for a local user's join (not a profile change): the
	// user whose device list the destinations must now hear of
	// (Server-Server API §"Device Management").
	Joined string
	// Delivered marks an event the room's servers have already (our join
	// through send_join, which the resident server relays): it is listed
	// for Joined alone and must not be sent.
	Delivered bool
}

// OutboundEvents calls fn for each timeline event with after < NID ≤ upTo,
// in stream order, that this server must send over federation: the ones
// it created, and the ones it accepted for another server through a
// membership handshake (send_join, send_leave, send_knock), which the
// resident server relays to the rest of the room. Rooms without other
// servers yield nothing.
func (e *Engine) OutboundEvents(tx *store.Tx, after, upTo uint64, fn func(Outbound) error) error {
	servers := map[uint64]map[string]uint64{} // roomNID → joined server → since when, re-read after member events
	roomIDs := map[uint64]string{}
	return eachEventIn(tx, after, upTo, func(nid uint64, v []byte) error {
		ev, err := decodeEvent(nid, v)
		if err != nil {
			return err
		}
		if ev.Flags&(flagRejected|flagOutlier|flagHistorical) != 0 {
			return nil
		}
		r := gjson.GetManyBytes(ev.JSON, "sender", "type", "state_key")
		if serverOf(r[0].String()) != string(e.serverName) && ev.Flags&flagRelay == 0 {
			return nil
		}
		if r[1].String() == "m.room.member" {
			delete(servers, ev.RoomNID)
		}
		joined, ok := servers[ev.RoomNID]
		if !ok {
			joined = e.joinedSince(tx, ev.RoomNID)
			servers[ev.RoomNID] = joined
		}
		// A server that joined after the event was not in the room at it:
		// it gets the room from its join on (send_join's state, then
		// backfill), not a replay of older events, which a listing that
		// runs late (after a restart, or after events that went nowhere)
		// would otherwise send it.
		var dests []string
		for s, since := range joined {
			// A relayed membership event goes to the rest of the room,
			// not back to the server that made it.
			if since <= nid && (ev.Flags&flagRelay == 0 || s != serverOf(r[0].String())) {
				dests = append(dests, s)
			}
		}
		slices.Sort(dests)
		if r[1].String() == "m.room.member" {
			if s := serverOf(r[2].String()); s != string(e.serverName) && !slices.Contains(dests, s) && e.wasJoined(tx, ev) {
				dests = append(dests, s)
			}
		}
		// Server ACLs: never send to a denied server (state_acl.go), except the
		// ACL event itself, which goes by the ACL before it so that the
		// servers it newly denies learn that they are denied.
		if r[1].String() == "m.room.server_acl" && r[2].String() == "" {
			dests = e.aclFilterBefore(tx, ev, dests)
		} else {
			dests = e.aclFilter(tx, ev.RoomNID, dests)
		}
		if len(dests) == 0 {
			return nil
		}
		roomID, ok := roomIDs[ev.RoomNID]
		if !ok {
			info, err := roomInfoByNID(tx, ev.RoomNID)
			if err != nil {
				return err
			}
			roomID, roomIDs[ev.RoomNID] = info.ID, info.ID
		}
		o := Outbound{NID: nid, RoomID: roomID, Destinations: dests, Delivered: ev.Flags&flagDelivered != 0}
		if r[1].String() == "m.room.member" && r[2].String() == r[0].String() && serverOf(r[0].String()) == string(e.serverName) &&
			gjson.GetBytes(ev.JSON, "content.membership").String() == "join" && !e.wasJoined(tx, ev) {
			o.Joined = r[0].String()
		}
		if err := fn(o); err != nil {
			return err
		}
		return nil
	})
}

// wasJoined reports whether the state a member event replaced was a join
// of its target: the target's server was in the room before the event.
func (e *Engine) wasJoined(tx *store.Tx, ev *Event) bool {
	prev := e.replaced(tx, ev)
	return prev != nil && gjson.GetBytes(prev.JSON, "content.membership").String() == "join"
}

// aclFilterBefore filters servers by the server ACL in force before ev
// (none: every server is allowed).
func (e *Engine) aclFilterBefore(tx *store.Tx, ev *Event, servers []string) []string {
	prev := e.replaced(tx, ev)
	if prev == nil {
		return servers
	}
	acl := parseACL([]byte(gjson.GetBytes(prev.JSON, "content").Raw))
	return acl.filter(servers)
}

// replaced is the state event ev replaced, or nil.
func (e *Engine) replaced(tx *store.Tx, ev *Event) *Event {
	if ev.Replaces == 0 {
		return nil
	}
	b := tx.Get(store.Events, store.PutU64(ev.Replaces))
	if b == nil {
		return nil
	}
	prev, err := decodeEvent(ev.Replaces, b)
	if err != nil {
		return nil
	}
	return prev
}

// joinedSince maps each server other than this one with a joined member
// in the room's current state to the stream position since which it has
// had one: the earliest join among its joined members.
func (e *Engine) joinedSince(tx *store.Tx, roomNID uint64) map[string]uint64 {
	out := map[string]uint64{}
	eachCurrentState(tx, roomNID, "m.room.member\x00", func(_, sk string, nid uint64) error {
		s := serverOf(sk)
		if s == string(e.serverName) {
			return nil
		}
		if m := membershipIn(tx, sk, roomNID); m.Membership == "join" {
			if since, ok := out[s]; !ok || m.Pos < since {
				out[s] = m.Pos
			}
		}
		return nil
	})
	return out
}

// joinedServers lists the servers other than this one with a joined
// member in the room's current state.
func (e *Engine) joinedServers(tx *store.Tx, roomNID uint64) []string {
	seen := map[string]bool{string(e.serverName): true}
	var out []string
	eachCurrentState(tx, roomNID, "m.room.member\x00", func(_, sk string, nid uint64) error {
		s := serverOf(sk)
		if seen[s] {
			return nil
		}
		if membershipIn(tx, sk, roomNID).Membership == "join" {
			seen[s] = true
			out = append(out, s)
		}
		return nil
	})
	return out
}

// EventJSON returns the stored JSON of an event by NID, as it is sent over
// federation (redacted if it was redacted since).
func (e *Engine) EventJSON(tx *store.Tx, nid uint64) ([]byte, error) {
	b := tx.Get(store.Events, store.PutU64(nid))
	if b == nil {
		return nil, fmt.Errorf("room: event %d missing", nid)
	}
	ev, err := decodeEvent(nid, b)
	if err != nil {
		return nil, err
	}
	return ev.JSON, nil
}
