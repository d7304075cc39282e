package matrix

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/push"
)

// getPushers serves GET /pushers (Client-Server API §"GET /pushers").
func (s *Server) getPushers(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	list, err := p.Pushers(c.UserID)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"pushers": list})
	return nil
}

// setPusher serves POST /pushers/set: create, replace or (kind null)
// delete a pusher. Validation lives in package push.
func (s *Server) setPusher(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req push.SetRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	req.Device = c.DeviceID
	if err := p.SetPusher(r.Context(), c.UserID, req); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{})
	return nil
}
