package room

import (
	"sync"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/store"
)

// Check 4 of Server-Server API §"Checks performed on receipt of a PDU"
// (the event is allowed by its own auth events) needs nothing but the
// event and its auth events, which for an inbound transaction's events
// are nearly always stored before it arrives (the create event, the power
// levels, the sender's membership). Run in the store's single writer it
// was about half of what ingesting a message cost there, one event after
// another, while the transaction's other events' signatures were being
// checked on every core. PrecheckAuth runs it beside those checks
// instead; ingest uses the answer only when the auth events it loads are
// the very objects the precheck was given (the same parsed events, from
// the event cache), so that gomatrixserverlib.Allowed, a function of the
// event and those objects only, would answer the same. Otherwise it runs
// the check itself, as before.

// AuthPrecheck is check 4 of one event, run ahead of its ingest.
type AuthPrecheck struct {
	auth []gomatrixserverlib.PDU
	err  error
}

// PrecheckAuth runs check 4 on pdu against its auth events as stored now;
// nil if any of them is not stored (or is rejected, or of another room:
// ingest has its own reasons then).
func (e *Engine) PrecheckAuth(pdu gomatrixserverlib.PDU) *AuthPrecheck {
	return e.NewAuthPrechecker().Check(pdu)
}

// AuthPrechecker is PrecheckAuth for the events of one inbound
// transaction: the auth events they cite are nearly always the same few
// (the create event, the power levels, the sender's membership), so each
// is looked up and loaded once per transaction rather than once per
// event, and an event whose auth events are all known needs no read
// transaction. Safe for concurrent use by the checking workers.
//
// The auth rules run once per question, not once per event: for an event
// the default rule decides (no state key, a type without rules of its
// own — those whose redaction keeps content, keepsContent, cover every
// type with its own rule) gomatrixserverlib.Allowed reads only the room,
// the sender, the event type and the auth events it is given, parsing
// the create, power levels and join rules content on every call (about
// 6 % of hs1's CPU while ingesting, docs/performance.md "Federation
// ingest: fifth round"). A "yes" for a room, sender, type and the very
// same auth event objects (this prechecker's own, read once) is the
// answer for the transaction's next event asking the same; refusals are
// asked again, so their errors stay the event's own.
// TestAuthPrecheckerAsksOncePerQuestion.
type AuthPrechecker struct {
	e *Engine

	mu      sync.Mutex
	rooms   map[string]uint64 // room ID → NID (0: not a room here)
	events  map[string]*Event // auth event ID → the stored event
	allowed map[allowedQuestion]bool
}

// allowedQuestion is what the default auth rule reads of an event (see
// AuthPrechecker); auth holds the auth event objects in the event's
// order, n of them.
type allowedQuestion struct {
	room, sender, typ string
	auth              [4]gomatrixserverlib.PDU
	n                 int
}

// question returns pdu's allowedQuestion over auth; ok is false for an
// event another rule decides, or with more auth events than it holds.
func question(pdu gomatrixserverlib.PDU, auth []gomatrixserverlib.PDU) (q allowedQuestion, ok bool) {
	if pdu.StateKey() != nil || keepsContent[pdu.Type()] || len(auth) > len(q.auth) {
		return q, false
	}
	q = allowedQuestion{room: pdu.RoomID().String(), sender: string(pdu.SenderID()), typ: pdu.Type(), n: len(auth)}
	copy(q.auth[:], auth)
	return q, true
}

// NewAuthPrechecker returns an AuthPrechecker with nothing read yet.
func (e *Engine) NewAuthPrechecker() *AuthPrechecker {
	return &AuthPrechecker{e: e, rooms: map[string]uint64{}, events: map[string]*Event{}, allowed: map[allowedQuestion]bool{}}
}

// Check is PrecheckAuth.
func (p *AuthPrechecker) Check(pdu gomatrixserverlib.PDU) *AuthPrecheck {
	roomID := pdu.RoomID().String()
	ids := pdu.AuthEventIDs()
	roomNID, evs := p.cached(roomID, ids)
	if evs == nil {
		// Something is not read yet: read it all, as one event's check did.
		p.e.db.View(func(tx *store.Tx) error {
			roomNID = store.U64(tx.Get(store.Rooms, []byte(roomID)))
			if roomNID == 0 {
				return nil
			}
			evs = make([]*Event, 0, len(ids))
			for _, id := range ids {
				nid := eventNID(tx, id)
				if nid == 0 {
					evs = nil
					return nil
				}
				ev, err := p.e.loadEvent(tx, nid)
				if err != nil {
					evs = nil
					return nil
				}
				evs = append(evs, ev)
			}
			return nil
		})
		p.mu.Lock()
		p.rooms[roomID] = roomNID
		for i, ev := range evs {
			p.events[ids[i]] = ev
		}
		p.mu.Unlock()
	}
	if roomNID == 0 || evs == nil {
		return nil
	}
	auth := make([]gomatrixserverlib.PDU, len(evs))
	for i, ev := range evs {
		if ev.Flags&flagRejected != 0 || ev.RoomNID != roomNID {
			return nil
		}
		auth[i] = ev.PDU
	}
	q, memo := question(pdu, auth)
	if memo {
		p.mu.Lock()
		yes := p.allowed[q]
		p.mu.Unlock()
		if yes {
			return &AuthPrecheck{auth: auth}
		}
	}
	err := p.e.allowedBy(pdu, auth)
	if memo && err == nil {
		p.mu.Lock()
		p.allowed[q] = true
		p.mu.Unlock()
	}
	return &AuthPrecheck{auth: auth, err: err}
}

// cached returns the room's NID and the auth events ids if all were read
// before (nil events otherwise).
func (p *AuthPrechecker) cached(roomID string, ids []string) (uint64, []*Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	roomNID, ok := p.rooms[roomID]
	if !ok {
		return 0, nil
	}
	evs := make([]*Event, len(ids))
	for i, id := range ids {
		if evs[i] = p.events[id]; evs[i] == nil {
			return roomNID, nil
		}
	}
	return roomNID, evs
}

// allowedByOwn is check 4: pdu allowed by its auth events auth, as pre
// answered it if pre was given exactly these events.
func (e *Engine) allowedByOwn(pdu gomatrixserverlib.PDU, auth []gomatrixserverlib.PDU, pre *AuthPrecheck) error {
	if pre != nil && sameObjects(pre.auth, auth) {
		return pre.err
	}
	return e.allowedBy(pdu, auth)
}

// sameObjects reports whether a and b hold the same parsed events (not
// merely the same IDs: a cached event may since have been redacted and
// parsed again), in the same order.
func sameObjects(a, b []gomatrixserverlib.PDU) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
