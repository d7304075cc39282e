package matrix

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// The ephemeral side of a room: typing notifications, receipts and read
// markers (Client-Server API §"Typing Notifications", §"Receipts",
// §"Fully read markers").

func (s *Server) typing(w http.ResponseWriter, r *http.Request, c *caller) error {
	if r.PathValue("userId") != c.UserID {
		return matrixerr.Forbidden("you may only set your own typing state")
	}
	var req struct {
		Typing  *bool `json:"typing"`
		Timeout int64 `json:"timeout"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Typing == nil {
		return matrixerr.MissingParam("typing is required")
	}
	if err := s.rooms.SetTyping(c.UserID, r.PathValue("roomId"), *req.Typing, time.Duration(req.Timeout)*time.Millisecond); err != nil {
		return err
	}
	s.federateTyping(r, c, r.PathValue("roomId"), *req.Typing)
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (s *Server) receipt(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		ThreadID *string `json:"thread_id"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	roomID, typ, eventID := r.PathValue("roomId"), r.PathValue("receiptType"), r.PathValue("eventId")
	threadID := ""
	if req.ThreadID != nil {
		// receipts.yaml: 400 for an empty thread_id, or one given for a
		// receipt type that has no threads.
		if *req.ThreadID == "" || typ == "m.fully_read" {
			return matrixerr.InvalidParam("thread_id must be a non-empty string on m.read or m.read.private")
		}
		threadID = *req.ThreadID
	}
	if typ == "m.fully_read" {
		if err := s.setFullyRead(r, c, roomID, eventID); err != nil {
			return err
		}
	} else if err := s.setReceipt(r, c, roomID, typ, eventID, threadID); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// readMarkers implements POST /rooms/{roomId}/read_markers.
func (s *Server) readMarkers(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		FullyRead   string `json:"m.fully_read"`
		Read        string `json:"m.read"`
		ReadPrivate string `json:"m.read.private"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	roomID := r.PathValue("roomId")
	if req.FullyRead != "" {
		if err := s.setFullyRead(r, c, roomID, req.FullyRead); err != nil {
			return err
		}
	}
	for typ, id := range map[string]string{"m.read": req.Read, "m.read.private": req.ReadPrivate} {
		if id == "" {
			continue
		}
		if err := s.setReceipt(r, c, roomID, typ, id, ""); err != nil {
			return err
		}
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// setReceipt stores an m.read or m.read.private receipt and sends a public
// one that moved to the room's other servers; one the engine ignored (not
// newer than the user's receipt) goes nowhere, and is still a success.
func (s *Server) setReceipt(r *http.Request, c *caller, roomID, typ, eventID, threadID string) error {
	moved, err := s.rooms.SetReceipt(r.Context(), c.UserID, roomID, typ, eventID, threadID)
	if err != nil {
		return err
	}
	if moved && typ == "m.read" {
		s.federateReceipt(r, c, roomID, eventID, threadID)
	}
	return nil
}

// setFullyRead stores the fully-read marker, which the spec keeps as room
// account data of type m.fully_read.
func (s *Server) setFullyRead(r *http.Request, c *caller, roomID, eventID string) error {
	if _, err := s.rooms.Event(c.UserID, roomID, eventID); err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]string{"event_id": eventID})
	return s.accounts.PutAccountData(r.Context(), c.Localpart, roomID, "m.fully_read", b)
}
