package matrix

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// joinRoom serves both POST /join/{roomIdOrAlias} and /rooms/{roomId}/join.
func (s *Server) joinRoom(w http.ResponseWriter, r *http.Request, c *caller) error {
	target := r.PathValue("roomIdOrAlias")
	if target == "" {
		target = r.PathValue("roomId")
	}
	var req struct {
		Reason string `json:"reason"`
	}
	var body map[string]json.RawMessage
	if err := readJSON(r, &body); err != nil {
		return err
	}
	if raw, ok := body["reason"]; ok {
		if err := json.Unmarshal(raw, &req.Reason); err != nil {
			return matrixerr.BadJSON("reason must be a string")
		}
	}
	roomID, via, err := s.roomAndServers(r, target)
	if err != nil {
		return err
	}
	via = s.withInviter(c.UserID, roomID, via)
	if s.fed != nil && !s.rooms.HasLocalJoined(roomID) && s.hasOtherServer(via) {
		// No one here is in the room: join through another server.
		if err := s.joinRemote(r, c, roomID, via, req.Reason, joinExtra(body)); err != nil {
			return err
		}
		s.carryToUpgraded(r.Context(), c.UserID, roomID) // upgrade.go
		matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"room_id": roomID})
		return nil
	}
	if !s.rooms.RoomExists(roomID) {
		return matrixerr.NotFound("no known server can join that room")
	}
	if _, err := s.rooms.ChangeMembership(r.Context(), room.MembershipRequest{Sender: c.UserID, RoomID: roomID,
		Target: c.UserID, Membership: "join", Reason: req.Reason, Profile: s.profileOf(c),
		Extra: joinExtra(body)}); err != nil {
		if err = s.joinElsewhere(r, c, roomID, via, req.Reason, joinExtra(body), err); err != nil {
			return err
		}
	}
	s.carryToUpgraded(r.Context(), c.UserID, roomID) // upgrade.go
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"room_id": roomID})
	return nil
}

// withInviter adds to via, for a user invited by another server to a room
// no local user is in, the inviting server: it was in the room when it
// sent the invite, and it may be the only server this one knows there. A
// client accepts an invite by room ID alone (Element gives no via), and
// from room version 12 on the room ID names no server to fall back on
// (MSC4291), so without it the join would be tried here, on the invite
// alone, and fail.
func (s *Server) withInviter(userID, roomID string, via []string) []string {
	if s.fed == nil || s.rooms.HasLocalJoined(roomID) {
		return via
	}
	inv := s.rooms.CurrentStatePDU(roomID, "m.room.member", userID)
	if inv == nil {
		return via
	}
	if m, _ := inv.Membership(); m != "invite" {
		return via
	}
	inviter := serverOf(string(inv.SenderID()))
	if inviter == "" || inviter == s.accounts.ServerName() {
		return via
	}
	return dedupe(append(via, inviter))
}

// joinExtra is the custom content of a join request's body that goes into
// the member event (Complement "POST /join/:room_id can join a room with
// custom content"): everything but the fields the spec gives a meaning
// to. membership is always set by the server, and so is
// join_authorised_via_users_server, by the server that vouches for a
// restricted join (Server-Server API §"Restricted rooms"): the room engine
// drops a client's for a local join, but a remote join's make_join
// template keeps it whenever it names no authoriser itself.
func joinExtra(body map[string]json.RawMessage) map[string]json.RawMessage {
	extra := map[string]json.RawMessage{}
	for k, v := range body {
		switch k {
		case "membership", "reason", "third_party_signed", "join_authorised_via_users_server":
			continue
		}
		extra[k] = v
	}
	return extra
}

// joinElsewhere follows up a local join to a restricted room that this
// server could not vouch for (Client-Server API §"Restricted rooms"): when
// the user meets the room's conditions but no local user may invite, or
// this server cannot see the allowed rooms, another server in the room may
// authorise the join, so it goes through them. It returns nil once joined,
// else the error for the client: a join nobody could vouch for is a
// refused join, 403, with the resident server's errcode kept.
func (s *Server) joinElsewhere(r *http.Request, c *caller, roomID string, via []string, reason string, extra map[string]json.RawMessage, err error) error {
	var me *matrixerr.Error
	if !errors.As(err, &me) || (me.Code != "M_UNABLE_TO_GRANT_JOIN" && me.Code != "M_UNABLE_TO_AUTHORISE_JOIN") {
		return err
	}
	if s.fed != nil {
		servers, _ := s.rooms.JoinedServers(roomID)
		servers = dedupe(append(slices.Clone(via), servers...))
		if s.hasOtherServer(servers) {
			rerr := s.joinRemote(r, c, roomID, servers, reason, extra)
			if rerr == nil {
				return nil
			}
			if !errors.As(rerr, &me) {
				return rerr
			}
		}
	}
	return &matrixerr.Error{Status: http.StatusForbidden, Code: me.Code, Message: me.Message}
}
