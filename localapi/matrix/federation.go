package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// Federation is what the client API needs of the federation service
// (package federation) for rooms and aliases on other servers.
type Federation interface {
	ResolveAlias(ctx context.Context, alias string) (roomID string, servers []string, err error)
	JoinRoom(ctx context.Context, userID, roomID string, via []string, content map[string]any) error
	Invite(ctx context.Context, req room.MembershipRequest) (eventID string, err error)
	LeaveRoom(ctx context.Context, userID, roomID string, via []string) error
	Backfill(ctx context.Context, roomID string, limit int) (int, error)
	Knock(ctx context.Context, userID, roomID string, via []string, reason string) error
	// Ephemeral events and queries (federation/ephemeral.go, directory.go).
	SendTyping(ctx context.Context, userID, roomID string, typing bool) error
	SendReceipt(ctx context.Context, userID, roomID, eventID, threadID string) error
	SendPresence(ctx context.Context, userID, presence, statusMsg string, lastActiveAgo int64, currentlyActive bool) error
	RemotePresence(from, to uint64) (map[string]json.RawMessage, error)
	QueryProfile(ctx context.Context, userID, field string) (displayName, avatarURL string, err error)
	PublicRooms(ctx context.Context, server string, limit int, since, filter string) (json.RawMessage, error)
	Hierarchy(ctx context.Context, roomID string, via []string, suggestedOnly bool) (*room.SpaceHierarchy, error)
}

// SetFederation enables the parts of the client API that reach other
// servers; without it they answer as a server with no federation does.
func (s *Server) SetFederation(f Federation) { s.fed, s.presence.fed = f, f }

// roomAndServers resolves a room ID or alias to a room ID and the servers
// to join it through: those an alias lookup names, then ?via= (and the
// deprecated ?server_name=) of POST /join (Client-Server API §"Joining
// rooms"), then the room ID's own server for versions that have one.
func (s *Server) roomAndServers(r *http.Request, target string) (string, []string, error) {
	var roomID string
	var servers []string
	switch {
	case strings.HasPrefix(target, "#"):
		id, via, err := s.resolveAlias(r.Context(), target)
		if err != nil {
			return "", nil, err
		}
		roomID, servers = id, via
	case strings.HasPrefix(target, "!"):
		roomID = target
	default:
		return "", nil, matrixerr.InvalidParam("expected a room ID or alias")
	}
	q := r.URL.Query()
	for _, srv := range slices.Concat(q["via"], q["server_name"]) {
		// A server name with a non-numeric port (or any other malformed
		// one) is a bad request, not a server to try (Appendices §"Server
		// Name").
		if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(srv)); !ok {
			return "", nil, matrixerr.InvalidParam("invalid server name in via: " + srv)
		}
	}
	servers = append(servers, q["via"]...)
	servers = append(servers, q["server_name"]...)
	if srv := serverOf(roomID); srv != "" && len(servers) == 0 {
		// Only as a last resort: servers the client named are the ones it
		// asked for (a restricted join through them alone may fail).
		servers = append(servers, srv)
	}
	return roomID, dedupe(servers), nil
}

// resolveAlias answers for local aliases and asks the alias's server for
// others.
func (s *Server) resolveAlias(ctx context.Context, alias string) (string, []string, error) {
	if serverOf(alias) == s.accounts.ServerName() || s.fed == nil {
		id, servers, err := s.rooms.ResolveAlias(alias)
		var me *matrixerr.Error
		if errors.As(err, &me) && me.Code == "M_NOT_FOUND" && serverOf(alias) == s.accounts.ServerName() &&
			s.appsvc != nil && s.appsvc.QueryAlias(ctx, alias) {
			// An appservice claims the alias and made its room just now.
			return s.rooms.ResolveAlias(alias)
		}
		return id, servers, err
	}
	return s.fed.ResolveAlias(ctx, alias)
}

func (s *Server) joinRemote(r *http.Request, c *caller, roomID string, via []string, reason string, extra map[string]json.RawMessage) error {
	content := map[string]any{}
	for k, v := range extra {
		content[k] = v
	}
	content["membership"] = "join"
	s.profileOf(c).SetOn(content)
	if reason != "" {
		content["reason"] = reason
	}
	return s.fed.JoinRoom(r.Context(), c.UserID, roomID, via, content)
}

// remoteMembership handles the membership changes that go through another
// server: inviting a remote user, and declining an invite to or
// withdrawing a knock on a room no local user is in (leaveRemote). It
// reports whether it handled the request, and the error to answer with.
func (s *Server) remoteMembership(w http.ResponseWriter, r *http.Request, op string, mr room.MembershipRequest) (bool, error) {
	if s.fed == nil {
		return false, nil
	}
	switch {
	case op == "invite" && serverOf(mr.Target) != s.accounts.ServerName():
		if _, err := s.fed.Invite(r.Context(), mr); err != nil {
			return true, err
		}
	case op == "leave":
		handled, err := s.leaveRemote(r.Context(), mr.Sender, mr.RoomID)
		if !handled {
			return false, nil
		}
		if err != nil {
			return true, err
		}
	default:
		return false, nil
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return true, nil
}

// leaveRemote declines an invite to, or withdraws a knock on, a room no
// local user is joined to: this server holds no state of the room to
// build the leave on, so it goes through a resident server (make_leave,
// send_leave): the inviting server, else the room's own. An invite whose
// servers cannot take the leave (gone, unreachable, no longer in the
// room) is declined here with an out-of-band leave, as rejecting an
// invite always succeeds for the invitee (Client-Server API §"Leaving
// rooms"). handled is false when the room engine builds the leave: no
// federation, a room a local user is in, no invite or knock, or an
// invite made here.
func (s *Server) leaveRemote(ctx context.Context, userID, roomID string) (handled bool, err error) {
	if s.fed == nil || s.rooms.HasLocalJoined(roomID) {
		return false, nil
	}
	ev := s.rooms.CurrentStatePDU(roomID, "m.room.member", userID)
	if ev == nil {
		return false, nil
	}
	sender := serverOf(string(ev.SenderID()))
	switch m, _ := ev.Membership(); {
	case m == "invite" && sender != s.accounts.ServerName():
		err := s.fed.LeaveRoom(ctx, userID, roomID, dedupe([]string{sender, serverOf(roomID)}))
		if err != nil {
			if _, lerr := s.rooms.RejectInviteLocally(ctx, userID, roomID); lerr == nil {
				return true, nil
			}
		}
		return true, err
	case m == "knock":
		return true, s.fed.LeaveRoom(ctx, userID, roomID, s.knockServers(roomID, ev))
	}
	return false, nil
}

// knockServers are the servers a knock can be withdrawn through: the
// room's own, and those of the room's joined members that the knock's
// knock_room_state names (the server knocked through is among them).
func (s *Server) knockServers(roomID string, knock gomatrixserverlib.PDU) []string {
	servers := []string{serverOf(roomID)}
	var u struct {
		State []struct {
			Type     string `json:"type"`
			StateKey string `json:"state_key"`
			Sender   string `json:"sender"`
		} `json:"knock_room_state"`
	}
	if json.Unmarshal(knock.Unsigned(), &u) == nil {
		for _, ev := range u.State {
			servers = append(servers, serverOf(ev.Sender))
		}
	}
	return dedupe(servers)
}

func (s *Server) hasOtherServer(servers []string) bool {
	for _, srv := range servers {
		if srv != s.accounts.ServerName() {
			return true
		}
	}
	return false
}

func dedupe(list []string) []string {
	seen := map[string]bool{}
	out := list[:0]
	for _, x := range list {
		if x != "" && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
