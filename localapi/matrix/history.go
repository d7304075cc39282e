package matrix

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// queryInt reads a non-negative integer query parameter.
func queryInt(q url.Values, name string, def int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, matrixerr.InvalidParam(name + " must be a non-negative integer")
	}
	return n, nil
}

// queryToken reads a pagination token query parameter.
func queryToken(q url.Values, name string, def uint64) (uint64, error) {
	if v := q.Get(name); v != "" {
		return parsePageToken(v)
	}
	return def, nil
}

// queryDir reads dir, which defaults to backwards.
func queryDir(q url.Values) (room.Direction, error) {
	switch q.Get("dir") {
	case "b", "":
		return room.Backward, nil
	case "f":
		return room.Forward, nil
	}
	return 0, matrixerr.InvalidParam("dir must be b or f")
}

func (s *Server) getEvent(w http.ResponseWriter, r *http.Request, c *caller) error {
	ev, err := s.rooms.EventForSession(c.UserID, c.Session, r.PathValue("roomId"), r.PathValue("eventId"))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, ev)
	return nil
}

// messages implements GET /rooms/{roomId}/messages. Without from, a
// backward page starts at the newest event and a forward page at the oldest.
func (s *Server) messages(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	dir, err := queryDir(q)
	if err != nil {
		return err
	}
	pos, _ := s.rooms.Pos()
	if dir == room.Forward {
		pos = 0
	}
	from, err := queryToken(q, "from", pos)
	if err != nil {
		return err
	}
	to, err := queryToken(q, "to", 0)
	if err != nil {
		return err
	}
	filter, err := parseRoomEventFilter(q.Get("filter"))
	if err != nil {
		return err
	}
	if filter.Limit, err = queryInt(q, "limit", 10); err != nil {
		return err
	}
	roomID := r.PathValue("roomId")
	page, err := s.rooms.Messages(c.UserID, c.Session, roomID, from, to, dir, filter)
	if err != nil {
		return err
	}
	more := page.More
	if dir == room.Backward && !page.More && to == 0 && s.fed != nil {
		// Past the start of what this server has: fetch older history
		// from another server in the room, and keep the client paging
		// while some may remain.
		if n, _ := s.fed.Backfill(r.Context(), roomID, filter.Limit); n > 0 {
			if page, err = s.rooms.Messages(c.UserID, c.Session, roomID, from, to, dir, filter); err != nil {
				return err
			}
		}
		_, older := s.rooms.BackfillPoint(roomID)
		more = page.More || (older && len(page.Chunk) > 0)
	}
	resp := map[string]any{"chunk": page.Chunk, "start": pageToken(from)}
	// end goes with every page that has events, as Synapse's do: forward,
	// more may arrive after it; backward, the client learns it reached the
	// start from the empty page that follows. Only an empty page, with
	// nothing more, omits it (Client-Server API GET /messages).
	if more || len(page.Chunk) > 0 {
		resp["end"] = pageToken(page.End)
	}
	if len(page.State) > 0 {
		resp["state"] = page.State
	}
	matrixerr.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// eventContext implements GET /rooms/{roomId}/context/{eventId}.
func (s *Server) eventContext(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	limit, err := queryInt(q, "limit", 10)
	if err != nil {
		return err
	}
	f, err := parseRoomEventFilter(q.Get("filter"))
	if err != nil {
		return err
	}
	ctx, err := s.rooms.Context(c.UserID, c.Session, r.PathValue("roomId"), r.PathValue("eventId"), min(limit, 100), f)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"event": ctx.Event, "events_before": ctx.Before,
		"events_after": ctx.After, "start": pageToken(ctx.Start), "end": pageToken(ctx.End),
		"state": ctx.State})
	return nil
}

// relations implements GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
func (s *Server) relations(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	dir, err := queryDir(q)
	if err != nil {
		return err
	}
	req := room.RelationsRequest{UserID: c.UserID, RoomID: r.PathValue("roomId"), ParentID: r.PathValue("eventId"),
		RelType: r.PathValue("relType"), EventType: r.PathValue("eventType"), Dir: dir}
	if req.From, err = queryToken(q, "from", 0); err == nil {
		if req.To, err = queryToken(q, "to", 0); err == nil {
			req.Limit, err = queryInt(q, "limit", 0)
		}
	}
	if err != nil {
		return err
	}
	evs, next, err := s.rooms.Relations(req)
	return writeChunk(w, evs, next, err)
}

// writeChunk answers a paginated list (/relations, /threads): the chunk
// and, if there is more, next_batch.
func writeChunk(w http.ResponseWriter, evs []room.ClientEvent, next uint64, err error) error {
	if err != nil {
		return err
	}
	resp := map[string]any{"chunk": evs}
	if next != 0 {
		resp["next_batch"] = pageToken(next)
	}
	matrixerr.WriteJSON(w, http.StatusOK, resp)
	return nil
}
