package control

import (
	"net/http"
	"unicode/utf8"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// The console's welcome (issue 13, "first run from an installer"): a
// daemon started by an installer or the tray made the owner's account with
// a random password that only a banner on its standard error showed, which
// nobody read. The tray started at login (hearth tray --start-daemon)
// opens the console once on this section, which shows the homeserver URL
// and the owner's user ID, lets the owner set the first password, and
// shows how to connect a client.
//
// Setting that password is the one write a console session may make to an
// account, and only while the owner's password is still the generated one
// and unused (the daemon checks, in the store's transaction). It needs no
// user-interactive auth: the session came from a one-time link that only
// the person at this computer could open (docs/security.md), and the old
// password is one nobody knows. After that, password changes go through a
// Matrix client as usual (POST /account/password with UIA).

// Welcome is GET /_hearth/v1/welcome.
type Welcome struct {
	UserID     string `json:"user_id"`    // the owner's
	Homeserver string `json:"homeserver"` // the client API's URL
	// CanSetPassword: the owner's password is still the generated one and
	// unused, so POST /_hearth/v1/welcome/password may set it.
	CanSetPassword bool `json:"can_set_password"`
	// ChatClientURL is the configured chat client (chat_client_url) with
	// the homeserver and the owner filled in, no login token: the page's
	// "Open Element" button; empty when none is configured.
	ChatClientURL string `json:"chat_client_url,omitempty"`
}

// FirstRun is the part of the backend behind the welcome; a backend
// without it answers 404 for these routes.
type FirstRun interface {
	Welcome() (Welcome, error)
	// SetFirstPassword replaces the owner's generated, unused password,
	// and returns the owner's user ID; any other case is refused.
	SetFirstPassword(password string) (userID string, err error)
	// WelcomeShown records that the tray opened the welcome, and reports
	// whether this was the first time (the tray opens it only then).
	WelcomeShown() (first bool, err error)
}

// Password rules of the console's form, checked here so every caller gets
// the same answer: bcrypt reads at most 72 bytes, and a short password is
// refused as Matrix servers refuse a weak one (M_WEAK_PASSWORD, 400).
const (
	minPasswordChars = 8
	maxPasswordBytes = 72
)

func (s *Server) welcomeRoutes() {
	s.mux.Handle("GET /_hearth/v1/welcome", handlerFunc(s.welcome))
	s.mux.Handle("POST /_hearth/v1/welcome/password", handlerFunc(s.firstPassword))
	s.mux.Handle("POST /_hearth/v1/welcome/shown", handlerFunc(s.welcomeShown))
}

func (s *Server) firstRun() (FirstRun, error) {
	f, ok := s.backend.(FirstRun)
	if !ok {
		return nil, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no first-run welcome here"}
	}
	return f, nil
}

func (s *Server) welcome(w http.ResponseWriter, r *http.Request) error {
	f, err := s.firstRun()
	if err != nil {
		return err
	}
	wel, err := f.Welcome()
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, wel)
	return nil
}

// firstPassword is POST /_hearth/v1/welcome/password {"password": "…"}:
// always the owner's, never another account's (no name in the request).
func (s *Server) firstPassword(w http.ResponseWriter, r *http.Request) error {
	f, err := s.firstRun()
	if err != nil {
		return err
	}
	var req struct {
		Password string `json:"password"`
	}
	if err := readBody(r, &req); err != nil {
		return err
	}
	if err := checkPassword(req.Password); err != nil {
		return err
	}
	id, err := f.SetFirstPassword(req.Password)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"user_id": id})
	return nil
}

// checkPassword applies the form's rules.
func checkPassword(pw string) *Error {
	weak := func(msg string) *Error {
		return &Error{Status: http.StatusBadRequest, Code: "weak_password", Message: msg, Field: "password"}
	}
	// JSON decoding gives valid UTF-8 (U+FFFD for bad bytes), so counting
	// runes counts characters.
	switch {
	case utf8.RuneCountInString(pw) < minPasswordChars:
		return weak("choose a password of at least 8 characters")
	case len(pw) > maxPasswordBytes:
		return weak("the password is longer than 72 bytes")
	}
	return nil
}

// welcomeShown is POST /_hearth/v1/welcome/shown, the tray's (with the
// control secret, not a console session): {"first": true} the first time.
func (s *Server) welcomeShown(w http.ResponseWriter, r *http.Request) error {
	f, err := s.firstRun()
	if err != nil {
		return err
	}
	first, err := f.WelcomeShown()
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"first": first})
	return nil
}
