package federation

import (
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Server ACLs on inbound federation (Server-Server API §"Server Access
// Control Lists"): a server the room's m.room.server_acl denies gets 403
// M_FORBIDDEN from every endpoint about that room (make_join, send_join,
// backfill, state, …), and its PDUs and room EDUs in /send are refused
// one by one. The rules themselves live with the room state
// (internal/room/state_acl.go), which also keeps outbound events from denied
// servers.

var errACLDenied = errors.New("the room's server ACL denies this server")

// deniedByACL is 403 when the request's path names a room whose ACL
// denies origin. Endpoints without a {roomID} pass.
func (s *Service) deniedByACL(r *http.Request, origin spec.ServerName) error {
	roomID := r.PathValue("roomID")
	if roomID == "" || s.aclAllows(roomID, origin) {
		return nil
	}
	return matrixerr.Forbidden("server " + string(origin) + " is denied by the room's server ACL")
}

// aclAllows reports whether the room's ACL lets origin take part.
func (s *Service) aclAllows(roomID string, origin spec.ServerName) bool {
	return s.cfg.Rooms.ServerAllowed(roomID, string(origin))
}

// checkACL is aclAllows as an error, for a PDU's result in /send.
func (s *Service) checkACL(roomID string, origin spec.ServerName) error {
	if !s.aclAllows(roomID, origin) {
		return errACLDenied
	}
	return nil
}
