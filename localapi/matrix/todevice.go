package matrix

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// sendToDevice implements PUT /sendToDevice/{eventType}/{txnId}
// (Client-Server API §"Send-to-Device messaging"). The txn ID makes a
// retry queue nothing twice; "*" addresses every device of a user.
func (s *Server) sendToDevice(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Messages == nil {
		return matrixerr.MissingParam("messages is required")
	}
	for _, byDevice := range req.Messages {
		for _, content := range byDevice {
			if len(content) == 0 || content[0] != '{' {
				return matrixerr.BadJSON("each message must be an object")
			}
		}
	}
	devices := func(userID string) ([]string, error) {
		devs, err := s.accounts.Devices(s.accounts.Localpart(userID))
		ids := make([]string, len(devs))
		for i, d := range devs {
			ids[i] = d.ID
		}
		return ids, err
	}
	if err := s.keys.SendToDevice(r.Context(), c.UserID, c.DeviceID, r.PathValue("txnId"),
		r.PathValue("eventType"), req.Messages, devices); err != nil {
		return err
	}
	if s.appsvc != nil {
		// A bridge's ghosts never /sync: their devices get these in
		// the appservice's transactions (MSC4203).
		s.appsvc.ToDevice(context.WithoutCancel(r.Context()), c.UserID, r.PathValue("eventType"), req.Messages, devices)
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}
