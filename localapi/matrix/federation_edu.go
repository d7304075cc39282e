package matrix

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// The client API's ephemeral events that other servers in a room must
// hear of (Server-Server API §"Typing Notifications", §"Receipts"). They
// are best effort: the local change has been made, and a failure to queue
// the EDU is logged, never returned to the client.

func (s *Server) federateTyping(r *http.Request, c *caller, roomID string, typing bool) {
	if s.appsvc != nil {
		// One user's change: m.typing lists who types now, which for
		// this event is them or nobody (MSC2409 in transactions).
		ids := []string{}
		if typing {
			ids = append(ids, c.UserID)
		}
		s.appsvc.Ephemeral(context.WithoutCancel(r.Context()), c.UserID, roomID,
			map[string]any{"type": "m.typing", "room_id": roomID, "content": map[string]any{"user_ids": ids}})
	}
	if s.fed == nil {
		return
	}
	if err := s.fed.SendTyping(context.WithoutCancel(r.Context()), c.UserID, roomID, typing); err != nil {
		slog.Info("typing: federation send failed", "room", roomID, "err", err)
	}
}

// federateReceipt sends a public read receipt (m.read); private receipts
// and the fully-read marker stay on this server.
func (s *Server) federateReceipt(r *http.Request, c *caller, roomID, eventID, threadID string) {
	if s.appsvc != nil {
		data := map[string]any{"ts": time.Now().UnixMilli()}
		if threadID != "" {
			data["thread_id"] = threadID
		}
		s.appsvc.Ephemeral(context.WithoutCancel(r.Context()), c.UserID, roomID, map[string]any{"type": "m.receipt", "room_id": roomID,
			"content": map[string]any{eventID: map[string]any{"m.read": map[string]any{c.UserID: data}}}})
	}
	if s.fed == nil {
		return
	}
	if err := s.fed.SendReceipt(context.WithoutCancel(r.Context()), c.UserID, roomID, eventID, threadID); err != nil {
		slog.Info("receipt: federation send failed", "room", roomID, "err", err)
	}
}
