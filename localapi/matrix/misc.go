package matrix

import (
	"net/http"
	"strconv"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// specVersions are the Client-Server API versions Hearth speaks.
var specVersions = []string{"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
	"v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16"}

func (s *Server) versions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{"versions": specVersions, "unstable_features": map[string]bool{}})
}

func (s *Server) capabilities(w http.ResponseWriter, r *http.Request, c *caller) {
	available := map[string]string{}
	for _, v := range room.SupportedVersions() {
		available[string(v)] = "stable"
	}
	writeJSON(w, map[string]any{"capabilities": map[string]any{
		"m.room_versions":   map[string]any{"default": string(s.rooms.DefaultVersion), "available": available},
		"m.change_password": map[string]bool{"enabled": true},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": false},
		"m.get_login_token": map[string]bool{"enabled": true},
		"m.profile_fields":  map[string]any{"enabled": true, "allowed": []string{"displayname", "avatar_url"}},
	}})
}

// wellKnown serves /.well-known/matrix/client so clients given only the
// server name find the API.
func (s *Server) wellKnown(w http.ResponseWriter, r *http.Request) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	writeJSON(w, map[string]any{"m.homeserver": map[string]string{"base_url": scheme + "://" + r.Host}})
}

func (s *Server) getAlias(w http.ResponseWriter, r *http.Request) {
	id, servers, err := s.rooms.ResolveAlias(r.PathValue("alias"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{"room_id": id, "servers": servers})
}

func (s *Server) putAlias(w http.ResponseWriter, r *http.Request, c *caller) {
	var req struct {
		RoomID string `json:"room_id"`
	}
	if err := readJSON(r, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	if req.RoomID == "" {
		matrixerr.Write(w, matrixerr.MissingParam("room_id is required"))
		return
	}
	if err := s.rooms.SetAlias(r.Context(), c.UserID, r.PathValue("alias"), req.RoomID); err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

func (s *Server) deleteAlias(w http.ResponseWriter, r *http.Request, c *caller) {
	if err := s.rooms.DeleteAlias(r.Context(), c.UserID, r.PathValue("alias")); err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

func (s *Server) roomAliases(w http.ResponseWriter, r *http.Request, c *caller) {
	aliases, err := s.rooms.LocalAliases(c.UserID, r.PathValue("roomId"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{"aliases": aliases})
}

func (s *Server) getVisibility(w http.ResponseWriter, r *http.Request) {
	pub, err := s.rooms.Published(r.PathValue("roomId"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	vis := "private"
	if pub {
		vis = "public"
	}
	writeJSON(w, map[string]any{"visibility": vis})
}

func (s *Server) putVisibility(w http.ResponseWriter, r *http.Request, c *caller) {
	var req struct {
		Visibility string `json:"visibility"`
	}
	if err := readJSON(r, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	if req.Visibility != "public" && req.Visibility != "private" {
		matrixerr.Write(w, matrixerr.InvalidParam("visibility must be public or private"))
		return
	}
	if err := s.rooms.SetPublished(r.Context(), c.UserID, r.PathValue("roomId"), req.Visibility == "public"); err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

// publicRooms serves GET and POST /publicRooms for the local directory;
// since tokens are offsets into the sorted list.
func (s *Server) publicRooms(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Limit  int    `json:"limit"`
		Since  string `json:"since"`
		Server string `json:"server"`
		Filter struct {
			GenericSearchTerm string `json:"generic_search_term"`
		} `json:"filter"`
	}
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		if err := readJSON(r, &req); err != nil {
			matrixerr.Write(w, err)
			return
		}
	} else {
		req.Since, req.Server = q.Get("since"), q.Get("server")
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil {
				matrixerr.Write(w, matrixerr.InvalidParam("limit must be an integer"))
				return
			}
			req.Limit = n
		}
	}
	if req.Server != "" && req.Server != s.accounts.ServerName() {
		matrixerr.Write(w, matrixerr.Forbidden("other servers' directories need federation, which is not enabled"))
		return
	}
	rooms, err := s.rooms.PublicRooms(req.Filter.GenericSearchTerm)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	offset := 0
	if req.Since != "" {
		n, err := strconv.Atoi(req.Since)
		if err != nil || n < 0 {
			matrixerr.Write(w, matrixerr.InvalidParam("bad since token"))
			return
		}
		offset = min(n, len(rooms))
	}
	total := len(rooms)
	rooms = rooms[offset:]
	resp := map[string]any{"total_room_count_estimate": total}
	if req.Limit > 0 && len(rooms) > req.Limit {
		rooms = rooms[:req.Limit]
		resp["next_batch"] = strconv.Itoa(offset + req.Limit)
	}
	if offset > 0 {
		resp["prev_batch"] = strconv.Itoa(max(0, offset-max(req.Limit, 1)))
	}
	if rooms == nil {
		rooms = []room.PublicRoom{}
	}
	resp["chunk"] = rooms
	writeJSON(w, resp)
}

func (s *Server) eventContext(w http.ResponseWriter, r *http.Request, c *caller) {
	q := r.URL.Query()
	limit := 10
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			matrixerr.Write(w, matrixerr.InvalidParam("limit must be a non-negative integer"))
			return
		}
		limit = min(n, 100)
	}
	f, err := parseRoomEventFilter(q.Get("filter"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	ctx, err := s.rooms.Context(c.UserID, c.DeviceID, r.PathValue("roomId"), r.PathValue("eventId"), limit, f)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{"event": ctx.Event, "events_before": nonNil(ctx.Before),
		"events_after": nonNil(ctx.After), "start": pageToken(ctx.Start), "end": pageToken(ctx.End),
		"state": nonNil(ctx.State)})
}

func (s *Server) relations(w http.ResponseWriter, r *http.Request, c *caller) {
	q := r.URL.Query()
	dir := room.Backward
	if q.Get("dir") == "f" {
		dir = room.Forward
	} else if d := q.Get("dir"); d != "" && d != "b" {
		matrixerr.Write(w, matrixerr.InvalidParam("dir must be b or f"))
		return
	}
	var from uint64
	if f := q.Get("from"); f != "" {
		p, err := parsePageToken(f)
		if err != nil {
			matrixerr.Write(w, err)
			return
		}
		from = p
	}
	limit := 0
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			matrixerr.Write(w, matrixerr.InvalidParam("limit must be a non-negative integer"))
			return
		}
		limit = n
	}
	evs, next, err := s.rooms.Relations(c.UserID, r.PathValue("roomId"), r.PathValue("eventId"),
		r.PathValue("relType"), r.PathValue("eventType"), from, dir, limit)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	resp := map[string]any{"chunk": evs}
	if next != 0 {
		resp["next_batch"] = pageToken(next)
	}
	writeJSON(w, resp)
}
