package federation

import (
	"context"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Queries between servers (Server-Server API §"Querying for
// information"): those other servers make of this one, and the profile
// query a local client's GET /profile makes of another server.

// queryDirectory resolves one of this server's aliases.
func (s *Service) queryDirectory(w http.ResponseWriter, r *request) error {
	alias := r.URL.Query().Get("room_alias")
	if !strings.HasPrefix(alias, "#") || serverOf(alias) != string(s.cfg.ServerName) {
		return matrixerr.NotFound("not an alias of this server")
	}
	roomID, _, err := s.cfg.Rooms.ResolveAlias(alias)
	if err != nil {
		return err
	}
	servers, err := s.cfg.Rooms.JoinedServers(roomID)
	if err != nil {
		return err
	}
	res := fclient.RespDirectory{RoomID: roomID}
	for _, srv := range servers {
		res.Servers = append(res.Servers, spec.ServerName(srv))
	}
	matrixerr.WriteJSON(w, http.StatusOK, res)
	return nil
}

// localUser returns an active user of this server, or M_NOT_FOUND.
//
// A user ID that is not one at all (a server name with a non-numeric
// port, say) is a bad request, 400 M_INVALID_PARAM, rather than an
// unknown user.
func (s *Service) localUser(userID string) (*account.User, error) {
	if _, err := spec.NewUserID(userID, true); err != nil {
		return nil, matrixerr.InvalidParam("invalid user ID: " + err.Error())
	}
	if !s.isLocalUser(userID) {
		return nil, matrixerr.NotFound("not a user of this server")
	}
	u, err := s.cfg.Accounts.Get(s.cfg.Accounts.Localpart(userID))
	if err != nil {
		return nil, err
	}
	if u == nil || u.Deactivated {
		return nil, matrixerr.NotFound("no such user")
	}
	return u, nil
}

// queryProfile returns a local user's display name and avatar.
func (s *Service) queryProfile(w http.ResponseWriter, r *request) error {
	u, err := s.localUser(r.URL.Query().Get("user_id"))
	if err != nil {
		return err
	}
	res := fclient.RespProfile{DisplayName: u.DisplayName, AvatarURL: u.AvatarURL}
	switch r.URL.Query().Get("field") {
	case "displayname":
		res.AvatarURL = ""
	case "avatar_url":
		res.DisplayName = ""
	}
	matrixerr.WriteJSON(w, http.StatusOK, res)
	return nil
}

// QueryProfile asks a remote user's server for their profile (GET
// /query/profile); field is "", "displayname" or "avatar_url".
func (s *Service) QueryProfile(ctx context.Context, userID, field string) (displayName, avatarURL string, err error) {
	server := serverOf(userID)
	if server == "" {
		return "", "", matrixerr.InvalidParam("invalid user ID")
	}
	res, err := s.cfg.Client.LookupProfile(ctx, s.cfg.ServerName, spec.ServerName(server), userID, field)
	if err != nil {
		return "", "", remoteError(server, err)
	}
	return res.DisplayName, res.AvatarURL, nil
}
