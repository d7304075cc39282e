package control

import (
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"rsc.io/qr"
)

// The web console is a page at /_hearth/ that shows the daemon's state and
// how to connect a client. A browser cannot hold the control secret, so
// 'hearth open console' asks the control API for a one-time code and opens
// /_hearth/#code=…: the code travels in the URL fragment, which the browser
// never sends to any server, and the page's own script trades it
// (POST /_hearth/v1/session) for a session token that it keeps in
// sessionStorage and sends as the X-Hearth-Session header.
//
// There is deliberately no cookie: cookies ignore ports, so a cookie for
// 127.0.0.1 reaches every other local user's server on 127.0.0.1:<port>,
// which could replay it here. sessionStorage belongs to this origin (and
// tab) alone, and a header is only sent by the page's own script. The Host
// and Origin checks of ServeHTTP apply to the session as to everything else.
//
// Sessions live in memory only, so a daemon restart ends them all; they
// end after sessionIdle without use, after sessionMax in any case, and on
// POST /_hearth/v1/logout. A session may only read what the page shows,
// switch the federation mode, the LAN discovery mode and whether an
// account is found by people nearby, and log out (consoleCalls): it
// cannot read
// the settings, mint login tokens or console codes, change other settings
// or accounts, or stop the daemon. The federation mode is the one switch
// the issue asks of the console; it exposes nothing new to the internet,
// since internet mode is refused unless the owner configured a CA
// certificate (tls_cert), which a session cannot. The people-nearby
// opt-in (issue 11: "hearth account and the console switch it") shows an
// account's localpart and display name to this machine's networks, which
// lan mode already reaches; it touches no password, device or token.
// The LAN discovery mode (issue 11: "switched off; the settings are in
// docs/configuration.md and the tray") announces at most what the
// people-nearby switch already may (on), only listens (browse) or stops
// (off), on the interfaces lan_interfaces names, which a session cannot
// change. The first-run welcome (welcome.go, issue 13) lets a session set
// the owner's password once, and only while it is still the random one
// the first start made and nobody used: the one write to an account a
// session may make (docs/security.md says why it needs no UIA).

// consoleCalls are the requests a console session may make: what the page
// shows, and logging out. Not the settings (registration tokens are
// there), login tokens, console links, accounts or shutdown.
var consoleCalls = map[string]bool{
	"GET /_hearth/v1/status":           true,
	"GET /_hearth/v1/accounts":         true,
	"GET /_hearth/v1/accounts/nearby":  true,
	"POST /_hearth/v1/accounts/nearby": true,
	"GET /_hearth/v1/peers":            true,
	"GET /_hearth/v1/federation":       true,
	"POST /_hearth/v1/federation/mode": true,
	"GET /_hearth/v1/discovery":        true,
	"POST /_hearth/v1/discovery/mode":  true,
	"GET /_hearth/v1/logs":             true,
	// The bridges' health (no tokens in it); adding and removing them
	// needs the secret (hearth appservice).
	"GET /_hearth/v1/appservices": true,
	"GET /_hearth/qr.png":         true,
	"POST /_hearth/v1/logout":     true,
	// The first-run welcome (welcome.go): the owner's user ID and, while
	// the owner's password is the generated one nobody used, setting it.
	"GET /_hearth/v1/welcome":           true,
	"POST /_hearth/v1/welcome/password": true,
}

// consolePeerDecision reports whether r is the console's answer to a LAN
// peer's key change (POST /_hearth/v1/peers/{name}/accept or /refuse):
// the issue asks the console to offer both. Accepting a key routes
// federation to that peer over the LAN, which a session could not do
// otherwise, but it is exactly the owner's decision the page exists for.
func consolePeerDecision(r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.Path, "/_hearth/v1/peers/")
	if !ok || r.Method != http.MethodPost {
		return false
	}
	name, verb, ok := strings.Cut(rest, "/")
	return ok && name != "" && !strings.Contains(name, "/") && (verb == "accept" || verb == "refuse")
}

//go:embed console/index.html
var consolePage []byte

const (
	// SessionHeader carries the console's session token.
	SessionHeader = "X-Hearth-Session"
	sessionIdle   = time.Hour
	sessionMax    = 8 * time.Hour
	linkTTL       = 2 * time.Minute
	// maxCodes and maxSessions bound the maps; past them the oldest entry
	// goes. Only the owner (with the secret) can make codes, so this is
	// about a runaway script, not an attacker.
	maxCodes    = 16
	maxSessions = 8
)

// tokenKey is what the maps are keyed by: the SHA-256 of a token, so a
// lookup is one map access and the map never holds a usable token.
type tokenKey [sha256.Size]byte

