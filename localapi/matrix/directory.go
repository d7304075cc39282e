package matrix

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

func (s *Server) getAlias(w http.ResponseWriter, r *http.Request) error {
	id, servers, err := s.resolveAlias(r.Context(), r.PathValue("alias"))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"room_id": id, "servers": servers})
	return nil
}

func (s *Server) putAlias(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		RoomID string `json:"room_id"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.RoomID == "" {
		return matrixerr.MissingParam("room_id is required")
	}
	if err := s.exclusiveAlias(c, r.PathValue("alias")); err != nil {
		return err
	}
	if err := s.rooms.SetAlias(r.Context(), c.UserID, r.PathValue("alias"), req.RoomID); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (s *Server) deleteAlias(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.rooms.DeleteAlias(r.Context(), c.UserID, r.PathValue("alias")); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (s *Server) roomAliases(w http.ResponseWriter, r *http.Request, c *caller) error {
	aliases, err := s.rooms.LocalAliases(c.UserID, r.PathValue("roomId"))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"aliases": aliases})
	return nil
}

func (s *Server) getVisibility(w http.ResponseWriter, r *http.Request) error {
	pub, err := s.rooms.Published(r.PathValue("roomId"))
	if err != nil {
		return err
	}
	vis := "private"
	if pub {
		vis = "public"
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"visibility": vis})
	return nil
}

func (s *Server) putVisibility(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Visibility string `json:"visibility"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Visibility != "public" && req.Visibility != "private" {
		return matrixerr.InvalidParam("visibility must be public or private")
	}
	if err := s.rooms.SetPublished(r.Context(), c.UserID, r.PathValue("roomId"), req.Visibility == "public"); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// publicRooms serves GET and POST /publicRooms for the local directory;
// since tokens are offsets into the sorted list.
func (s *Server) publicRooms(w http.ResponseWriter, r *http.Request) error {
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
			return err
		}
	} else {
		req.Since, req.Server = q.Get("since"), q.Get("server")
		n, err := queryInt(q, "limit", 0)
		if err != nil {
			return err
		}
		req.Limit = n
	}
	if srv := q.Get("server"); srv != "" {
		req.Server = srv // the spec's place for it on POST too
	}
	if req.Server != "" && req.Server != s.accounts.ServerName() {
		return s.remotePublicRooms(w, r, req.Server, req.Limit, req.Since, req.Filter.GenericSearchTerm)
	}
	page, err := s.rooms.PublicRoomsPage(req.Filter.GenericSearchTerm, req.Since, req.Limit)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, page)
	return nil
}

// remotePublicRooms answers ?server=other with that server's directory,
// asked over federation (Server-Server API §"Public Room Directory").
func (s *Server) remotePublicRooms(w http.ResponseWriter, r *http.Request, server string, limit int, since, filter string) error {
	if s.fed == nil {
		return matrixerr.Forbidden("other servers' directories need federation, which is not enabled")
	}
	page, err := s.fed.PublicRooms(r.Context(), server, limit, since, filter)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, page)
	return nil
}
