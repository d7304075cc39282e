package matrix

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// threads implements GET /_matrix/client/v1/rooms/{roomId}/threads
// (Client-Server API §"Threading", threads_list.yaml).
func (s *Server) threads(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	req := room.ThreadsRequest{UserID: c.UserID, Device: c.Session, RoomID: r.PathValue("roomId")}
	switch q.Get("include") {
	case "", "all":
	case "participated":
		req.Participated = true
	default:
		return matrixerr.InvalidParam("include must be all or participated")
	}
	var err error
	if req.From, err = queryToken(q, "from", 0); err == nil {
		req.Limit, err = queryInt(q, "limit", 0)
	}
	if err == nil && q.Has("limit") && req.Limit < 1 {
		err = matrixerr.InvalidParam("limit must be greater than zero")
	}
	if err != nil {
		return err
	}
	evs, next, err := s.rooms.Threads(req)
	return writeChunk(w, evs, next, err)
}
