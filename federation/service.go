// Package federation is Hearth's Server-Server API: the handlers other
// homeservers call (authenticated with X-Matrix signatures), the checks an
// inbound event passes before the room engine sees it, and the outbound
// calls a local user's actions need (joining a room on another server,
// resolving a remote alias). Key serving and caching live in
// federation/serverkeys, server discovery and TLS in federation/resolve,
// and the persistent per-destination queues in federation/queue.
package federation

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/netip"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/federation/ratelimit"
	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/media"
	"github.com/hearth-chat/hearth/internal/store"
)

// Queue is the outbound side as the handlers use it (federation/queue).
type Queue interface {
	// Wake says a destination is up: it just sent us a request.
	Wake(destination string)
	// SendEDU queues an ephemeral event for each destination.
	SendEDU(ctx context.Context, destinations []string, edu gomatrixserverlib.EDU) error
}

// Config is what the service needs from the daemon.
type Config struct {
	ServerName spec.ServerName
	KeyID      gomatrixserverlib.KeyID
	Key        ed25519.PrivateKey
	DB         *store.DB
	Rooms      roomEngine
	Accounts   *account.Accounts
	KeyRing    *gomatrixserverlib.KeyRing
	Client     fclient.FederationClient
	Queue      Queue
	// Keys is the end-to-end encryption key store (userkeys.go); nil: off.
	Keys *e2ee.Service
	// WellKnownServer, when set, is served as /.well-known/matrix/server's
	// m.server (wellknown.go).
	WellKnownServer string
	// MaxBodyBytes caps request bodies (a transaction of 50 PDUs of 64 KiB
	// plus 100 EDUs fits in the default).
	MaxBodyBytes int64
	// Media is the content repository other servers download from; nil
	// answers their media requests with 404.
	Media *media.Repo
	// OriginRate and OriginBurst are the per-origin request limit
	// (ratelimit.go); zero takes the defaults, 50/s with bursts of 200.
	OriginRate, OriginBurst float64
	// Presence, when set, hears the remote users' presence this server
	// keeps (user ID → m.presence content as /sync shows it), all of one
	// EDU in one call: the application services' queue, which local
	// changes reach too (MSC2409), and which writes them at once.
	Presence func(ctx context.Context, updates map[string]map[string]any)
	// ToDevice, when set, hears the to-device messages of each
	// m.direct_to_device EDU that were queued for local devices (by user
	// and device, "*" expanded): the application services' queue, which
	// local senders' messages reach too (MSC4203).
	ToDevice func(ctx context.Context, sender, evType string, messages map[string]map[string]json.RawMessage,
		devices func(userID string) ([]string, error))
}

// Service serves the Server-Server API and makes the outbound calls.
type Service struct {
	cfg Config
	mux *http.ServeMux
	now func() time.Time
	// presence holds other servers' users' presence (ephemeral.go).
	presence remotePresence
	reach    reachability // the last self-check (reachability.go)
	limits   *originLimiter
	// authFailures counts, per client address, the requests whose
	// signature failed (ratelimit.go).
	authFailures *ratelimit.Buckets[netip.Prefix]
	// joining holds the PDUs of rooms a local user's join to is in
	// flight for (joining.go).
	joining joins
	// toDeviceSeen makes m.direct_to_device idempotent (todevice_dedup.go).
	toDeviceSeen seenMessageIDs
}

// New returns the service; Handler serves it.
func New(cfg Config) *Service {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 8 << 20
	}
	s := &Service{cfg: cfg, mux: http.NewServeMux(), now: time.Now, limits: newOriginLimiter(cfg.OriginRate, cfg.OriginBurst),
		authFailures: ratelimit.New[netip.Prefix](failedAuthRate, failedAuthBurst, maxLimitedClients)}
	s.routes()
	if j, ok := cfg.Queue.(joinAnnouncer); ok {
		j.OnLocalJoin(s.announceDevices) // userkeys.go
	}
	return s
}

// joinAnnouncer is the queue's hook for local users' joins
// (federation/queue): their devices are announced to the room's servers.
type joinAnnouncer interface {
	OnLocalJoin(func(ctx context.Context, userID string, destinations []string))
}

// Handler serves /_matrix/federation/... and /_matrix/key/...
func (s *Service) Handler() http.Handler { return s.mux }

