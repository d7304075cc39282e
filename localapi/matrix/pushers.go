package matrix

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/push"
)

// getPushers serves GET /pushers (Client-Server API §"GET /pushers").
func (s *Server) getPushers(w http.ResponseWriter, r *http.Request, c *caller) {
	p := s.pushService(w)
	if p == nil {
		return
	}
	list, err := p.Pushers(c.UserID)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{"pushers": list})
}

// setPusher serves POST /pushers/set: create, replace or (kind null)
// delete a pusher. Validation lives in package push.
func (s *Server) setPusher(w http.ResponseWriter, r *http.Request, c *caller) {
	p := s.pushService(w)
	if p == nil {
		return
	}
	body, err := readBody(r)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	var req push.SetRequest
	if err := decode(body, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	req.Device = c.DeviceID
	if err := p.SetPusher(r.Context(), c.UserID, req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{})
}
