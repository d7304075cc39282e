package federation

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// The space hierarchy over federation (Server-Server API §"Spaces", GET
// /hierarchy/{roomId}): the space's summary with its m.space.child
// events, and the children this server is in, summarised if the
// requesting server could peek or join them. It does not paginate and
// does not recurse past the first level; the requesting server asks again
// for deeper spaces. Only rooms with a local member are described: their
// current state is what this server knows to be true. The summary itself
// is the room engine's (room.SpaceSummary), shared with the client API.

func (s *Service) hierarchyRoutes() {
	s.handle("GET /_matrix/federation/v1/hierarchy/{roomID}", s.hierarchy)
}

func (s *Service) hierarchy(w http.ResponseWriter, r *request) error {
	suggestedOnly := r.URL.Query().Get("suggested_only") == "true"
	root, accessible := s.summarise(r.PathValue("roomID"), r.origin, suggestedOnly)
	if root == nil || !accessible {
		return matrixerr.NotFound("room not known here, or not open to your server")
	}
	res := room.SpaceHierarchy{Room: root, Children: []*room.SpaceRoom{}, InaccessibleChildren: []string{}}
	for _, c := range root.ChildrenState {
		child, ok := s.summarise(c.StateKey, r.origin, suggestedOnly)
		switch {
		case child == nil:
			// Not known here: the requester asks the via servers.
		case ok:
			res.Children = append(res.Children, child)
		default:
			res.InaccessibleChildren = append(res.InaccessibleChildren, c.StateKey)
		}
	}
	matrixerr.WriteJSON(w, http.StatusOK, res)
	return nil
}

// summarise describes a room this server is in, and says whether origin
// could peek or join it: public, knockable or world-readable rooms, rooms
// origin is already in, and restricted rooms when origin has a member in
// one of the allowed rooms as far as this server knows (the requester
// then checks its own user against allowed_room_ids); never when the
// room's ACL denies origin. nil means this server cannot describe the
// room.
func (s *Service) summarise(roomID string, origin spec.ServerName, suggestedOnly bool) (*room.SpaceRoom, bool) {
	sr, err := s.cfg.Rooms.SpaceSummary(roomID, suggestedOnly)
	if err != nil || sr == nil {
		return nil, false
	}
	open := false
	switch sr.JoinRule {
	case "public", "knock", "knock_restricted":
		open = true
	case "restricted":
		for _, id := range sr.AllowedRoomIDs {
			open = open || s.serverJoined(id, origin)
		}
	}
	accessible := (open || sr.WorldReadable || s.serverJoined(roomID, origin)) && s.aclAllows(roomID, origin)
	return sr, accessible
}

// serverJoined reports whether origin has a joined member in a room this
// server knows.
func (s *Service) serverJoined(roomID string, origin spec.ServerName) bool {
	servers, err := s.cfg.Rooms.JoinedServers(roomID)
	return err == nil && slices.Contains(servers, string(origin))
}

// Hierarchy asks the via servers, in turn, for a space this server is not
// in, for a local user's GET /hierarchy (Client-Server API §"Spaces").
// The first answer that describes the room asked for is returned.
func (s *Service) Hierarchy(ctx context.Context, roomID string, via []string, suggestedOnly bool) (*room.SpaceHierarchy, error) {
	path := "/_matrix/federation/v1/hierarchy/" + url.PathEscape(roomID)
	if suggestedOnly {
		path += "?suggested_only=true"
	}
	var last error = matrixerr.NotFound("no server to ask about " + roomID)
	for _, server := range via {
		if server == string(s.cfg.ServerName) || server == "" {
			continue
		}
		var res room.SpaceHierarchy
		if err := s.signedRequest(ctx, "GET", server, path, nil, &res); err != nil {
			slog.Info("federation: hierarchy failed", "room", roomID, "via", server, "err", err)
			last = remoteError(server, err)
			continue
		}
		if res.Room == nil || res.Room.RoomID != roomID {
			last = fmt.Errorf("federation: %s answered /hierarchy for another room", server)
			continue
		}
		if res.Room.ChildrenState == nil {
			res.Room.ChildrenState = []room.SpaceChild{}
		}
		room.SortChildren(res.Room.ChildrenState)
		return &res, nil
	}
	return nil, last
}
