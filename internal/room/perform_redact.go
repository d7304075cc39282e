package room

import (
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Redactions of local events (Client-Server API §"Redactions"): who may
// redact what, and the stored copy replaced by its redacted form.

// redactsTarget returns the event a redaction targets, wherever the room
// version keeps it.
func redactsTarget(pdu gomatrixserverlib.PDU) string {
	if r := pdu.Redacts(); r != "" {
		return r
	}
	return gjson.GetBytes(pdu.Content(), "redacts").String()
}

// checkRedaction applies the spec's rule that auth rules leave to servers:
// a redaction may be applied if the sender sent the original event or has
// the "redact" power level (Client-Server API §"Redactions", room v3+).
func (e *Engine) checkRedaction(tx *store.Tx, info *Info, ver gomatrixserverlib.IRoomVersion, req SendRequest) error {
	nid := eventNID(tx, req.Redacts)
	if nid == 0 {
		return matrixerr.NotFound("event to redact not found")
	}
	target, err := e.loadEvent(tx, nid)
	if err != nil {
		return err
	}
	if target.RoomNID != info.NID {
		return matrixerr.NotFound("event to redact not found")
	}
	if string(target.PDU.SenderID()) == req.Sender {
		return nil
	}
	pl, err := e.powerLevels(tx, info)
	if err != nil {
		return err
	}
	if pl.level(req.Sender) < pl.Redact {
		return matrixerr.Forbidden("you may not redact other users' events")
	}
	return nil
}

// applyRedaction replaces the stored target with its redacted form.
func (e *Engine) applyRedaction(tx *store.Tx, redaction gomatrixserverlib.PDU, redactionNID uint64) error {
	nid := eventNID(tx, redactsTarget(redaction))
	if nid == 0 {
		return nil // unknown target: nothing to redact yet
	}
	target, err := e.loadEvent(tx, nid)
	if err != nil {
		return err
	}
	if target.Flags&flagRedacted != 0 {
		return nil
	}
	// Redact a copy: Redact works in place, and target.PDU may be the
	// parsed event that the cache shares with readers.
	ver, err := gomatrixserverlib.GetRoomVersion(target.Version)
	if err != nil {
		return err
	}
	pdu, err := ver.NewEventFromTrustedJSONWithEventID(target.ID, target.JSON, false)
	if err != nil {
		return fmt.Errorf("room: parse event to redact: %w", err)
	}
	pdu.Redact()
	target.JSON = pdu.JSON()
	target.Flags |= flagRedacted
	target.RedactedBy = redactionNID
	if target.PDU.StateKey() != nil {
		// Its room's push facts may hold what it said (follow_push_facts.go).
		e.pushRooms.noteStateRedacted(target.RoomNID, redactionNID)
	}
	return tx.Put(store.Events, store.PutU64(nid), target.encode())
}
