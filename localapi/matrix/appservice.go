package matrix

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Appservices is the registered application services as the client API
// needs them (Application Service API §"Client-Server API extensions");
// the daemon implements it over the appservice package, which this
// package never imports.
type Appservices interface {
	// ByToken returns the appservice whose as_token this is, or nil.
	ByToken(token string) Appservice
	// ExclusiveUserOwner is the ID of the appservice that claims userID
	// exclusively (its sender or an exclusive users namespace), or "".
	ExclusiveUserOwner(userID string) string
	// ExclusiveAliasOwner is the same for a room alias.
	ExclusiveAliasOwner(alias string) string
	// Ping calls POST {url}/_matrix/app/v1/ping of appservice id; its
	// errors are the spec's (M_URL_NOT_SET, M_CONNECTION_FAILED, …).
	Ping(ctx context.Context, id, txnID string) error
	// Presence queues a local user's new presence (m.presence content)
	// for the appservices that asked for ephemeral events (MSC2409);
	// best effort. (Typing and receipts reach them from the room
	// engine, room.Engine.OnEphemeral.)
	Presence(ctx context.Context, userID string, content map[string]any)
	// ToDevice queues a local user's to-device messages for the devices
	// of appservice users (MSC4203); devices lists a user's devices, for
	// "*". Best effort.
	ToDevice(ctx context.Context, sender, evType string, messages map[string]map[string]json.RawMessage,
		devices func(userID string) ([]string, error))
	// QueryUser and QueryAlias ask the appservices that claim a local
	// user ID or alias nobody has yet (Application Service API
	// §"Querying"); true: one made it just now.
	QueryUser(ctx context.Context, userID string) bool
	QueryAlias(ctx context.Context, alias string) bool
	// The third-party lookups, answered by the appservices whose
	// registrations list protocols (thirdparty.go).
	ThirdPartyProtocols(ctx context.Context) map[string]json.RawMessage
	ThirdPartyProtocol(ctx context.Context, protocol string) (json.RawMessage, bool)
	ThirdPartyLookup(ctx context.Context, kind, protocol string, q url.Values) ([]json.RawMessage, bool)
}

// Appservice is one registered application service.
type Appservice interface {
	ID() string
	SenderLocalpart() string
	// OwnsUser: the sender, or a user in its users namespace.
	OwnsUser(userID string) bool
	RateLimited() bool
	// ManagesDevices: the registration's MSC4190 or MSC3202 flag, which
	// let it create and delete its users' devices without UIA and act
	// as one of them (org.matrix.msc3202.device_id).
	ManagesDevices() bool
}

// SetAppservices enables the as_token: identity assertion, registration
// of namespaced users and exclusive namespaces.
func (s *Server) SetAppservices(a Appservices) { s.appsvc, s.presence.appsvc = a, a }

func (s *Server) appserviceRoutes() {
	s.mux.HandleFunc("POST /_matrix/client/v1/appservice/{appserviceId}/ping", s.authed(s.appservicePing))
}

// appserviceCaller is the user an appservice acts as: ?user_id= when it
// owns that user, else its sender (Application Service API §"Identity
// assertion"). The user must exist: ghosts are registered first.
func (s *Server) appserviceCaller(r *http.Request, as Appservice) (*caller, error) {
	userID := r.URL.Query().Get("user_id")
	if userID == "" {
		userID = s.accounts.UserID(as.SenderLocalpart())
	}
	lp := s.accounts.Localpart(userID)
	if lp == "" || !as.OwnsUser(userID) {
		return nil, matrixerr.Forbidden("the application service may not masquerade as " + userID)
	}
	u, err := s.accounts.Get(lp)
	if err != nil {
		return nil, err
	}
	if u == nil || u.Deactivated {
		return nil, matrixerr.Forbidden(userID + " is not registered")
	}
	c := &caller{Localpart: lp, UserID: userID, Session: "as:" + as.ID(), Appservice: as}
	// Without a device ID the appservice acts without a device; its
	// transaction IDs are scoped to the appservice. With MSC3202's
	// device_id it acts as that device of the user, which must exist
	// (made with MSC4190's PUT /devices): it uploads, queries and claims
	// keys as that device.
	// MSC4326 names the parameter device_id; mautrix sends both names.
	dev, stable := r.URL.Query().Get("org.matrix.msc3202.device_id"), r.URL.Query().Get("device_id")
	if dev != "" && stable != "" && dev != stable {
		return nil, matrixerr.InvalidParam("device_id and org.matrix.msc3202.device_id differ")
	}
	if dev == "" {
		dev = stable
	}
	if dev != "" {
		if !as.ManagesDevices() {
			return nil, matrixerr.Forbidden("the application service's registration does not allow device masquerading")
		}
		if _, err := s.accounts.Device(lp, dev); err != nil {
			return nil, matrixerr.Forbidden("no device " + dev + " of " + userID)
		}
		c.DeviceID, c.Session = dev, "as:"+as.ID()+":"+dev
	}
	return c, nil
}

