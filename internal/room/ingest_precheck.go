package room

import (
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
	var out *AuthPrecheck
	e.db.View(func(tx *store.Tx) error {
		roomNID := store.U64(tx.Get(store.Rooms, []byte(pdu.RoomID().String())))
		if roomNID == 0 {
			return nil
		}
		ids := pdu.AuthEventIDs()
		auth := make([]gomatrixserverlib.PDU, 0, len(ids))
		for _, id := range ids {
			nid := eventNID(tx, id)
			if nid == 0 {
				return nil
			}
			ev, err := e.loadEvent(tx, nid)
			if err != nil || ev.Flags&flagRejected != 0 || ev.RoomNID != roomNID {
				return nil
			}
			auth = append(auth, ev.PDU)
		}
		out = &AuthPrecheck{auth: auth, err: e.allowedBy(pdu, auth)}
		return nil
	})
	return out
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
