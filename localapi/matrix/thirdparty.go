package matrix

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// thirdPartyRoutes registers the third-party lookup endpoints
// (Client-Server API §"Third-party Networks"). Third-party networks are
// reached through application-service bridges, and Hearth runs none, so
// it knows no protocol: the protocol list is empty, any protocol asked
// about is unknown (404 M_NOT_FOUND, as the spec answers for an unknown
// protocol or nothing found), and the reverse lookups by Matrix ID find
// nothing ([]). Element asks for the protocols on every start.
func (s *Server) thirdPartyRoutes() {
	m, a, v3 := s.mux, s.authed, "/_matrix/client/v3"
	m.HandleFunc("GET "+v3+"/thirdparty/protocols", a(func(w http.ResponseWriter, r *http.Request, c *caller) {
		writeJSON(w, map[string]any{})
	}))
	unknown := a(func(w http.ResponseWriter, r *http.Request, c *caller) {
		matrixerr.Write(w, matrixerr.NotFound("no bridge here serves the protocol "+r.PathValue("protocol")))
	})
	m.HandleFunc("GET "+v3+"/thirdparty/protocol/{protocol}", unknown)
	m.HandleFunc("GET "+v3+"/thirdparty/location/{protocol}", unknown)
	m.HandleFunc("GET "+v3+"/thirdparty/user/{protocol}", unknown)
	none := a(func(w http.ResponseWriter, r *http.Request, c *caller) { writeJSON(w, []any{}) })
	m.HandleFunc("GET "+v3+"/thirdparty/location", none)
	m.HandleFunc("GET "+v3+"/thirdparty/user", none)
}
