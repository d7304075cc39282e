package matrix

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
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
			Membership: "invite", IsDirect: req.IsDirect})
		if err != nil {
			slog.Warn("createRoom: invite of a user on another server failed", "room", roomID, "invitee", u, "err", err)
		}
	}
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
