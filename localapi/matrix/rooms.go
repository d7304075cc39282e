package matrix

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

func (s *Server) profileOf(c *caller) room.Profile { return s.localProfile(c.Localpart) }

// localProfile is a local user's displayname and avatar_url, for the
// member events that carry them.
func (s *Server) localProfile(localpart string) room.Profile {
	u, err := s.accounts.Get(localpart)
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
	if req.RoomAliasName != "" {
		if err := s.exclusiveAlias(c, "#"+req.RoomAliasName+":"+s.accounts.ServerName()); err != nil {
			matrixerr.Write(w, err)
			return
		}
	}
	for _, u := range req.Invite {
		// MSC4155: a local invitee who blocks the creator refuses the
		// whole request, before the room exists (spec v1.18 createRoom
		// 403 M_INVITE_BLOCKED).
		if err := s.checkInvite(u, c.UserID); err != nil {
			matrixerr.Write(w, err)
			return
		}
	}
	req.RemoteInvitesApart = s.fed != nil
	req.InviteeProfiles = s.inviteeProfiles(r.Context(), req.Invite)
	id, err := s.rooms.CreateRoom(r.Context(), c.UserID, s.profileOf(c), req)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	s.inviteRemote(r.Context(), c.UserID, id, req)
	writeJSON(w, map[string]any{"room_id": id})
}

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
			if err := s.checkInvite(mr.Target, c.UserID); err != nil {
				matrixerr.Write(w, err)
				return
			}
			mr.Extra = profileContent(s.inviteeProfile(r.Context(), mr.Target))
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
	ts, err := massagedTS(r, c)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	if s.delayedSend(w, r, c, r.PathValue("eventType"), nil, content) {
		return
	}
	id, err := s.rooms.Send(r.Context(), room.SendRequest{Sender: c.UserID, Device: c.Session,
		RoomID: r.PathValue("roomId"), Type: r.PathValue("eventType"), Content: content, TxnID: r.PathValue("txnId"), TS: ts})
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
	if errors.Is(err, room.ErrUnknownRoom) {
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
		if m.Membership == "invite" {
			if err := s.checkInvite(sk, c.UserID); err != nil {
				matrixerr.Write(w, err)
				return
			}
		}
	}
	if typ == "m.room.canonical_alias" && sk == "" {
		if err := s.rooms.CheckCanonicalAlias(r.PathValue("roomId"), content); err != nil {
			matrixerr.Write(w, err)
			return
		}
	}
	ts, err := massagedTS(r, c)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	if s.delayedSend(w, r, c, typ, &sk, content) {
		return
	}
	id, err := s.rooms.Send(r.Context(), room.SendRequest{Sender: c.UserID, Device: c.Session,
		RoomID: r.PathValue("roomId"), Type: typ, StateKey: &sk, Content: content, TS: ts})
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

func validUserID(id string) bool {
	local, server, ok := strings.Cut(id, ":")
	return ok && strings.HasPrefix(local, "@") && len(local) > 1 && server != "" && len(id) <= 255
}

func serverOf(userID string) string {
	_, s, _ := strings.Cut(userID, ":")
	return s
}
