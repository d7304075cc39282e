package matrix

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
)

// inviteRemote sends the invites of a new room's users on other servers
// through federation, as POST /invite does (the invitee's server
// countersigns; the signed event is what the room keeps). createRoom
// built the room without them (room.CreateRequest.RemoteInvitesApart).
//
// An invitee whose server cannot be reached, or refuses, is left out and
// the room is still created and returned: the room exists either way, so
// failing the request would only hide it from the client, which can
// invite again with POST /invite. This is what Synapse does too.
func (s *Server) inviteRemote(ctx context.Context, sender, roomID string, req room.CreateRequest) {
	if !req.RemoteInvitesApart {
		return
	}
	// The room exists now: a client that stops waiting must not cut the
	// remaining invites short.
	ctx = context.WithoutCancel(ctx)
	seen := map[string]bool{}
	for _, u := range req.Invite {
		if serverOf(u) == s.accounts.ServerName() || seen[u] {
			continue
		}
		seen[u] = true
		_, err := s.fed.Invite(ctx, room.MembershipRequest{Sender: sender, RoomID: roomID, Target: u,
			Membership: "invite", IsDirect: req.IsDirect, Extra: profileContent(s.inviteeProfile(ctx, u))})
		if err != nil {
			slog.Warn("createRoom: invite of a user on another server failed", "room", roomID, "invitee", u, "err", err)
		}
	}
}

// inviteeProfiles are the profiles of a new room's local invitees, for
// the invites createRoom puts among the room's first events; remote
// invitees get theirs in inviteRemote.
func (s *Server) inviteeProfiles(ctx context.Context, invite []string) map[string]room.Profile {
	out := map[string]room.Profile{}
	for _, u := range invite {
		if serverOf(u) == s.accounts.ServerName() {
			out[u] = s.inviteeProfile(ctx, u)
		}
	}
	return out
}

// inviteeProfile is the invitee's displayname and avatar_url, put into the
// invite event so that clients can show who was invited before they join
// (as Synapse does): read locally for local users, asked of the user's
// server for remote ones, briefly and best effort. Every invite carries
// it, whether made by POST /invite or by createRoom.
func (s *Server) inviteeProfile(ctx context.Context, userID string) room.Profile {
	if serverOf(userID) == s.accounts.ServerName() {
		// Inviting a bridge's ghost that does not exist yet makes the
		// appservice create it (Application Service API §"Querying").
		s.queryLocalUser(ctx, userID)
		return s.localProfile(s.accounts.Localpart(userID))
	}
	if s.fed == nil {
		return room.Profile{}
	}
	ctx, cancel := context.WithTimeout(ctx, inviteProfileTimeout)
	defer cancel()
	name, avatar, _ := s.fed.QueryProfile(ctx, userID, "")
	return room.Profile{DisplayName: name, AvatarURL: avatar}
}

// profileContent is p as member event content (MembershipRequest.Extra).
func profileContent(p room.Profile) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	if p.DisplayName != "" {
		out["displayname"], _ = json.Marshal(p.DisplayName)
	}
	if p.AvatarURL != "" {
		out["avatar_url"], _ = json.Marshal(p.AvatarURL)
	}
	return out
}

// inviteProfileTimeout bounds the profile query an invite of a remote user
// makes: the invite must not wait on a slow server for a nicety.
const inviteProfileTimeout = 2 * time.Second
