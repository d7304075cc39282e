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

func (s *Server) typing(w http.ResponseWriter, r *http.Request, c *caller) {
	if r.PathValue("userId") != c.UserID {
		matrixerr.Write(w, matrixerr.Forbidden("you may only set your own typing state"))
		return
	}
	var req struct {
		Typing  *bool `json:"typing"`
		Timeout int64 `json:"timeout"`
	}
	if err := readJSON(r, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	if req.Typing == nil {
		matrixerr.Write(w, matrixerr.MissingParam("typing is required"))
		return
	}
	if err := s.rooms.SetTyping(c.UserID, r.PathValue("roomId"), *req.Typing, time.Duration(req.Timeout)*time.Millisecond); err != nil {
		matrixerr.Write(w, err)
		return
	}
	s.federateTyping(r, c, r.PathValue("roomId"), *req.Typing)
	writeJSON(w, struct{}{})
}

func (s *Server) receipt(w http.ResponseWriter, r *http.Request, c *caller) {
	var req struct {
		ThreadID *string `json:"thread_id"`
	}
	if err := readJSON(r, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	roomID, typ, eventID := r.PathValue("roomId"), r.PathValue("receiptType"), r.PathValue("eventId")
	threadID := ""
	if req.ThreadID != nil {
		// receipts.yaml: 400 for an empty thread_id, or one given for a
		// receipt type that has no threads.
		if *req.ThreadID == "" || typ == "m.fully_read" {
			matrixerr.Write(w, matrixerr.InvalidParam("thread_id must be a non-empty string on m.read or m.read.private"))
			return
		}
		threadID = *req.ThreadID
	}
	var err error
	if typ == "m.fully_read" {
		err = s.setFullyRead(r, c, roomID, eventID)
	} else {
		err = s.rooms.SetReceipt(r.Context(), c.UserID, roomID, typ, eventID, threadID)
	}
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	if typ == "m.read" {
		s.federateReceipt(r, c, roomID, eventID, threadID)
	}
	writeJSON(w, struct{}{})
}

// readMarkers implements POST /rooms/{roomId}/read_markers.
func (s *Server) readMarkers(w http.ResponseWriter, r *http.Request, c *caller) {
	var req struct {
		FullyRead   string `json:"m.fully_read"`
		Read        string `json:"m.read"`
		ReadPrivate string `json:"m.read.private"`
	}
	if err := readJSON(r, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	roomID := r.PathValue("roomId")
	if req.FullyRead != "" {
		if err := s.setFullyRead(r, c, roomID, req.FullyRead); err != nil {
			matrixerr.Write(w, err)
			return
		}
	}
	for typ, id := range map[string]string{"m.read": req.Read, "m.read.private": req.ReadPrivate} {
		if id == "" {
			continue
		}
		if err := s.rooms.SetReceipt(r.Context(), c.UserID, roomID, typ, id, ""); err != nil {
			matrixerr.Write(w, err)
			return
		}
		if typ == "m.read" {
			s.federateReceipt(r, c, roomID, id, "")
		}
	}
	writeJSON(w, struct{}{})
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
