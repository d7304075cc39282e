package matrix

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// joinElsewhere follows up a local join to a restricted room that this
// server could not vouch for (Client-Server API §"Restricted rooms"): when
// the user meets the room's conditions but no local user may invite, or
// this server cannot see the allowed rooms, another server in the room may
// authorise the join, so it goes through them. It returns nil once joined,
// else the error for the client: a join nobody could vouch for is a
// refused join, 403, with the resident server's errcode kept.
func (s *Server) joinElsewhere(r *http.Request, c *caller, roomID string, via []string, reason string, extra map[string]json.RawMessage, err error) error {
	var me *matrixerr.Error
	if !errors.As(err, &me) || (me.Code != "M_UNABLE_TO_GRANT_JOIN" && me.Code != "M_UNABLE_TO_AUTHORISE_JOIN") {
		return err
	}
	if s.fed != nil {
		servers, _ := s.rooms.JoinedServers(roomID)
		servers = dedupe(append(slices.Clone(via), servers...))
		if s.hasOtherServer(servers) {
			rerr := s.joinRemote(r, c, roomID, servers, reason, extra)
			if rerr == nil {
				return nil
			}
			if !errors.As(rerr, &me) {
				return rerr
			}
		}
	}
	return &matrixerr.Error{Status: http.StatusForbidden, Code: me.Code, Message: me.Message}
}
