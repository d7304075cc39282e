package room

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Invites across servers (Server-Server API §"Inviting to a room"). An
// invite of a remote user is built here, countersigned by the invitee's
// server (PUT /invite), and then appended like any event. An invite of a
// local user to a room this server is not in arrives alone: it is kept as
// the user's membership in a room known only by its invite, with the
// stripped state the inviting server sent, until the user joins or
// declines through a server in the room.

// PrepareInvite builds and signs, without storing, the invite of a user
// on another server, with the room state that goes with it
// (invite_room_state).
func (e *Engine) PrepareInvite(req MembershipRequest) (gomatrixserverlib.PDU, []json.RawMessage, error) {
	var pdu gomatrixserverlib.PDU
	var state []json.RawMessage
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, req.RoomID)
		if err != nil {
			return err
		}
		if cur, _ := e.currentStateEvent(tx, info.NID, "m.room.member", req.Target); cur != nil {
			if m, _ := cur.PDU.Membership(); m == "join" {
				return matrixerr.Forbidden(req.Target + " is already in the room")
			}
		}
		content := memberContent(req, "invite")
		b, _ := json.Marshal(content)
		target := req.Target
		if pdu, err = e.build(tx, info, SendRequest{Sender: req.Sender, RoomID: info.ID, Type: "m.room.member",
			StateKey: &target, Content: b}); err != nil {
			return err
		}
		state = e.roomStateForRemote(tx, info, req.Sender)
		return nil
	})
	return pdu, state, err
}

// StrippedState is the room state another server's invitee or knocker is
// shown (invite_room_state, knock_room_state), plus member's member event
// if member is not empty.
func (e *Engine) StrippedState(roomID, member string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	err := e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err == nil {
			out = e.roomStateForRemote(tx, info, member)
		}
		return err
	})
	return out, err
}

// roomStateForRemote lists the state events of strippedTypes (and
// member's member event) as whole events: since spec v1.16 (MSC4311) the
// state that goes with an invite or a knock over federation must hold the
// create event, and every entry must be an event in the room version's
// format, so the receiving server can check it.
func (e *Engine) roomStateForRemote(tx *store.Tx, info *Info, member string) []json.RawMessage {
	var out []json.RawMessage
	add := func(typ, sk string) {
		if ev, _ := e.currentStateEvent(tx, info.NID, typ, sk); ev != nil {
			out = append(out, json.RawMessage(ev.PDU.JSON()))
		}
	}
	for _, typ := range strippedTypes {
		add(typ, "")
	}
	if member != "" {
		add("m.room.member", member)
	}
	return out
}

// strippedTypes are the state events stripped state carries.
var strippedTypes = []string{"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
	"m.room.canonical_alias", "m.room.encryption", "m.room.topic"}

// StoreMembershipOutlier keeps a member event of a local user for a room
// this server is not in (an invite from another server, or the user's
// rejection of one made through the inviting server) as that user's
// current membership, without any other room state.
func (e *Engine) StoreMembershipOutlier(ctx context.Context, pdu gomatrixserverlib.PDU) error {
	pdu.EventID()
	return e.db.Update(ctx, func(tx *store.Tx) error {
		info, err := e.roomForRemote(tx, pdu.RoomID().String(), pdu.Version())
		if err != nil {
			return err
		}
		if eventNID(tx, pdu.EventID()) != 0 {
			return nil
		}
		return e.putMembershipOutlier(tx, info, pdu)
	})
}

// putMembershipOutlier stores pdu, a local user's member event in a room
// this server is not in, as a stateless outlier and makes it the user's
// current membership there.
func (e *Engine) putMembershipOutlier(tx *store.Tx, info *Info, pdu gomatrixserverlib.PDU) error {
	ev := &Event{RoomNID: info.NID, Version: info.Version, ID: pdu.EventID(), JSON: pdu.JSON(), PDU: pdu,
		Flags: flagOutlier | flagStateless}
	if err := e.storeEvent(tx, ev); err != nil {
		return err
	}
	if err := setCurrent(tx, info, pdu, ev.NID); err != nil {
		return err
	}
	return putRoomInfo(tx, info)
}

// remoteRoomState returns the stripped state another server sent with an
// invite (unsigned.invite_room_state) or in answer to a knock
// (unsigned.knock_room_state), for rooms known only by that event.
func remoteRoomState(ev *Event) []json.RawMessage {
	var out []json.RawMessage
	field := "unsigned.invite_room_state"
	if m, _ := ev.PDU.Membership(); m == "knock" {
		field = "unsigned.knock_room_state"
	}
	for _, s := range gjson.GetBytes(ev.JSON, field).Array() {
		out = append(out, json.RawMessage(s.Raw))
	}
	return out
}

// RejectInviteLocally declines an invite to a room this server is not in
// when no server in the room can be reached to leave through (the
// inviting server is gone, or no one is left in the room): an out-of-band
// leave, built and signed here on top of the invite alone, becomes the
// user's membership. It is never sent anywhere; the room's servers still
// see the invite until one of them hears otherwise, which is all that can
// be done without them (Client-Server API §"Leaving rooms": rejecting an
// invite always succeeds for the invitee).
func (e *Engine) RejectInviteLocally(ctx context.Context, userID, roomID string) (string, error) {
	var eventID string
	err := e.db.Update(ctx, func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		inv, err := e.currentStateEvent(tx, info.NID, "m.room.member", userID)
		if err != nil {
			return err
		}
		if inv == nil || inv.Flags&flagStateless == 0 {
			return matrixerr.Forbidden("no invite to reject here")
		}
		if m, _ := inv.PDU.Membership(); m != "invite" {
			return matrixerr.Forbidden("no invite to reject here")
		}
		ver, err := gomatrixserverlib.GetRoomVersion(inv.PDU.Version())
		if err != nil {
			return fmt.Errorf("room: reject invite to %s: %w", roomID, err)
		}
		sk := userID
		proto := gomatrixserverlib.ProtoEvent{SenderID: userID, RoomID: roomID, Type: "m.room.member", StateKey: &sk,
			PrevEvents: []string{inv.ID}, AuthEvents: []string{inv.ID}, Depth: inv.PDU.Depth() + 1,
			Content: []byte(`{"membership":"leave"}`)}
		pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(e.now(), e.serverName, e.keyID, e.key)
		if err != nil {
			return badEvent(err)
		}
		eventID = pdu.EventID()
		return e.putMembershipOutlier(tx, info, pdu)
	})
	return eventID, err
}
