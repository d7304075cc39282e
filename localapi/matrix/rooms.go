package matrix

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

func (s *Server) profileOf(c *caller) room.Profile {
	u, err := s.accounts.Get(c.Localpart)
	if err != nil || u == nil {
		return room.Profile{}
	}
	return room.Profile{DisplayName: u.DisplayName, AvatarURL: u.AvatarURL}
}

func (s *Server) createRoom(w http.ResponseWriter, r *http.Request, c *caller) {
	var req room.CreateRequest
	if err := readJSON(r, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	req.RemoteInvitesApart = s.fed != nil
	id, err := s.rooms.CreateRoom(r.Context(), c.UserID, s.profileOf(c), req)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	s.inviteRemote(r.Context(), c.UserID, id, req)
	writeJSON(w, map[string]any{"room_id": id})
}

// joinRoom serves both POST /join/{roomIdOrAlias} and /rooms/{roomId}/join.
func (s *Server) joinRoom(w http.ResponseWriter, r *http.Request, c *caller) {
	target := r.PathValue("roomIdOrAlias")
	if target == "" {
		target = r.PathValue("roomId")
	}
	var req struct {
		Reason string `json:"reason"`
	}
	var body map[string]json.RawMessage
	if err := readJSON(r, &body); err != nil {
		matrixerr.Write(w, err)
		return
	}
	if raw, ok := body["reason"]; ok {
		if err := json.Unmarshal(raw, &req.Reason); err != nil {
			matrixerr.Write(w, matrixerr.BadJSON("reason must be a string"))
			return
		}
	}
	roomID, via, err := s.roomAndServers(r, target)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	if s.fed != nil && !s.rooms.HasLocalJoined(roomID) && s.hasOtherServer(via) {
		// No one here is in the room: join through another server.
		if err := s.joinRemote(r, c, roomID, via, req.Reason, joinExtra(body)); err != nil {
			matrixerr.Write(w, err)
			return
		}
		s.carryToUpgraded(r.Context(), c.UserID, roomID) // upgrade.go
		writeJSON(w, map[string]any{"room_id": roomID})
		return
	}
	if !s.rooms.RoomExists(roomID) {
		matrixerr.Write(w, matrixerr.NotFound("no known server can join that room"))
		return
	}
	if _, err := s.rooms.ChangeMembership(r.Context(), room.MembershipRequest{Sender: c.UserID, RoomID: roomID,
		Target: c.UserID, Membership: "join", Reason: req.Reason, Profile: s.profileOf(c),
		Extra: joinExtra(body)}); err != nil {
		if err = s.joinElsewhere(r, c, roomID, via, req.Reason, joinExtra(body), err); err != nil {
			matrixerr.Write(w, err)
			return
		}
	}
	s.carryToUpgraded(r.Context(), c.UserID, roomID) // upgrade.go
	writeJSON(w, map[string]any{"room_id": roomID})
}

// joinExtra is the custom content of a join request's body that goes into
// the member event (Complement "POST /join/:room_id can join a room with
// custom content"): everything but the fields the spec gives a meaning
// to. membership is always set by the server.
func joinExtra(body map[string]json.RawMessage) map[string]json.RawMessage {
	extra := map[string]json.RawMessage{}
	for k, v := range body {
		switch k {
		case "membership", "reason", "third_party_signed":
			continue
		}
		extra[k] = v
	}
	return extra
}

// inviteeProfile is the invitee's displayname and avatar_url, put into the
// invite event so that clients can show who was invited before they join
// (as Synapse does): read locally for local users, asked of the user's
// server for remote ones, briefly and best effort.
func (s *Server) inviteeProfile(r *http.Request, userID string) map[string]json.RawMessage {
	var name, avatar string
	if serverOf(userID) == s.accounts.ServerName() {
		u, err := s.accounts.Get(s.accounts.Localpart(userID))
		if err != nil || u == nil {
			return nil
		}
		name, avatar = u.DisplayName, u.AvatarURL
	} else if s.fed != nil {
		ctx, cancel := context.WithTimeout(r.Context(), inviteProfileTimeout)
		defer cancel()
		name, avatar, _ = s.fed.QueryProfile(ctx, userID, "")
	}
	out := map[string]json.RawMessage{}
	if name != "" {
		out["displayname"], _ = json.Marshal(name)
	}
	if avatar != "" {
		out["avatar_url"], _ = json.Marshal(avatar)
	}
	return out
}

// inviteProfileTimeout bounds the profile query an invite of a remote user
// makes: the invite must not wait on a slow server for a nicety.
const inviteProfileTimeout = 2 * time.Second

// membership serves leave, invite, kick, ban and unban.
func (s *Server) membership(op string) func(http.ResponseWriter, *http.Request, *caller) {
	return func(w http.ResponseWriter, r *http.Request, c *caller) {
		var req struct {
			UserID string `json:"user_id"`
			Reason string `json:"reason"`
		}
		if err := readJSON(r, &req); err != nil {
			matrixerr.Write(w, err)
			return
		}
		mr := room.MembershipRequest{Sender: c.UserID, RoomID: r.PathValue("roomId"), Target: req.UserID, Reason: req.Reason}
		switch op {
		case "leave":
			mr.Target, mr.Membership = c.UserID, "leave"
		case "invite":
			mr.Membership = "invite"
		case "kick":
			mr.Membership, mr.OnlyIfMember = "leave", true
		case "ban":
			mr.Membership = "ban"
		case "unban":
			mr.Membership, mr.OnlyIfBanned = "leave", true
		}
		if op != "leave" {
			if mr.Target == "" {
				matrixerr.Write(w, matrixerr.MissingParam("user_id is required"))
				return
			}
			if !validUserID(mr.Target) {
				matrixerr.Write(w, matrixerr.InvalidParam("invalid user_id"))
				return
			}
		}
		if op == "invite" {
			mr.Extra = s.inviteeProfile(r, mr.Target)
		}
		if s.remoteMembership(w, r, op, mr) {
			return
		}
		if op == "invite" && serverOf(mr.Target) != s.accounts.ServerName() {
			matrixerr.Write(w, matrixerr.Forbidden("inviting users on other servers needs federation, which is not enabled"))
			return
		}
		if !s.rooms.RoomExists(mr.RoomID) {
			if op == "leave" {
				matrixerr.Write(w, matrixerr.NotFound("unknown room"))
			} else {
				matrixerr.Write(w, matrixerr.Forbidden("unknown room"))
			}
			return
		}
		if _, err := s.rooms.ChangeMembership(r.Context(), mr); err != nil {
			matrixerr.Write(w, err)
			return
		}
		writeJSON(w, struct{}{})
	}
}

func (s *Server) forget(w http.ResponseWriter, r *http.Request, c *caller) {
	if err := s.rooms.Forget(r.Context(), c.UserID, r.PathValue("roomId")); err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

func (s *Server) sendMessage(w http.ResponseWriter, r *http.Request, c *caller) {
	content, err := readBody(r)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	id, err := s.rooms.Send(r.Context(), room.SendRequest{Sender: c.UserID, Device: c.Session,
		RoomID: r.PathValue("roomId"), Type: r.PathValue("eventType"), Content: content, TxnID: r.PathValue("txnId")})
	if err != nil {
		matrixerr.Write(w, roomErr(err))
		return
	}
	writeJSON(w, map[string]any{"event_id": id})
}

func (s *Server) redact(w http.ResponseWriter, r *http.Request, c *caller) {
	var req struct {
		Reason string `json:"reason,omitempty"`
	}
	if err := readJSON(r, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	content, _ := json.Marshal(req)
	id, err := s.rooms.Send(r.Context(), room.SendRequest{Sender: c.UserID, Device: c.Session,
		RoomID: r.PathValue("roomId"), Type: "m.room.redaction", Content: content,
		TxnID: r.PathValue("txnId"), Redacts: r.PathValue("eventId")})
	if err != nil {
		matrixerr.Write(w, roomErr(err))
		return
	}
	writeJSON(w, map[string]any{"event_id": id})
}

// roomErr hides whether a room exists from non-members: sending into an
// unknown room is M_FORBIDDEN, as for a room one is not in.
func roomErr(err error) error {
	if me, ok := err.(*matrixerr.Error); ok && me.Code == "M_NOT_FOUND" && strings.HasPrefix(me.Message, "unknown room") {
		return matrixerr.Forbidden("you are not joined to this room")
	}
	return err
}

func (s *Server) putState(w http.ResponseWriter, r *http.Request, c *caller) {
	content, err := readBody(r)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	sk := r.PathValue("stateKey")
	typ := r.PathValue("eventType")
	if typ == "m.room.member" {
		// Membership goes through its own endpoints, whose checks apply.
		var m struct {
			Membership string `json:"membership"`
		}
		json.Unmarshal(content, &m)
		if m.Membership != "join" && m.Membership != "leave" && m.Membership != "invite" && m.Membership != "ban" && m.Membership != "knock" {
			matrixerr.Write(w, matrixerr.BadJSON("invalid membership"))
			return
		}
	}
	if typ == "m.room.canonical_alias" && sk == "" {
		if err := s.rooms.CheckCanonicalAlias(r.PathValue("roomId"), content); err != nil {
			matrixerr.Write(w, err)
			return
		}
	}
	id, err := s.rooms.Send(r.Context(), room.SendRequest{Sender: c.UserID, Device: c.Session,
		RoomID: r.PathValue("roomId"), Type: typ, StateKey: &sk, Content: content})
	if err != nil {
		matrixerr.Write(w, roomErr(err))
		return
	}
	writeJSON(w, map[string]any{"event_id": id})
}

func (s *Server) getState(w http.ResponseWriter, r *http.Request, c *caller) {
	evs, err := s.rooms.State(c.UserID, r.PathValue("roomId"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, evs)
}

// getStateEvent serves GET /state/{type}/{stateKey}: the content, or with
// ?format=event the whole event (spec v1.16).
func (s *Server) getStateEvent(w http.ResponseWriter, r *http.Request, c *caller) {
	ev, err := s.rooms.StateEvent(c.UserID, r.PathValue("roomId"), r.PathValue("eventType"), r.PathValue("stateKey"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	if r.URL.Query().Get("format") == "event" {
		writeJSON(w, ev)
		return
	}
	writeJSON(w, ev.Content)
}

// members implements GET /rooms/{roomId}/members: at (a sync or
// pagination token) asks for the members as at that point, membership and
// not_membership filter them.
func (s *Server) members(w http.ResponseWriter, r *http.Request, c *caller) {
	q := r.URL.Query()
	at, err := queryToken(q, "at", math.MaxUint64)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	evs, err := s.rooms.MemberEvents(c.UserID, r.PathValue("roomId"), q.Get("membership"), q.Get("not_membership"), at)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	if evs == nil {
		evs = []room.ClientEvent{}
	}
	writeJSON(w, map[string]any{"chunk": evs})
}

func (s *Server) joinedMembers(w http.ResponseWriter, r *http.Request, c *caller) {
	m, err := s.rooms.JoinedMembers(c.UserID, r.PathValue("roomId"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{"joined": m})
}

func (s *Server) joinedRooms(w http.ResponseWriter, r *http.Request, c *caller) {
	ids, err := s.rooms.JoinedRooms(c.UserID)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{"joined_rooms": ids})
}

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

func validUserID(id string) bool {
	local, server, ok := strings.Cut(id, ":")
	return ok && strings.HasPrefix(local, "@") && len(local) > 1 && server != "" && len(id) <= 255
}

func serverOf(userID string) string {
	_, s, _ := strings.Cut(userID, ":")
	return s
}