// Mux lets other federation packages (serverkeys) register their routes.
func (s *Service) Mux() *http.ServeMux { return s.mux }

func (s *Service) routes() {
	s.mux.Handle("GET /_matrix/federation/v1/version", matrixerr.HandlerFunc(s.version))
	s.wellKnownRoutes()
	s.knockRoutes()
	s.handleBeside("PUT /_matrix/federation/v1/send/{txnID}", s.send) // send_auth.go
	s.handle("GET /_matrix/federation/v1/make_join/{roomID}/{userID}", s.makeJoin)
	s.handle("PUT /_matrix/federation/v2/send_join/{roomID}/{eventID}", s.sendJoin)
	s.handle("PUT /_matrix/federation/v1/send_join/{roomID}/{eventID}", s.sendJoinV1)
	s.handle("GET /_matrix/federation/v1/make_leave/{roomID}/{userID}", s.makeLeave)
	s.handle("PUT /_matrix/federation/v2/send_leave/{roomID}/{eventID}", s.sendLeave)
	s.handle("PUT /_matrix/federation/v1/send_leave/{roomID}/{eventID}", s.sendLeaveV1)
	s.handle("PUT /_matrix/federation/v2/invite/{roomID}/{eventID}", s.invite)
	s.handle("GET /_matrix/federation/v1/event/{eventID}", s.event)
	s.handle("GET /_matrix/federation/v1/state/{roomID}", s.state)
	s.handle("GET /_matrix/federation/v1/state_ids/{roomID}", s.stateIDs)
	s.handle("GET /_matrix/federation/v1/event_auth/{roomID}/{eventID}", s.eventAuth)
	s.handle("GET /_matrix/federation/v1/backfill/{roomID}", s.backfill)
	s.handle("POST /_matrix/federation/v1/get_missing_events/{roomID}", s.missingEvents)
	s.handle("GET /_matrix/federation/v1/query/directory", s.queryDirectory)
	s.handle("GET /_matrix/federation/v1/query/profile", s.queryProfile)
	s.mux.Handle("/_matrix/federation/", matrixerr.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return matrixerr.Unrecognized("unknown federation endpoint")
	}))
	s.mediaRoutes()
	s.directoryRoutes()
	s.hierarchyRoutes()
	s.userKeysRoutes()
}

// request is an authenticated inbound request.
type request struct {
	*http.Request
	origin spec.ServerName
	body   []byte
	auth   *pendingAuth // set for routes whose signature is checked beside the handler (send_auth.go)
}

// handle registers a handler behind X-Matrix request authentication
// (Server-Server API §"Request Authentication"): a request that is not
// signed by its origin's current key gets 401 and reaches no handler.
// Everything that can be refused from the headers alone is refused before
// a byte of the body is read (issue 10): a missing or malformed X-Matrix
// header, a destination that is not this server, an origin over its rate
// limit, a client address whose requests failed their signature check
// too often (each may have made us fetch keys from a server it named).
// Only then is the body read, within MaxBodyBytes, and the signature
// checked (which may fetch the origin's keys).
func (s *Service) handle(pattern string, h func(http.ResponseWriter, *request) error) {
	s.mux.Handle(pattern, matrixerr.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		_, client, err := s.admit(w, r)
		if err != nil {
			return err
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		fr, resp := fclient.VerifyHTTPRequest(r, s.now(), s.cfg.ServerName, nil, s.cfg.KeyRing)
		if err := s.authenticated(r, client, fr, resp.Code, resp.JSON); err != nil {
			return err
		}
		return h(w, &request{Request: r, origin: fr.Origin(), body: fr.Content()})
	}))
}

// admit refuses what can be refused from the headers alone (see handle)
// and returns the origin the X-Matrix header names (not yet checked) and
// the client's rate-limit key.
func (s *Service) admit(w http.ResponseWriter, r *http.Request) (spec.ServerName, netip.Prefix, error) {
	client := ratelimit.ClientKey(r.RemoteAddr)
	origin, err := s.checkAuthHeader(r)
	if err == nil {
		wait := s.limits.check(origin, s.now())
		if w := s.authFailures.Wait(client, 1, s.now()); w > wait {
			wait = w
		}
		if wait > 0 {
			err = matrixerr.LimitExceeded(wait.Milliseconds() + 1)
		}
	}
	if err != nil {
		// The body is never read: closing an HTTP/1 connection after
		// the answer keeps net/http from draining it first. (HTTP/2
		// just resets the stream; there "close" would end the
		// peer's other streams too.)
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		return "", netip.Prefix{}, err
	}
	return origin, client, nil
}

