package matrix

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
)

type registerRequest struct {
	Type                     string `json:"type"` // m.login.application_service
	Username                 string `json:"username"`
	Password                 string `json:"password"`
	DeviceID                 string `json:"device_id"`
	InitialDeviceDisplayName string `json:"initial_device_display_name"`
	InhibitLogin             bool   `json:"inhibit_login"`
	RefreshToken             bool   `json:"refresh_token"`
}

// register implements POST /register (Client-Server API §"Account
// registration"). Hearth is single-user by default: registration is closed
// unless the owner opens it or hands out registration tokens.
func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	if kind := r.URL.Query().Get("kind"); kind == "guest" {
		return matrixerr.GuestAccessForbidden("guest access is not enabled")
	}
	if s.appsvc != nil && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		// An application service registers its users whatever the
		// registration mode (Application Service API §"Server admin
		// style permissions"); a forged as_token is M_UNKNOWN_TOKEN.
		return s.registerAppserviceUser(w, r)
	}
	return s.registerUser(w, r)
}

// registerUser is POST /register for a person.
func (s *Server) registerUser(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Registration != RegistrationOpen && s.cfg.Registration != RegistrationToken {
		return matrixerr.Forbidden("registration is disabled on this server")
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req registerRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	localpart := strings.ToLower(req.Username)
	if localpart == "" {
		localpart = strings.ToLower(account.RandomString(9))
		localpart = strings.NewReplacer("_", "x", "-", "y").Replace(localpart)
	}
	if err := s.accounts.ValidateLocalpart(localpart); err != nil {
		return err
	}
	if err := s.exclusiveUser(localpart); err != nil {
		return err
	}
	if u, err := s.accounts.Get(localpart); err != nil {
		return err
	} else if u != nil {
		return matrixerr.UserInUse("that user ID is taken")
	}
	flow := "m.login.dummy"
	if s.cfg.Registration == RegistrationToken {
		flow = "m.login.registration_token"
	}
	err = s.uia.require(body, [][]string{{flow}}, func(stage string, auth uiaAuth) error {
		if stage == "m.login.registration_token" {
			return s.checkRegistrationToken(r, auth.Token)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if req.Password == "" {
		return matrixerr.MissingParam("a password is required")
	}
	if err := s.guard.hashing(r.Context(), func() error {
		return s.accounts.Create(r.Context(), localpart, req.Password, false)
	}); err != nil {
		return err
	}
	return s.loginNewUser(w, r, localpart, &req)
}

func (s *Server) registerAvailable(w http.ResponseWriter, r *http.Request) error {
	lp := strings.ToLower(r.URL.Query().Get("username"))
	if err := s.accounts.ValidateLocalpart(lp); err != nil {
		return err
	}
	if err := s.exclusiveUser(lp); err != nil {
		return err
	}
	u, err := s.accounts.Get(lp)
	if err != nil {
		return err
	}
	if u != nil {
		return matrixerr.UserInUse("that user ID is taken")
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"available": true})
	return nil
}

// tokenValidity implements GET /register/m.login.registration_token/validity.
func (s *Server) tokenValidity(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Registration != RegistrationToken {
		return matrixerr.Forbidden("registration tokens are not in use")
	}
	err := s.checkRegistrationToken(r, r.URL.Query().Get("token"))
	var me *matrixerr.Error
	if errors.As(err, &me) && me.Status == http.StatusTooManyRequests {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"valid": err == nil})
	return nil
}

// checkRegistrationToken checks a registration token under the client
// address's guessing limit (ratelimit.go): tokens are secrets, and this
// endpoint and the UIA stage would otherwise answer guesses as fast as
// they come (the spec marks both rate-limited).
func (s *Server) checkRegistrationToken(r *http.Request, token string) error {
	return s.guard.guarded(r, "", false, func() error {
		ok := false
		for _, t := range s.cfg.RegistrationTokens {
			if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
				ok = true
			}
		}
		if !ok {
			return matrixerr.Unauthorized("invalid registration token")
		}
		return nil
	})
}

// registerAppserviceUser is POST /register with type
// m.login.application_service and the as_token: a user in the
// appservice's namespace, without a password, is made (Application
// Service API §"Server admin style permissions"). Outside its namespace:
// M_EXCLUSIVE, as Synapse answers.
//
// The as_token is checked here rather than by authed: the user_id that
// mautrix asserts on every request is the user about to exist.
func (s *Server) registerAppserviceUser(w http.ResponseWriter, r *http.Request) error {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	as := s.appsvc.ByToken(token)
	if as == nil {
		if _, err := s.accounts.Authenticate(token); err != nil {
			return err
		}
		return s.registerUser(w, r)
	}
	var req registerRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Type != "m.login.application_service" {
		e := matrixerr.Unknown("an application service registers with type m.login.application_service")
		e.Code, e.Status = "M_APPSERVICE_LOGIN_UNSUPPORTED", http.StatusUnauthorized
		return e
	}
	localpart := strings.ToLower(req.Username)
	if err := s.accounts.ValidateLocalpart(localpart); err != nil {
		return err
	}
	if !as.OwnsUser(s.accounts.UserID(localpart)) {
		return matrixerr.Exclusive("this user ID is not in the application service's namespace")
	}
	if u, err := s.accounts.Get(localpart); err != nil {
		return err
	} else if u != nil {
		return matrixerr.UserInUse("that user ID is taken")
	}
	// A service account: no password, so only the appservice (or a
	// login it asks for) can act as it. Its display name starts as its
	// localpart, as Synapse does: bridges read it before setting theirs
	// and take a 404 for an error.
	if _, err := s.accounts.EnsureService(r.Context(), localpart, localpart); err != nil {
		return err
	}
	return s.loginNewUser(w, r, localpart, &req)
}

// loginNewUser ends a registration: the new user's first device and
// tokens, unless the client asked for none (inhibit_login).
func (s *Server) loginNewUser(w http.ResponseWriter, r *http.Request, localpart string, req *registerRequest) error {
	if req.InhibitLogin {
		matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"user_id": s.accounts.UserID(localpart)})
		return nil
	}
	sess, err := s.accounts.Login(r.Context(), localpart, req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken)
	if err != nil {
		return err
	}
	writeSession(w, sess, s.accounts.ServerName())
	return nil
}
