package matrix

import (
	"net/http"
	"strconv"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/push"
)

// notifications serves GET /notifications (Client-Server API
// §"GET /notifications"): the events that notified the user, newest
// first, paginated by stream position.
func (s *Server) notifications(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var from uint64
	if v := q.Get("from"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return matrixerr.InvalidParam("from is not a token from this server")
		}
		from = n
	}
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return matrixerr.InvalidParam("limit must be a positive integer")
		}
		limit = min(n, 100)
	}
	only := q.Get("only")
	if only != "" && only != "highlight" {
		return matrixerr.InvalidParam("only may be highlight")
	}
	list, next, err := p.Notifications(c.UserID, from, limit, only == "highlight")
	if err != nil {
		return err
	}
	out := []map[string]any{}
	for _, n := range list {
		ev, err := s.rooms.PushEventAt(n.Pos)
		if err != nil {
			continue
		}
		out = append(out, map[string]any{"actions": push.Actions(n.Actions), "event": ev, "read": n.Read,
			"room_id": n.RoomID, "ts": n.TS})
	}
	resp := map[string]any{"notifications": out}
	if next != 0 {
		resp["next_token"] = strconv.FormatUint(next, 10)
	}
	matrixerr.WriteJSON(w, http.StatusOK, resp)
	return nil
}