// massagedTS is the `ts` query parameter of an appservice's send or state
// request (Application Service API §"Timestamp massaging"): ignored for
// everyone else.
func massagedTS(r *http.Request, c *caller) (time.Time, error) {
	v := r.URL.Query().Get("ts")
	if c.Appservice == nil || v == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	// Above 2^53-1 the event's origin_server_ts is outside canonical
	// JSON's integer range (Server-Server API §"Canonical JSON").
	if err != nil || ms <= 0 || ms > 1<<53-1 {
		return time.Time{}, matrixerr.InvalidParam("ts must be a positive integer of milliseconds, at most 2^53-1")
	}
	return time.UnixMilli(ms), nil
}

// appservicePing is POST /_matrix/client/v1/appservice/{appserviceId}/ping
// (spec v1.7): the appservice asks the server to ping it back.
func (s *Server) appservicePing(w http.ResponseWriter, r *http.Request, c *caller) error {
	if c.Appservice == nil || c.Appservice.ID() != r.PathValue("appserviceId") {
		return matrixerr.Forbidden("only the application service itself may ping it")
	}
	var req struct {
		TransactionID string `json:"transaction_id"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	start := time.Now()
	if err := s.appsvc.Ping(r.Context(), c.Appservice.ID(), req.TransactionID); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"duration_ms": time.Since(start).Milliseconds()})
	return nil
}

// exclusiveUser refuses a name an appservice claims exclusively to
// anyone but that appservice (M_EXCLUSIVE).
func (s *Server) exclusiveUser(localpart string) error {
	if s.appsvc == nil {
		return nil
	}
	if id := s.appsvc.ExclusiveUserOwner(s.accounts.UserID(localpart)); id != "" {
		return matrixerr.Exclusive("this user ID is reserved by an application service")
	}
	return nil
}

// queryLocalUser asks the appservices about a local user ID that has no
// account (a profile look-up, an invite): a bridge makes its ghosts on
// demand. It reports whether the account exists afterwards.
func (s *Server) queryLocalUser(ctx context.Context, userID string) bool {
	lp := s.accounts.Localpart(userID)
	if lp == "" {
		return false
	}
	if u, err := s.accounts.Get(lp); err != nil || u != nil {
		return u != nil
	}
	if s.appsvc == nil || !s.appsvc.QueryUser(ctx, userID) {
		return false
	}
	u, err := s.accounts.Get(lp)
	return err == nil && u != nil
}

// exclusiveAlias refuses an alias an appservice claims exclusively to
// anyone but that appservice (M_EXCLUSIVE, Application Service API
// §"Registration": exclusive namespaces).
func (s *Server) exclusiveAlias(c *caller, alias string) error {
	if s.appsvc == nil {
		return nil
	}
	owner := s.appsvc.ExclusiveAliasOwner(alias)
	if owner == "" || c.Appservice != nil && c.Appservice.ID() == owner {
		return nil
	}
	return matrixerr.Exclusive("this room alias is reserved by an application service")
}