func keyOf(tok string) tokenKey { return sha256.Sum256([]byte(tok)) }

type session struct {
	created, lastUsed time.Time
}

// sessions holds console codes and sessions in memory: both are
// short-lived and a restart simply asks for a new link.
type sessions struct {
	mu    sync.Mutex
	now   func() time.Time
	codes map[tokenKey]time.Time // one-time codes → expiry
	live  map[tokenKey]*session
}

func newSessions() *sessions {
	return &sessions{now: time.Now, codes: map[tokenKey]time.Time{}, live: map[tokenKey]*session{}}
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *session) expired(now time.Time) bool {
	return now.Sub(s.lastUsed) > sessionIdle || now.Sub(s.created) > sessionMax
}

// prune drops expired entries, then the oldest ones while a map is full.
// The maps are small (bounded above), so a pass over them is cheap.
func (s *sessions) prune(now time.Time) {
	maps.DeleteFunc(s.codes, func(_ tokenKey, exp time.Time) bool { return now.After(exp) })
	dropOldest(s.codes, maxCodes, time.Time.Before)
	maps.DeleteFunc(s.live, func(_ tokenKey, se *session) bool { return se.expired(now) })
	dropOldest(s.live, maxSessions, func(a, b *session) bool { return a.lastUsed.Before(b.lastUsed) })
}

// dropOldest deletes the oldest entry of m (by older) until there is room
// for one more below limit.
func dropOldest[V any](m map[tokenKey]V, limit int, older func(a, b V) bool) {
	for len(m) >= limit {
		var oldest tokenKey
		first := true
		for k, v := range m {
			if first || older(v, m[oldest]) {
				oldest, first = k, false
			}
		}
		delete(m, oldest)
	}
}

func (s *sessions) newCode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.prune(now)
	code := randomToken()
	s.codes[keyOf(code)] = now.Add(linkTTL)
	return code
}

// redeem trades a one-time code for a new session token.
func (s *sessions) redeem(code string) (string, bool) {
	if code == "" {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	k := keyOf(code)
	exp, ok := s.codes[k]
	delete(s.codes, k)
	if !ok || now.After(exp) {
		return "", false
	}
	s.prune(now)
	tok := randomToken()
	s.live[keyOf(tok)] = &session{created: now, lastUsed: now}
	return tok, true
}

// valid reports whether tok is a live session, and counts it as used.
func (s *sessions) valid(tok string) bool {
	if tok == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	k := keyOf(tok)
	se, ok := s.live[k]
	if !ok {
		return false
	}
	if se.expired(now) {
		delete(s.live, k)
		return false
	}
	se.lastUsed = now
	return true
}

// end logs a session out; endAll logs every console session out.
func (s *sessions) end(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.live, keyOf(tok))
}

func (s *sessions) endAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.live)
}

// consoleLink makes a one-time login link for the console. The code is in
// the fragment: it never reaches a server or its logs.
func (s *Server) consoleLink(w http.ResponseWriter, r *http.Request) error {
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"path": "/_hearth/#code=" + s.sessions.newCode(), "expires_in_ms": linkTTL.Milliseconds()})
	return nil
}

// consoleSession is POST /_hearth/v1/session: the page trades the code
// from its fragment for a session token.
func (s *Server) consoleSession(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Code string `json:"code"`
	}
	if err := readBody(r, &req); err != nil {
		return err
	}
	tok, ok := s.sessions.redeem(req.Code)
	if !ok {
		return &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
			Message: "this console link is used or expired; run 'hearth open console' for a new one"}
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"session": tok, "idle_timeout_ms": sessionIdle.Milliseconds(),
		"expires_in_ms": sessionMax.Milliseconds()})
	return nil
}

// logout ends the caller's console session; with the control secret it
// ends every console session.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	if tok := r.Header.Get(SessionHeader); tok != "" {
		s.sessions.end(tok)
	} else {
		s.sessions.endAll()
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{})
	return nil
}

func (s *Server) consolePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'; img-src 'self' blob:; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.Write(consolePage)
}

// qrCode is a QR code of the homeserver address, for phones: when the
// client API listens on the LAN, this machine's .local name there (Element
// X on Android allows plain http to .local names, not to addresses in
// numbers), else its LAN address; on loopback, this computer's own
// address (which only shows what to type on this computer).
func (s *Server) qrCode(w http.ResponseWriter, r *http.Request) error {
	l := s.backend.Status().Listeners
	addr := l["client"]
	for _, k := range []string{"client_lan", "client_lan_name"} {
		if l[k] != "" {
			addr = l[k]
		}
	}
	code, err := qr.Encode(addr, qr.M)
	if err != nil {
		return err
	}
	code.Scale = 6
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(code.PNG())
	return nil
}
