package matrix

import (
	"context"
	"log/slog"

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
