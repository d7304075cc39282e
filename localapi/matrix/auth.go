package matrix

import (
	"net/http"
	"strings"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// caller is the authenticated user of a request.
type caller struct {
	Localpart string
	UserID    string
	DeviceID  string
	// Session is the client session of the access token: what
	// transaction IDs are scoped to, and who sees
	// unsigned.transaction_id (Client-Server API §"Transaction
	// identifiers").
	Session string
	// Appservice is the application service whose as_token made the
	// request (appservice.go), nil for a user's access token.
	Appservice Appservice
}

// authedHandler is a Client-Server handler for an authenticated caller.
// It writes its response and returns nil, or returns the error for
// authed to write.
type authedHandler func(w http.ResponseWriter, r *http.Request, c *caller) error

// publicHandler is a Client-Server handler that needs no access token.
type publicHandler func(w http.ResponseWriter, r *http.Request) error

// public registers a handler that needs no access token; the error it
// returns is written by matrixerr.HandlerFunc (Client-Server API
// §"Standard error response").
func public(h publicHandler) http.HandlerFunc {
	return matrixerr.HandlerFunc(h).ServeHTTP
}

// authed wraps a handler that needs an access token (Client-Server API
// §"Using access tokens": the Authorization header, or the deprecated
// access_token query parameter).
func (s *Server) authed(h authedHandler) http.HandlerFunc {
	return public(s.withCaller(h))
}

// withCaller authenticates the request and calls h with its caller.
func (s *Server) withCaller(h authedHandler) publicHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		token := ""
		if auth := r.Header.Get("Authorization"); auth != "" {
			t, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok {
				return matrixerr.MissingToken("Authorization header must be Bearer")
			}
			token = t
		} else {
			token = r.URL.Query().Get("access_token")
		}
		if token == "" {
			return matrixerr.MissingToken("missing access token")
		}
		if s.appsvc != nil {
			if as := s.appsvc.ByToken(token); as != nil {
				c, err := s.appserviceCaller(r, as)
				if err != nil {
					return err
				}
				return h(w, r, c)
			}
		}
		t, err := s.accounts.Authenticate(token)
		if err != nil {
			return err
		}
		return h(w, r, &caller{Localpart: t.Localpart, UserID: s.accounts.UserID(t.Localpart), DeviceID: t.DeviceID, Session: t.TxnScope()})
	}
}

type loginRequest struct {
	Type       string `json:"type"`
	Identifier struct {
		Type string `json:"type"`
		User string `json:"user"`
	} `json:"identifier"`
	User                     string `json:"user"` // deprecated form
	Password                 string `json:"password"`
	Token                    string `json:"token"`
	DeviceID                 string `json:"device_id"`
	InitialDeviceDisplayName string `json:"initial_device_display_name"`
	RefreshToken             bool   `json:"refresh_token"`
}

func (s *Server) loginFlows(w http.ResponseWriter, r *http.Request) error {
	flows := []map[string]any{{"type": "m.login.password"}, {"type": "m.login.token"}}
	if s.appsvc != nil {
		flows = append(flows, map[string]any{"type": "m.login.application_service"})
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"flows": flows})
	return nil
}

// appserviceLogin is /login with m.login.application_service: the
// request's as_token must own the user, which must exist (Client-Server
// API §"Appservice Login").
func (s *Server) appserviceLogin(r *http.Request, user string) (string, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return "", matrixerr.MissingToken("m.login.application_service needs the as_token")
	}
	var as Appservice
	if s.appsvc != nil {
		as = s.appsvc.ByToken(token)
	}
	if as == nil {
		return "", matrixerr.UnknownToken("unknown application service token")
	}
	lp := s.userLocalpart(user)
	if !as.OwnsUser(s.accounts.UserID(lp)) {
		return "", matrixerr.Forbidden("the user is not in the application service's namespace")
	}
	return lp, nil
}

// userLocalpart accepts a bare localpart or a full local user ID, in any
// case: user IDs are registered lowercase, and Synapse logs "@Alice:server"
// or "ALICE" in as alice, which clients and Complement ("Login with
// uppercase username works") rely on.
func (s *Server) userLocalpart(user string) string {
	if strings.HasPrefix(user, "@") {
		return strings.ToLower(s.accounts.Localpart(user))
	}
	return strings.ToLower(user)
}

