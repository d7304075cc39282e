package federation

import (
	"encoding/json"
	"errors"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Events of a room a local user's join to is in flight. The resident
// server sends us the room's new events as soon as it has accepted our
// send_join, often before its answer is read and stored here: /send would
// find a room this server is not in and drop them, and an m.call.invite
// sent right after the join would never be seen. So while a join is in
// flight, /send holds the room's PDUs (bounded) and the join hands them to
// the usual receipt path (receivePDUs) once the room's state is stored; a
// join that fails drops them. Synapse queues PDUs for a joining room the
// same way. A PDU that arrives after the join is stored takes the usual
// path, with get_missing_events for any gap.

// The bounds on held PDUs: a resident server flooding a room being
// joined cannot grow memory without bound. Past them a PDU is refused in
// the /send answer; a later event's get_missing_events can still bring it.
const (
	maxHeldPerRoom = 100
	maxHeldBytes   = 8 << 20 // over all rooms: one full transaction body
)

var errHeldFull = errors.New("a join to this room is in progress and too many of its events are waiting for it")

// joins is the set of rooms a join is in flight for; its zero value is
// ready to use.
type joins struct {
	mu    sync.Mutex
	rooms map[string]*joiningRoom
	bytes int // of all held PDUs
}

// joiningRoom is one room being joined.
type joiningRoom struct {
	inFlight int // joins of local users to it not yet ended
	// version is the room's version, known once send_join goes out; a
	// held PDU is parsed with it, to answer /send with its event ID.
	version gomatrixserverlib.RoomVersion
	held    []heldPDU
}

// heldPDU is a PDU kept for the join, as received.
type heldPDU struct {
	origin spec.ServerName
	raw    json.RawMessage
}

// begin records a join to roomID going out. Each begin is paired with
// one end.
func (j *joins) begin(roomID string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.rooms == nil {
		j.rooms = map[string]*joiningRoom{}
	}
	r := j.rooms[roomID]
	if r == nil {
		r = &joiningRoom{}
		j.rooms[roomID] = r
	}
	r.inFlight++
}

// sendingJoin records the room's version as send_join goes out: from now
// on the resident server may send the room's events.
func (j *joins) sendingJoin(roomID string, version gomatrixserverlib.RoomVersion) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if r := j.rooms[roomID]; r != nil {
		r.version = version
	}
}

// hold keeps raw, a PDU of roomID from origin, if a join to roomID is in
// flight and past send_join. held reports whether it was taken care of:
// then eventID and err are the /send answer for it (err nil: accepted),
// or eventID is empty when raw is not even an event. When held is false
// the caller treats the PDU as it would without a join in flight.
func (j *joins) hold(roomID string, origin spec.ServerName, raw json.RawMessage) (eventID string, err error, held bool) {
	j.mu.Lock()
	r := j.rooms[roomID]
	var version gomatrixserverlib.RoomVersion
	if r != nil {
		version = r.version
	}
	j.mu.Unlock()
	if version == "" {
		return "", nil, false
	}
	// Parsed outside the lock; parsing checks the format and hash, and
	// gives the event ID for the answer. Signatures, origin and ACL are
	// checked when the join hands it over, as for any PDU.
	pdu, err := parseUntrusted(version, roomID, raw)
	if pdu == nil {
		return "", nil, true
	}
	if err != nil {
		return pdu.EventID(), err, true
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.rooms[roomID] != r {
		return "", nil, false // the join ended meanwhile
	}
	if len(r.held) >= maxHeldPerRoom || j.bytes+len(raw) > maxHeldBytes {
		return pdu.EventID(), errHeldFull, true
	}
	r.held = append(r.held, heldPDU{origin: origin, raw: raw})
	j.bytes += len(raw)
	return pdu.EventID(), nil, true
}

// end records that a join to roomID ended. If it joined, the held PDUs
// are returned, in the order they arrived, for the caller to hand to the
// receipt path now that the room's state is stored; later PDUs take the
// usual path. If it failed and no other join to the room is in flight,
// they are dropped.
func (j *joins) end(roomID string, joined bool) []heldPDU {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.rooms[roomID]
	if r == nil {
		return nil // another local user's join to it ended first, joined
	}
	r.inFlight--
	if !joined && r.inFlight > 0 {
		return nil
	}
	delete(j.rooms, roomID)
	for _, h := range r.held {
		j.bytes -= len(h.raw)
	}
	if !joined {
		return nil
	}
	return r.held
}
