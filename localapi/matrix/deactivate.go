package matrix

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

func (s *Server) deactivateRoutes() {
	s.mux.HandleFunc("POST /_matrix/client/v3/account/deactivate", s.authed(s.deactivate))
	// The room engine serves erased users' events redacted; which users
	// asked for that is the account service's to say.
	some, err := s.accounts.AnyErased()
	if err != nil {
		slog.Warn("deactivate: list erased users", "err", err)
		some = true // ask about each sender rather than serve erased events whole
	}
	s.rooms.SetErased(s.accounts.ErasedIn, some)
}

// deactivate implements POST /account/deactivate (Client-Server API
// §"Account deactivation"), behind UIA with the user's password. The
// account service makes the account unusable first (password, devices
// and tokens gone, profile cleared, the localpart kept reserved), so a
// failure later on cannot leave a half-closed account someone can still
// log into; then the device keys and pushers go, and the user leaves
// every room and declines every invite. With erase, the user's events are
// from then on served redacted to anyone who could not see them at that
// moment (room.Engine.MarkErased), and their account data is deleted.
//
// The owner account (the first admin, made at first start) may be
// deactivated like any other: the CLI and tray talk to the control API
// with the per-install secret, not with the owner's Matrix login, so they
// keep working; only "open chat" for that account stops, with
// M_USER_DEACTIVATED, and `hearth account add` makes a new one.
//
// Hearth keeps no third-party identifiers, so there is nothing to unbind
// on an identity server: id_server_unbind_result is "no-support".
func (s *Server) deactivate(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Erase    bool   `json:"erase"`
		IDServer string `json:"id_server"`
	}
	if err := s.readWithUIA(r, c, &req); err != nil {
		return err
	}
	devices, err := s.accounts.Deactivate(r.Context(), c.Localpart, req.Erase)
	if err != nil {
		return err
	}
	s.presence.reread(c.Localpart) // deactivation stored "offline"
	if pos, erased := s.accounts.ErasedAt(c.UserID); erased {
		s.rooms.MarkErased(c.UserID, pos)
	}
	// The account is closed; what follows cleans up after it and must run
	// to the end even if the client hangs up.
	ctx := context.WithoutCancel(r.Context())
	if err := s.dropDevices(ctx, c, devices); err != nil {
		slog.Warn("deactivate: drop devices' keys and pushers", "user", c.UserID, "err", err)
	}
	if s.push != nil {
		// Pushers set before their device was recorded belong to none.
		if err := s.push.RemovePushers(ctx, c.UserID); err != nil {
			slog.Warn("deactivate: drop pushers", "user", c.UserID, "err", err)
		}
	}
	if err := s.leaveAll(ctx, c.UserID); err != nil {
		slog.Warn("deactivate: leave rooms", "user", c.UserID, "err", err)
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"id_server_unbind_result": "no-support"})
	return nil
}

// leaveAll leaves every room the user is joined to, declines every invite
// and withdraws every knock, as POST /leave does (leaveRemote for rooms no
// local user is in); a room that fails is logged and the rest still go.
func (s *Server) leaveAll(ctx context.Context, userID string) error {
	list, err := s.rooms.Memberships(userID)
	if err != nil {
		return err
	}
	var last error
	for _, m := range list {
		if m.Membership != "join" && m.Membership != "invite" && m.Membership != "knock" {
			continue
		}
		handled, err := s.leaveRemote(ctx, userID, m.RoomID)
		if !handled {
			_, err = s.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: userID, RoomID: m.RoomID,
				Target: userID, Membership: "leave"})
		}
		if err != nil {
			slog.Info("deactivate: leave room", "room", m.RoomID, "err", err)
			last = err
		}
	}
	return last
}
