package room

import (
	"context"
	"encoding/json"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// MembershipRequest changes a member of a room (Client-Server API
// §"Room membership": join, leave, invite, kick, ban, unban).
type MembershipRequest struct {
	Sender     string
	RoomID     string
	Target     string // the user whose membership changes; Sender for join/leave
	Membership string // join, leave, invite, ban
	Reason     string
	Profile    Profile // for joins: the sender's displayname and avatar
	IsDirect   bool    // for invites
	// Extra is additional content from the client (e.g. third-party fields).
	Extra map[string]json.RawMessage
	// OnlyIfBanned makes a leave fail unless the target is banned (unban).
	OnlyIfBanned bool
	// OnlyIfMember makes a leave of someone else fail unless they are
	// joined or invited (kick), as the spec's /kick requires.
	OnlyIfMember bool
}

// ChangeMembership sends the member event. Joining a room one is already
// joined to with the same profile sends nothing, like leaving one has left.
func (e *Engine) ChangeMembership(ctx context.Context, req MembershipRequest) (string, error) {
	var eventID string
	err := e.db.Update(ctx, func(tx *store.Tx) error {
		info, err := roomInfo(tx, req.RoomID)
		if err != nil {
			return err
		}
		current, err := e.currentStateEvent(tx, info.NID, "m.room.member", req.Target)
		if err != nil {
			return err
		}
		cur := ""
		if current != nil {
			cur, _ = current.PDU.Membership()
		}
		if req.OnlyIfBanned && cur != "ban" {
			return matrixerr.Forbidden("the user is not banned")
		}
		if req.OnlyIfMember && cur != "join" && cur != "invite" && cur != "knock" {
			return matrixerr.Forbidden("the user is not in the room")
		}
		content := memberContent(req, req.Membership)
		if req.Membership == "join" {
			req.Profile.SetOn(content)
		}
		if req.Membership == "join" && req.Target == req.Sender {
			// Who vouches for a join to a restricted room is this server's
			// decision, never the client's (state_restricted.go).
			delete(content, "join_authorised_via_users_server")
			via, err := e.joinAuthoriser(tx, info, req.Sender)
			if err != nil {
				return err
			}
			if via != "" {
				content["join_authorised_via_users_server"] = via
			}
		}
		b, err := json.Marshal(content)
		if err != nil {
			return matrixerr.BadJSON("bad membership content")
		}
		if current != nil && cur == req.Membership && (cur == "join" || cur == "leave") &&
			jsonEqual(current.PDU.Content(), b) {
			eventID = current.PDU.EventID()
			return nil
		}
		if req.Membership == "invite" && cur == "join" {
			return matrixerr.Forbidden(req.Target + " is already in the room")
		}
		target := req.Target
		ev, err := e.buildAndAppend(tx, info, SendRequest{Sender: req.Sender, RoomID: info.ID,
			Type: "m.room.member", StateKey: &target, Content: b})
		if err != nil {
			return err
		}
		eventID = ev.PDU.EventID()
		return putRoomInfo(tx, info)
	})
	return eventID, err
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

// RoomExists reports whether the server knows the room.
func (e *Engine) RoomExists(roomID string) bool {
	ok := false
	e.db.View(func(tx *store.Tx) error {
		ok = tx.Get(store.Rooms, []byte(roomID)) != nil
		return nil
	})
	return ok
}

// memberContent is the content of the member event req makes: the
// client's extra fields first, then what the server sets itself, which
// they can never replace (membership; reason and is_direct when given).
func memberContent(req MembershipRequest, membership string) map[string]any {
	content := map[string]any{}
	for k, v := range req.Extra {
		content[k] = v
	}
	delete(content, "reason")
	content["membership"] = membership
	if req.Reason != "" {
		content["reason"] = req.Reason
	}
	if req.IsDirect {
		content["is_direct"] = true
	}
	return content
}
