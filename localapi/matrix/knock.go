package matrix

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

func (s *Server) knockRoutes() {
	s.mux.HandleFunc("POST /_matrix/client/v3/knock/{roomIdOrAlias}", s.authed(s.knock))
}

// knock serves POST /knock/{roomIdOrAlias} (Client-Server API §"Knocking
// on rooms"): asking to be let into a room whose join rule is knock. A
// room another local user is in gets the knock here; any other goes
// through a server in the room.
func (s *Server) knock(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Reason string `json:"reason"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	roomID, via, err := s.roomAndServers(r, r.PathValue("roomIdOrAlias"))
	if err != nil {
		return err
	}
	switch {
	case s.rooms.HasLocalJoined(roomID):
		_, err = s.rooms.ChangeMembership(r.Context(), room.MembershipRequest{Sender: c.UserID, RoomID: roomID,
			Target: c.UserID, Membership: "knock", Reason: req.Reason})
	case s.fed != nil && s.hasOtherServer(via):
		err = s.fed.Knock(r.Context(), c.UserID, roomID, via, req.Reason)
	default:
		err = matrixerr.NotFound("no known server can reach that room")
	}
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"room_id": roomID})
	return nil
}
