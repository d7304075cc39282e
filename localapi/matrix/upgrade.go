package matrix

import (
	"encoding/json"
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

func (s *Server) upgradeRoutes() {
	s.mux.HandleFunc("POST /_matrix/client/v3/rooms/{roomId}/upgrade", s.authed(s.upgradeRoom))
}

// upgradeRoom implements POST /rooms/{roomId}/upgrade (Client-Server API
// §"Room Upgrades"); the room engine does the work in one transaction.
func (s *Server) upgradeRoom(w http.ResponseWriter, r *http.Request, c *caller) {
	body, err := readBody(r)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	var req struct {
		NewVersion         *string         `json:"new_version"`
		AdditionalCreators json.RawMessage `json:"additional_creators"`
	}
	if err := decode(body, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	if req.NewVersion == nil {
		matrixerr.Write(w, matrixerr.MissingParam("new_version is required"))
		return
	}
	var creators []string
	if len(req.AdditionalCreators) > 0 && string(req.AdditionalCreators) != "null" {
		if err := json.Unmarshal(req.AdditionalCreators, &creators); err != nil {
			matrixerr.Write(w, matrixerr.BadJSON("additional_creators must be an array of user IDs"))
			return
		}
	}
	id, err := s.rooms.UpgradeRoom(r.Context(), room.UpgradeRequest{Sender: c.UserID, RoomID: r.PathValue("roomId"),
		NewVersion: *req.NewVersion, AdditionalCreators: creators, Profile: s.profileOf(c)})
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{"replacement_room": id})
}