// login implements POST /login for m.login.password and m.login.token.
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	var localpart string
	switch req.Type {
	case "m.login.password":
		user := req.Identifier.User
		if user == "" {
			user = req.User
		}
		if req.Identifier.Type != "" && req.Identifier.Type != "m.id.user" {
			return matrixerr.Unknown("only m.id.user identifiers are supported").WithStatus(http.StatusBadRequest)
		}
		localpart = s.userLocalpart(user)
		if err := s.checkPassword(r, localpart, req.Password); err != nil {
			return err
		}
	case "m.login.application_service":
		lp, err := s.appserviceLogin(r, req.Identifier.User)
		if err != nil {
			return err
		}
		localpart = lp
	case "m.login.token":
		lp, err := s.accounts.RedeemLoginToken(r.Context(), req.Token)
		if err != nil {
			return err
		}
		localpart = lp
	default:
		return matrixerr.Unknown("unsupported login type").WithStatus(http.StatusBadRequest)
	}
	sess, err := s.accounts.Login(r.Context(), localpart, req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken)
	if err != nil {
		return err
	}
	writeSession(w, sess, s.accounts.ServerName())
	return nil
}

func writeSession(w http.ResponseWriter, sess *account.Session, serverName string) {
	resp := map[string]any{"user_id": sess.UserID, "access_token": sess.AccessToken,
		"device_id": sess.DeviceID, "home_server": serverName}
	if sess.RefreshToken != "" {
		resp["refresh_token"] = sess.RefreshToken
		resp["expires_in_ms"] = sess.ExpiresInMs
	}
	matrixerr.WriteJSON(w, http.StatusOK, resp)
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	sess, err := s.accounts.Refresh(r.Context(), req.RefreshToken)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"access_token": sess.AccessToken, "refresh_token": sess.RefreshToken,
		"expires_in_ms": sess.ExpiresInMs})
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.accounts.Logout(r.Context(), c.Localpart, c.DeviceID); err != nil {
		return err
	}
	if err := s.dropDevices(r.Context(), c, []string{c.DeviceID}); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (s *Server) logoutAll(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.accounts.LogoutAll(r.Context(), c.Localpart); err != nil {
		return err
	}
	if err := s.dropDevices(r.Context(), c, nil); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, c *caller) error {
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"user_id": c.UserID, "device_id": c.DeviceID, "is_guest": false})
	return nil
}

// getLoginToken implements POST /login/get_token (spec v1.7), behind UIA.
func (s *Server) getLoginToken(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.readWithUIA(r, c, nil); err != nil {
		return err
	}
	const ttl = 2 * time.Minute
	tok, err := s.accounts.CreateLoginToken(r.Context(), c.Localpart, ttl)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"login_token": tok, "expires_in_ms": ttl.Milliseconds()})
	return nil
}

// readWithUIA reads the body of a request behind password UIA: into req
// (unless nil), then the auth dict, so that a malformed body is
// M_BAD_JSON or M_NOT_JSON before any UIA challenge.
func (s *Server) readWithUIA(r *http.Request, c *caller, req any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if req != nil {
		if err := decode(body, req); err != nil {
			return err
		}
	}
	return s.passwordUIA(r, body, c)
}

// passwordUIA demands the user's password through UIA (Client-Server API
// §"User-Interactive Authentication API").
func (s *Server) passwordUIA(r *http.Request, body []byte, c *caller) error {
	return s.uia.require(body, [][]string{{"m.login.password"}}, func(stage string, auth uiaAuth) error {
		user := auth.Identifier.User
		if user == "" {
			user = auth.User
		}
		if user == "" {
			return matrixerr.Forbidden("authenticate as yourself")
		}
		if s.userLocalpart(user) != c.Localpart {
			return uiaFatal{matrixerr.Forbidden("authenticate as yourself")}
		}
		return s.checkPassword(r, c.Localpart, auth.Password)
	})
}
