package federation

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// The public room directory over federation (Server-Server API §"Public
// Room Directory"). Hearth has no third-party networks, so
// include_all_networks and third_party_instance_id change nothing.

func (s *Service) directoryRoutes() {
	s.handle("GET /_matrix/federation/v1/publicRooms", s.publicRooms)
	s.handle("POST /_matrix/federation/v1/publicRooms", s.publicRooms)
}

// publicRooms serves this server's directory; since tokens are offsets
// into the sorted list, as on the client API.
func (s *Service) publicRooms(w http.ResponseWriter, r *request) error {
	var req struct {
		Limit  int    `json:"limit"`
		Since  string `json:"since"`
		Filter struct {
			GenericSearchTerm string `json:"generic_search_term"`
		} `json:"filter"`
	}
	if r.Method == http.MethodPost {
		if err := json.Unmarshal(r.body, &req); err != nil {
			return matrixerr.BadJSON("body must be a publicRooms request")
		}
	} else {
		q := r.URL.Query()
		req.Since = q.Get("since")
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return matrixerr.InvalidParam("limit must be an integer")
			}
			req.Limit = n
		}
	}
	page, err := s.cfg.Rooms.PublicRoomsPage(req.Filter.GenericSearchTerm, req.Since, req.Limit)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, page)
	return nil
}

// PublicRooms fetches a page of another server's directory for a local
// client (Client-Server API §"Listing rooms", ?server=). The answer is
// the remote's page re-encoded, so only the spec's fields pass through.
func (s *Service) PublicRooms(ctx context.Context, server string, limit int, since, filter string) (json.RawMessage, error) {
	res, err := s.cfg.Client.GetPublicRoomsFiltered(ctx, s.cfg.ServerName, spec.ServerName(server), limit, since, filter, false, "")
	if err != nil {
		return nil, remoteError(server, err)
	}
	if res.Chunk == nil {
		res.Chunk = []fclient.PublicRoom{}
	}
	return json.Marshal(res)
}
