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

func (s *Server) createRoom(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req room.CreateRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.RoomAliasName != "" {
		if err := s.exclusiveAlias(c, "#"+req.RoomAliasName+":"+s.accounts.ServerName()); err != nil {
			return err
		}
	}
	for _, u := range req.Invite {
		// MSC4155: a local invitee who blocks the creator refuses the
		// whole request, before the room exists (spec v1.18 createRoom
		// 403 M_INVITE_BLOCKED).
		if err := s.checkInvite(u, c.UserID); err != nil {
			return err
		}
	}
	req.RemoteInvitesApart = s.fed != nil
	req.InviteeProfiles = s.inviteeProfiles(r.Context(), req.Invite)
	id, err := s.rooms.CreateRoom(r.Context(), c.UserID, s.profileOf(c), req)
	if err != nil {
		return err
	}
	s.inviteRemote(r.Context(), c.UserID, id, req)
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"room_id": id})
	return nil
}

// membership serves leave, invite, kick, ban and unban.
func (s *Server) membership(op string) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, c *caller) error {
		var req struct {
			UserID string `json:"user_id"`
			Reason string `json:"reason"`
		}
		if err := readJSON(r, &req); err != nil {
			return err
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
				return matrixerr.MissingParam("user_id is required")
			}
			if !validUserID(mr.Target) {
				return matrixerr.InvalidParam("invalid user_id")
			}
		}
		if op == "invite" {
			if err := s.checkInvite(mr.Target, c.UserID); err != nil {
				return err
			}
			mr.Extra = profileContent(s.inviteeProfile(r.Context(), mr.Target))
		}
		if handled, err := s.remoteMembership(w, r, op, mr); handled {
			return err
		}
		if op == "invite" && serverOf(mr.Target) != s.accounts.ServerName() {
			return matrixerr.Forbidden("inviting users on other servers needs federation, which is not enabled")
		}
		if !s.rooms.RoomExists(mr.RoomID) {
			if op == "leave" {
				return matrixerr.NotFound("unknown room")
			}
			return matrixerr.Forbidden("unknown room")
		}
		if _, err := s.rooms.ChangeMembership(r.Context(), mr); err != nil {
			return err
		}
		matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	}
}

func (s *Server) forget(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.rooms.Forget(r.Context(), c.UserID, r.PathValue("roomId")); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (s *Server) sendMessage(w http.ResponseWriter, r *http.Request, c *caller) error {
	content, err := readBody(r)
	if err != nil {
		return err
	}
	ts, err := massagedTS(r, c)
	if err != nil {
		return err
	}
	if handled, err := s.delayedSend(w, r, c, r.PathValue("eventType"), nil, content); handled {
		return err
	}
	id, err := s.rooms.Send(r.Context(), room.SendRequest{Sender: c.UserID, Device: c.Session,
		RoomID: r.PathValue("roomId"), Type: r.PathValue("eventType"), Content: content, TxnID: r.PathValue("txnId"), TS: ts})
	if err != nil {
		return roomErr(err)
	}
	writeEventID(w, id) // send_response.go
	return nil
}

func (s *Server) redact(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Reason string `json:"reason,omitempty"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	content, _ := json.Marshal(req)
	id, err := s.rooms.Send(r.Context(), room.SendRequest{Sender: c.UserID, Device: c.Session,
		RoomID: r.PathValue("roomId"), Type: "m.room.redaction", Content: content,
		TxnID: r.PathValue("txnId"), Redacts: r.PathValue("eventId")})
	if err != nil {
		return roomErr(err)
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"event_id": id})
	return nil
}

// roomErr hides whether a room exists from non-members: sending into an
// unknown room is M_FORBIDDEN, as for a room one is not in.
func roomErr(err error) error {
	if errors.Is(err, room.ErrUnknownRoom) {
		return matrixerr.Forbidden("you are not joined to this room")
	}
	return err
}

func (s *Server) putState(w http.ResponseWriter, r *http.Request, c *caller) error {
	content, err := readBody(r)
	if err != nil {
		return err
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
			return matrixerr.BadJSON("invalid membership")
		}
		if m.Membership == "invite" {
			if err := s.checkInvite(sk, c.UserID); err != nil {
				return err
			}
		}
	}
	if typ == "m.room.canonical_alias" && sk == "" {
		if err := s.rooms.CheckCanonicalAlias(r.PathValue("roomId"), content); err != nil {
			return err
		}
	}
	ts, err := massagedTS(r, c)
	if err != nil {
		return err
	}
	if handled, err := s.delayedSend(w, r, c, typ, &sk, content); handled {
		return err
	}
	id, err := s.rooms.Send(r.Context(), room.SendRequest{Sender: c.UserID, Device: c.Session,
		RoomID: r.PathValue("roomId"), Type: typ, StateKey: &sk, Content: content, TS: ts})
	if err != nil {
		return roomErr(err)
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"event_id": id})
	return nil
}

func (s *Server) getState(w http.ResponseWriter, r *http.Request, c *caller) error {
	evs, err := s.rooms.State(c.UserID, r.PathValue("roomId"))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, evs)
	return nil
}

// getStateEvent serves GET /state/{type}/{stateKey}: the content, or with
// ?format=event the whole event (spec v1.16).
func (s *Server) getStateEvent(w http.ResponseWriter, r *http.Request, c *caller) error {
	ev, err := s.rooms.StateEvent(c.UserID, r.PathValue("roomId"), r.PathValue("eventType"), r.PathValue("stateKey"))
	if err != nil {
		return err
	}
	if r.URL.Query().Get("format") == "event" {
		matrixerr.WriteJSON(w, http.StatusOK, ev)
		return nil
	}
	matrixerr.WriteJSON(w, http.StatusOK, ev.Content)
	return nil
}

// members implements GET /rooms/{roomId}/members: at (a sync or
// pagination token) asks for the members as at that point, membership and
// not_membership filter them.
func (s *Server) members(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	at, err := queryToken(q, "at", math.MaxUint64)
	if err != nil {
		return err
	}
	evs, err := s.rooms.MemberEvents(c.UserID, r.PathValue("roomId"), q.Get("membership"), q.Get("not_membership"), at)
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []room.ClientEvent{}
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"chunk": evs})
	return nil
}

func (s *Server) joinedMembers(w http.ResponseWriter, r *http.Request, c *caller) error {
	m, err := s.rooms.JoinedMembers(c.UserID, r.PathValue("roomId"))
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"joined": m})
	return nil
}

func (s *Server) joinedRooms(w http.ResponseWriter, r *http.Request, c *caller) error {
	ids, err := s.rooms.JoinedRooms(c.UserID)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"joined_rooms": ids})
	return nil
}

func validUserID(id string) bool {
	local, server, ok := strings.Cut(id, ":")
	return ok && strings.HasPrefix(local, "@") && len(local) > 1 && server != "" && len(id) <= 255
}

func serverOf(userID string) string {
	_, s, _ := strings.Cut(userID, ":")
	return s
}
