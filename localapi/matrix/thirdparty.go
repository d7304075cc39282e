package matrix

import (
	"encoding/json"
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// thirdPartyRoutes registers the third-party lookup endpoints
// (Client-Server API §"Third-party Networks"). Third-party networks are
// reached through application-service bridges: the protocols are those
// the registered appservices list, each lookup is passed to the
// appservices that serve its protocol (Application Service API
// §"Third-party Networks"), and the reverse lookups by Matrix ID to
// every appservice with protocols. Without any, the protocol list is
// empty, any protocol asked about is unknown (404 M_NOT_FOUND, as the
// spec answers for an unknown protocol or nothing found), and the
// reverse lookups find nothing ([]). Element asks for the protocols on
// every start.
func (s *Server) thirdPartyRoutes() {
	m, a, v3 := s.mux, s.authed, "/_matrix/client/v3"
	m.HandleFunc("GET "+v3+"/thirdparty/protocols", a(func(w http.ResponseWriter, r *http.Request, c *caller) error {
		if s.appsvc == nil {
			matrixerr.WriteJSON(w, http.StatusOK, map[string]any{})
			return nil
		}
		matrixerr.WriteJSON(w, http.StatusOK, s.appsvc.ThirdPartyProtocols(r.Context()))
		return nil
	}))
	unknown := func(r *http.Request) error {
		return matrixerr.NotFound("no bridge here serves the protocol " + r.PathValue("protocol"))
	}
	m.HandleFunc("GET "+v3+"/thirdparty/protocol/{protocol}", a(func(w http.ResponseWriter, r *http.Request, c *caller) error {
		if s.appsvc == nil {
			return unknown(r)
		}
		p, ok := s.appsvc.ThirdPartyProtocol(r.Context(), r.PathValue("protocol"))
		if !ok {
			return unknown(r)
		}
		matrixerr.WriteJSON(w, http.StatusOK, p)
		return nil
	}))
	lookup := func(kind string) http.HandlerFunc {
		return a(func(w http.ResponseWriter, r *http.Request, c *caller) error {
			protocol := r.PathValue("protocol")
			if s.appsvc == nil {
				if protocol != "" {
					return unknown(r)
				}
				matrixerr.WriteJSON(w, http.StatusOK, []any{})
				return nil
			}
			list, ok := s.appsvc.ThirdPartyLookup(r.Context(), kind, protocol, r.URL.Query())
			if !ok {
				return unknown(r)
			}
			if list == nil {
				list = []json.RawMessage{}
			}
			matrixerr.WriteJSON(w, http.StatusOK, list)
			return nil
		})
	}
	m.HandleFunc("GET "+v3+"/thirdparty/location/{protocol}", lookup("location"))
	m.HandleFunc("GET "+v3+"/thirdparty/user/{protocol}", lookup("user"))
	m.HandleFunc("GET "+v3+"/thirdparty/location", lookup("location"))
	m.HandleFunc("GET "+v3+"/thirdparty/user", lookup("user"))
}
