package matrix

import (
	"context"
	"log/slog"
	"net/http"
)

// The client API's ephemeral events that other servers in a room must
// hear of (Server-Server API §"Typing Notifications", §"Receipts"). They
// are best effort: the local change has been made, and a failure to queue
// the EDU is logged, never returned to the client.

func (s *Server) federateTyping(r *http.Request, c *caller, roomID string, typing bool) {
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
	if s.fed == nil {
		return
	}
	if err := s.fed.SendReceipt(context.WithoutCancel(r.Context()), c.UserID, roomID, eventID, threadID); err != nil {
		slog.Info("receipt: federation send failed", "room", roomID, "err", err)
	}
}