// authenticated turns VerifyHTTPRequest's answer into the request's
// admission: a failed signature counts against the client, a good one
// against the origin's rate limit and wakes its outbound queue, and the
// room's server ACL is applied.
func (s *Service) authenticated(r *http.Request, client netip.Prefix, fr *fclient.FederationRequest, code int, body any) error {
	if fr == nil {
		s.authFailures.Take(client, 1, s.now())
		return authError(code, body)
	}
	s.limits.take(fr.Origin(), s.now())
	if s.cfg.Queue != nil {
		s.cfg.Queue.Wake(string(fr.Origin()))
	}
	return s.deniedByACL(r, fr.Origin()) // Server ACLs (acl.go)
}

// checkAuthHeader reads the X-Matrix Authorization headers without the
// body and returns their origin. It refuses, with 400 M_INVALID_PARAM, an
// origin or destination that is not a server name at all (the appendix's
// grammar: a host, then optionally ":" and a numeric port): such a
// request is malformed, not merely unauthenticated, and no key lookup
// should be made for the name (Synapse answers the same; sytest's
// "Non-numeric ports in server names are rejected"); and with 401
// M_UNAUTHORIZED no X-Matrix header, one without origin, key or
// signature, several naming different origins, or a destination other
// than this server.
func (s *Service) checkAuthHeader(r *http.Request) (spec.ServerName, error) {
	var origin spec.ServerName
	for _, h := range r.Header.Values("Authorization") {
		scheme, o, destination, key, sig := fclient.ParseAuthorization(h)
		if scheme != "X-Matrix" {
			continue
		}
		if (o != "" && !validServerName(o)) || (destination != "" && !validServerName(destination)) {
			return "", matrixerr.InvalidParam("invalid server name in the X-Matrix authorization")
		}
		switch {
		case o == "" || key == "" || sig == "":
			return "", matrixerr.Unauthorized("the X-Matrix authorization needs origin, key and sig")
		case origin != "" && o != origin:
			return "", matrixerr.Unauthorized("X-Matrix authorizations of different origins")
		case destination != "" && destination != s.cfg.ServerName:
			return "", matrixerr.Unauthorized("the X-Matrix destination is not this server")
		}
		origin = o
	}
	if origin == "" {
		return "", matrixerr.Unauthorized(`missing "Authorization: X-Matrix ..." header`)
	}
	return origin, nil
}

// validServerName reports whether name is a server name by the spec's
// grammar (Appendices §"Server Name").
func validServerName(name spec.ServerName) bool {
	_, _, ok := spec.ParseAndValidateServerName(name)
	return ok
}

// authError turns gomatrixserverlib's refusal of a request (a status and
// a {"message"} body) into the spec's error: 401 M_UNAUTHORIZED for the
// signature, M_NOT_JSON for a body it could not read. It is decided by
// the status alone: the library's two 400s about the X-Matrix origin and
// destination cannot reach here, since checkAuthHeader refuses both
// first (an invalid name by the same grammar, another destination as
// 401), and the library exports no error values to tell them apart by.
func authError(code int, body any) error {
	b, _ := json.Marshal(body)
	msg := gjson.GetBytes(b, "message").String()
	switch code {
	case http.StatusUnauthorized:
		return matrixerr.Unauthorized(msg)
	case http.StatusBadRequest:
		return matrixerr.NotJSON("the request could not be read: " + msg)
	}
	return matrixerr.Unknown(msg)
}

func (s *Service) version(w http.ResponseWriter, r *http.Request) error {
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"server": map[string]string{"name": "Hearth", "version": "dev"}})
	return nil
}

// userIDForSender maps a sender to its user ID; Hearth has no pseudonymous
// IDs, so it is the sender itself, and never (nil, nil), which would skip
// signature checks (gomatrixserverlib notes §6).
func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// backfillTimeout bounds a client's wait for history from other servers.
const backfillTimeout = 15 * time.Second
