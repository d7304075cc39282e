package federation

import (
	"context"
	"encoding/json"
	"net/url"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
)

// The room state that travels with an invite or a knock (Server-Server API
// §"Inviting to a room", spec v1.16, MSC4311): invite_room_state and
// knock_room_state hold the room's create event and every entry is a
// whole event in the room version's format. fclient's request and answer
// types only carry the older stripped form (type, state_key, sender,
// content), so these go out as they are.

// sendInviteV2 is PUT /_matrix/federation/v2/invite with state as given.
func (s *Service) sendInviteV2(ctx context.Context, server string, pdu gomatrixserverlib.PDU, state []json.RawMessage) (fclient.RespInviteV2, error) {
	if state == nil {
		state = []json.RawMessage{}
	}
	body := struct {
		RoomVersion     gomatrixserverlib.RoomVersion `json:"room_version"`
		Event           json.RawMessage               `json:"event"`
		InviteRoomState []json.RawMessage             `json:"invite_room_state"`
	}{pdu.Version(), pdu.JSON(), state}
	path := "/_matrix/federation/v2/invite/" + url.PathEscape(pdu.RoomID().String()) + "/" + url.PathEscape(pdu.EventID())
	var res fclient.RespInviteV2
	err := s.signedRequest(ctx, "PUT", server, path, body, &res)
	return res, err
}

// keepRoomState sets unsigned.<field> (invite_room_state on an invite this
// server countersigned, knock_room_state on a knock it sent) to the state
// events the room's server sent, as it sent them: gomatrixserverlib keeps
// only the stripped fields, which would drop the create event's
// origin_server_ts, hashes and signatures that clients and later checks
// rely on. Entries that are no state event (not an object with a type and
// a state key) are another server's garbage and left out, so that clients
// get events only in their stripped state.
func keepRoomState(pdu gomatrixserverlib.PDU, field string, state []json.RawMessage) error {
	kept := []json.RawMessage{}
	for _, raw := range state {
		var ev struct {
			Type     string  `json:"type"`
			StateKey *string `json:"state_key"`
		}
		if json.Unmarshal(raw, &ev) == nil && ev.Type != "" && ev.StateKey != nil {
			kept = append(kept, raw)
		}
	}
	return pdu.SetUnsignedField(field, kept)
}
