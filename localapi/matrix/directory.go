package matrix

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

func (s *Server) getAlias(w http.ResponseWriter, r *http.Request) {
	id, servers, err := s.resolveAlias(r.Context(), r.PathValue("alias"))
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
	if err := s.exclusiveAlias(c, r.PathValue("alias")); err != nil {
		matrixerr.Write(w, err)
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
		n, err := queryInt(q, "limit", 0)
		if err != nil {
			matrixerr.Write(w, err)
			return
		}
		req.Limit = n
	}
	if srv := q.Get("server"); srv != "" {
		req.Server = srv // the spec's place for it on POST too
	}
	if req.Server != "" && req.Server != s.accounts.ServerName() {
		s.remotePublicRooms(w, r, req.Server, req.Limit, req.Since, req.Filter.GenericSearchTerm)
		return
	}
	page, err := s.rooms.PublicRoomsPage(req.Filter.GenericSearchTerm, req.Since, req.Limit)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, page)
}

// remotePublicRooms answers ?server=other with that server's directory,
// asked over federation (Server-Server API §"Public Room Directory").
func (s *Server) remotePublicRooms(w http.ResponseWriter, r *http.Request, server string, limit int, since, filter string) {
	if s.fed == nil {
		matrixerr.Write(w, matrixerr.Forbidden("other servers' directories need federation, which is not enabled"))
		return
	}
	page, err := s.fed.PublicRooms(r.Context(), server, limit, since, filter)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, page)
}
