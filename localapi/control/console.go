package control

import (
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"rsc.io/qr"
)

// The web console is a page at /_hearth/ that shows the daemon's state and
// how to connect a client. A browser cannot hold the control secret, so
// 'hearth open console' asks the control API for a one-time login link;
// following it sets a session cookie (HttpOnly, SameSite=Strict) that the
// page's requests carry instead. The Host and Origin checks of ServeHTTP
// apply to it as to everything else.

//go:embed console/index.html
var consolePage []byte

const (
	sessionCookie = "hearth_console"
	sessionTTL    = 12 * time.Hour
	linkTTL       = 2 * time.Minute
)

// sessions holds console login codes and sessions in memory: both are
// short-lived and a restart simply asks for a new link.
type sessions struct {
	mu    sync.Mutex
	codes map[string]time.Time // one-time login codes → expiry
	live  map[string]time.Time // session tokens → expiry
}

func newSessions() *sessions {
	return &sessions{codes: map[string]time.Time{}, live: map[string]time.Time{}}
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// take consumes a code from m if it is there and unexpired.
func take(m map[string]time.Time, code string, consume bool) bool {
	for k, exp := range m {
		if time.Now().After(exp) {
			delete(m, k)
			continue
		}
		if subtle.ConstantTimeCompare([]byte(k), []byte(code)) == 1 {
			if consume {
				delete(m, k)
			}
			return true
		}
	}
	return false
}

func (s *sessions) newCode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	code := randomToken()
	s.codes[code] = time.Now().Add(linkTTL)
	return code
}

// redeem trades a login code for a new session token.
func (s *sessions) redeem(code string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == "" || !take(s.codes, code, true) {
		return "", false
	}
	tok := randomToken()
	s.live[tok] = time.Now().Add(sessionTTL)
	return tok, true
}

func (s *sessions) valid(r *http.Request) bool {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return take(s.live, c.Value, false)
}

// consoleLink makes a one-time login link for the console.
func (s *Server) consoleLink(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{"path": "/_hearth/login?code=" + s.sessions.newCode(), "expires_in_ms": linkTTL.Milliseconds()})
}

// consoleLogin redeems a link and sets the session cookie.
func (s *Server) consoleLogin(w http.ResponseWriter, r *http.Request) {
	tok, ok := s.sessions.redeem(r.URL.Query().Get("code"))
	if !ok {
		writeError(w, &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
			Message: "this console link is used or expired; run 'hearth open console' for a new one"})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: tok, Path: "/_hearth/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL.Seconds())})
	http.Redirect(w, r, "/_hearth/", http.StatusSeeOther)
}

func (s *Server) consolePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.Write(consolePage)
}

// qrCode is a QR code of the homeserver address, for phones.
func (s *Server) qrCode(w http.ResponseWriter, r *http.Request) {
	code, err := qr.Encode(s.backend.Status().Listeners["client"], qr.M)
	if err != nil {
		writeError(w, err)
		return
	}
	code.Scale = 6
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(code.PNG())
}
