package matrix

import (
	"net/http"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// r0Prefixes map the r0 prefixes of the spec's releases before v1.1 to the
// v3 prefixes that replaced them (Client-Server API §"API Standards":
// v1.1 renamed r0 to v3 without changing the endpoints).
var r0Prefixes = [...]struct{ r0, v3 string }{
	{"/_matrix/client/r0/", "/_matrix/client/v3/"},
	{"/_matrix/media/r0/", "/_matrix/media/v3/"},
}

// notInR0 are the v3 endpoints (by their path after the prefix) that
// arrived with v1.1 or later and so never had an r0 form: key backups,
// cross-signing and knocking (v1.1), refresh tokens (v1.3). Endpoints of
// v1 live under another prefix and never match r0Prefixes.
var notInR0 = []string{"room_keys/", "keys/device_signing/", "keys/signatures/", "knock/", "refresh"}

// withR0Alias returns r with an r0 path rewritten to its v3 form, once for
// every route instead of route by route; any other request is returned as
// it is. An r0 path of an endpoint that never existed in r0 stays r0, so it
// meets no route (404 M_UNRECOGNIZED).
func withR0Alias(r *http.Request) *http.Request {
	for _, p := range r0Prefixes {
		rest, ok := strings.CutPrefix(r.URL.Path, p.r0)
		if !ok {
			continue
		}
		for _, n := range notInR0 {
			if strings.HasPrefix(rest, n) {
				return r
			}
		}
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = p.v3 + rest
		if raw, ok := strings.CutPrefix(u.RawPath, p.r0); ok {
			u.RawPath = p.v3 + raw
		}
		r2.URL = &u
		return r2
	}
	return r
}

// federationPaths are the Server-Server API's endpoints (server-server/*.yaml).
// They are served on the federation listener, never on this one, but a
// client asking for one here is told the path is known: 404 for its own
// method and 405 for another, both M_UNRECOGNIZED, as for any known path.
var federationPaths = []string{
	"PUT /_matrix/federation/v1/3pid/onbind",
	"GET /_matrix/federation/v1/backfill/{roomId}",
	"GET /_matrix/federation/v1/event/{eventId}",
	"GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}",
	"PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}",
	"POST /_matrix/federation/v1/get_missing_events/{roomId}",
	"GET /_matrix/federation/v1/hierarchy/{roomId}",
	"PUT /_matrix/federation/v1/invite/{roomId}/{eventId}",
	"GET /_matrix/federation/v1/make_join/{roomId}/{userId}",
	"GET /_matrix/federation/v1/make_knock/{roomId}/{userId}",
	"GET /_matrix/federation/v1/make_leave/{roomId}/{userId}",
	"GET /_matrix/federation/v1/media/download/{mediaId}",
	"GET /_matrix/federation/v1/media/thumbnail/{mediaId}",
	"GET /_matrix/federation/v1/openid/userinfo",
	"GET /_matrix/federation/v1/publicRooms",
	"POST /_matrix/federation/v1/publicRooms",
	"GET /_matrix/federation/v1/query/{queryType}",
	"PUT /_matrix/federation/v1/send/{txnId}",
	"PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}",
	"PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}",
	"PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}",
	"GET /_matrix/federation/v1/state/{roomId}",
	"GET /_matrix/federation/v1/state_ids/{roomId}",
	"GET /_matrix/federation/v1/timestamp_to_event/{roomId}",
	"GET /_matrix/federation/v1/user/devices/{userId}",
	"POST /_matrix/federation/v1/user/keys/claim",
	"POST /_matrix/federation/v1/user/keys/query",
	"GET /_matrix/federation/v1/version",
	"PUT /_matrix/federation/v2/invite/{roomId}/{eventId}",
	"PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}",
	"PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}",
	"GET /_matrix/key/v2/server",
	"POST /_matrix/key/v2/query",
	"GET /_matrix/key/v2/query/{serverName}",
}

// legacyRoutes registers what older and unstable clients still call, and
// the federation paths this listener knows but does not serve.
func (s *Server) legacyRoutes() {
	m, a := s.mux, s.authed
	// Cross-signing as it was before v1.1 (MSC1756); Element still
	// uploads through the unstable prefix.
	const unstable = "/_matrix/client/unstable"
	m.HandleFunc("POST "+unstable+"/keys/device_signing/upload", a(s.crossSigningUpload))
	m.HandleFunc("POST "+unstable+"/keys/signatures/upload", a(s.signaturesUpload))
	// Deprecated since r0, still called by Element (initialsync.go).
	m.HandleFunc("GET /_matrix/client/v3/rooms/{roomId}/initialSync", a(s.roomInitialSync))
	s.thirdPartyRoutes()
	for _, p := range federationPaths {
		m.HandleFunc(p, public(otherListener))
	}
}

// otherListener answers a Server-Server API path asked on the client
// listener.
func otherListener(w http.ResponseWriter, r *http.Request) error {
	return matrixerr.Unrecognized("the federation API is served on the federation listener, not the client one")
}
