package matrix

import (
	"context"
	"net/http"
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
	// Ping calls POST {url}/_matrix/app/v1/ping of appservice id; its
	// errors are the spec's (M_URL_NOT_SET, M_CONNECTION_FAILED, …).
	Ping(ctx context.Context, id, txnID string) error
	// Ephemeral queues a local user's ephemeral event (m.typing,
	// m.receipt) in roomID for the appservices that asked for them
	// (MSC2409); best effort.
	Ephemeral(ctx context.Context, userID, roomID string, ev map[string]any)
}

// Appservice is one registered application service.
type Appservice interface {
	ID() string
	SenderLocalpart() string
	// OwnsUser: the sender, or a user in its users namespace.
	OwnsUser(userID string) bool
	RateLimited() bool
}

// SetAppservices enables the as_token: identity assertion, registration
// of namespaced users and exclusive namespaces.
func (s *Server) SetAppservices(a Appservices) { s.appsvc = a }

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
	// Without device_id (MSC3202's device masquerading, not served yet)
	// the appservice acts without a device; its transaction IDs are
	// scoped to the appservice and the user.
	return &caller{Localpart: lp, UserID: userID, Session: "as:" + as.ID(), Appservice: as}, nil
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
	if err != nil || ms <= 0 {
		return time.Time{}, matrixerr.InvalidParam("ts must be a positive integer of milliseconds")
	}
	return time.UnixMilli(ms), nil
}

// appservicePing is POST /_matrix/client/v1/appservice/{appserviceId}/ping
// (spec v1.7): the appservice asks the server to ping it back.
func (s *Server) appservicePing(w http.ResponseWriter, r *http.Request, c *caller) {
	if c.Appservice == nil || c.Appservice.ID() != r.PathValue("appserviceId") {
		matrixerr.Write(w, matrixerr.Forbidden("only the application service itself may ping it"))
		return
	}
	var req struct {
		TransactionID string `json:"transaction_id"`
	}
	if err := readJSON(r, &req); err != nil {
		matrixerr.Write(w, err)
		return
	}
	start := time.Now()
	if err := s.appsvc.Ping(r.Context(), c.Appservice.ID(), req.TransactionID); err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{"duration_ms": time.Since(start).Milliseconds()})
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
