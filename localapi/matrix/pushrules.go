package matrix

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/push"
)

// pushRules serves GET /pushrules/ and /pushrules/global/ with the spec's
// predefined rules (Client-Server API §"Push Rules"). Clients fetch these
// before their first sync; changing rules arrives with push support.
func (s *Server) pushRules(w http.ResponseWriter, r *http.Request, c *caller) {
	rs, err := push.Defaults(c.UserID)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	if r.URL.Path == "/_matrix/client/v3/pushrules/global/" {
		writeJSON(w, rs)
		return
	}
	writeJSON(w, map[string]any{"global": rs})
}
