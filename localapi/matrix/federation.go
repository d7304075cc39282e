package matrix

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

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
		return s.rooms.ResolveAlias(alias)
	}
	return s.fed.ResolveAlias(ctx, alias)
}

func (s *Server) joinRemote(r *http.Request, c *caller, roomID string, via []string, reason string, extra map[string]json.RawMessage) error {
	content := map[string]any{}
	for k, v := range extra {
		content[k] = v
	}
	content["membership"] = "join"
	p := s.profileOf(c)
	if p.DisplayName != "" {
		content["displayname"] = p.DisplayName
	}
	if p.AvatarURL != "" {
		content["avatar_url"] = p.AvatarURL
	}
	if reason != "" {
		content["reason"] = reason
	}
	return s.fed.JoinRoom(r.Context(), c.UserID, roomID, via, content)
}

// remoteMembership handles the membership changes that go through another
// server: inviting a remote user, and declining an invite to a room no
// local user is in (through the inviting server). It reports whether it
// handled the request.
func (s *Server) remoteMembership(w http.ResponseWriter, r *http.Request, op string, mr room.MembershipRequest) bool {
	if s.fed == nil {
		return false
	}
	switch {
	case op == "invite" && serverOf(mr.Target) != s.accounts.ServerName():
		if _, err := s.fed.Invite(r.Context(), mr); err != nil {
			matrixerr.Write(w, err)
			return true
		}
	case op == "leave" && !s.rooms.HasLocalJoined(mr.RoomID):
		inv := s.rooms.CurrentStatePDU(mr.RoomID, "m.room.member", mr.Sender)
		if inv == nil {
			return false
		}
		if m, _ := inv.Membership(); m != "invite" || serverOf(string(inv.SenderID())) == s.accounts.ServerName() {
			// Not an invite, or one made here: this server holds the
			// room's state, so the leave is built locally even when no
			// one is joined any more.
			return false
		}
		if err := s.fed.LeaveRoom(r.Context(), mr.Sender, mr.RoomID, []string{serverOf(string(inv.SenderID()))}); err != nil {
			// The inviting server cannot take the leave (gone,
			// unreachable, or no longer in the room): decline here, so
			// the invite stops showing and the room moves to leave.
			if _, lerr := s.rooms.RejectInviteLocally(r.Context(), mr.Sender, mr.RoomID); lerr != nil {
				matrixerr.Write(w, err)
				return true
			}
		}
	default:
		return false
	}
	writeJSON(w, struct{}{})
	return true
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
