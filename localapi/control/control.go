// Package control serves Hearth's control API, /_hearth/v1, which the CLI,
// the tray and the web console use to manage the daemon. It lives on the
// loopback listener beside the Matrix API and on a unix socket in the data
// dir. Every request needs the per-install secret, and browser requests
// must come from the daemon's own origin, so neither other local users nor
// web pages (including through DNS rebinding) can drive it.
package control

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Status is the daemon's state as the CLI and tray show it.
type Status struct {
	Version       string            `json:"version"`
	UptimeSeconds int64             `json:"uptime_seconds"`
	ServerName    string            `json:"server_name"`
	Listeners     map[string]string `json:"listeners"`
	Federation    bool              `json:"federation"`
	// FederationPaused: federation is configured but paused (tray, CLI).
	FederationPaused bool `json:"federation_paused,omitempty"`
	// FederationMode is the mode in force: lan, internet or off.
	FederationMode string `json:"federation_mode"`
	// Discovery is the LAN discovery mode in force: on, browse or off.
	Discovery string `json:"discovery,omitempty"`
	// Reachable is the last reachability self-check: nil when none ran.
	Reachable *bool `json:"reachable,omitempty"`
	Peers     int   `json:"peers"`
	// PeerKeyChanges counts the peers whose key changed and that the
	// owner has neither accepted nor chosen to keep refusing.
	PeerKeyChanges int            `json:"peer_key_changes,omitempty"`
	QueueDepths    map[string]int `json:"queue_depths"`
	StorageBytes   int64          `json:"storage_bytes"`
	Accounts       int            `json:"accounts"`
	// UnreadHighlights counts the owner's unread mentions in every room.
	UnreadHighlights int    `json:"unread_highlights"`
	KeyStore         string `json:"key_store"`
	KeyStoreWarning  string `json:"key_store_warning,omitempty"`
	// Ringing are the calls ringing for the owner now (ringing.go).
	Ringing []RingingCall `json:"ringing,omitempty"`
	// Voicemail lists the voicemails left for the owner since the daemon
	// started, newest first (calls/agent).
	Voicemail []Voicemail `json:"voicemail,omitempty"`
	// WelcomePending: the owner's password is still the generated one,
	// unused, and the tray has not opened the console's welcome yet
	// (welcome.go).
	WelcomePending bool `json:"welcome_pending,omitempty"`
}

// Voicemail is one voicemail in the status: who called, the room it was
// posted in, its event and length.
type Voicemail struct {
	Caller     string    `json:"caller"`
	CallerName string    `json:"caller_name"`
	RoomID     string    `json:"room_id"`
	EventID    string    `json:"event_id"`
	When       time.Time `json:"when"`
	DurationMs int64     `json:"duration_ms"`
}

// Backend is what the control API asks of the daemon.
type Backend interface {
	Status() Status
	Accounts() ([]string, error)
	AddAccount(name, password string) (userID, usedPassword string, err error)
	SetPassword(name, password string) (usedPassword string, err error)
	Config() map[string]string
	// SetConfig validates and stores one setting; it applies on restart.
	SetConfig(key, value string) error
	Logs(n int) []string
	// LoginToken makes a single-use m.login.token for a local user (the
	// owner when name is empty).
	LoginToken(name string) (string, error)
	// ChatClientURL is the configured chat client's address, logged in
	// with loginToken; empty when none is configured.
	ChatClientURL(user, loginToken string) string
	// Shutdown asks the daemon to stop cleanly, after answering.
	Shutdown()
	// Federation reports the federation side; FederationPause pauses or
	// resumes it (an error when federation is not configured).
	Federation() FederationStatus
	FederationPause(paused bool) error
	// SetFederationMode stores federation = mode in the config file and
	// applies it at once where it can (see FederationStatus.RestartRequired).
	SetFederationMode(mode string) error
	// Peers lists the Hearth daemons found on the local network.
	Peers() PeersStatus
}

// PeersStatus is GET /_hearth/v1/peers: LAN discovery's peer table.
type PeersStatus struct {
	Enabled bool   `json:"enabled"` // lan_discovery is on and running
	Peers   []Peer `json:"peers"`
}

// Peer is one Hearth daemon seen on the local network over mDNS.
type Peer struct {
	ServerName string    `json:"server_name"`
	Addrs      []string  `json:"addresses"`
	Port       int       `json:"port"`
	KeyID      string    `json:"key_id"`
	Key        string    `json:"key"` // unpadded base64 ed25519 public key
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	// KeyChanged: it announced another key than the one pinned on first
	// sight; federation is not routed to it.
	KeyChanged bool `json:"key_changed,omitempty"`
	// KeyRefused: the owner chose to keep refusing this new key (POST
	// .../refuse); still not routed, no longer flagged as news.
	KeyRefused bool `json:"key_refused,omitempty"`
	// InternetKey is, for a public server name (not .local or dotless),
	// how its announced key compares with the key the internet (the
	// server itself or a notary) gave for it: "confirmed" (routed over
	// the LAN first), "unconfirmed" (no such key known yet: not routed)
	// or "mismatch" (another key: never routed). Absent for LAN names.
	InternetKey string `json:"internet_key,omitempty"`
	// TLSKey is the SPKI SHA-256 (unpadded base64) of the certificate key
	// its announcement binds to its signing key; absent: no valid binding,
	// so it is not trusted.
	TLSKey string `json:"tls_key,omitempty"`
	// Route is the ip:port federation to it uses, when it does.
	Route string `json:"route,omitempty"`
	// People are the accounts it announces to people nearby (only for a
	// trusted peer: a LAN name with its pinned key, or a public name whose
	// key the internet confirmed), as its user directory would.
	People []Person `json:"people,omitempty"`
}

// Person is someone a LAN peer announces to people nearby.
type Person struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"display_name,omitempty"`
}

// FederationStatus is GET /_hearth/v1/federation.
type FederationStatus struct {
	Enabled bool   `json:"enabled"` // the mode in force is not off
	Paused  bool   `json:"paused"`
	Listen  string `json:"listen,omitempty"`
	// Mode is the mode in force (lan, internet or off); Configured is the
	// one in the config file, and RestartRequired says they differ until
	// a restart (switching on a federation that was off at start).
	Mode            string `json:"mode"`
	Configured      string `json:"configured_mode"`
	RestartRequired bool   `json:"restart_required,omitempty"`
	// CertificateSHA256 is the SHA-256 of the federation certificate's
	// public key (SubjectPublicKeyInfo), unpadded base64: what LAN peers
	// pin through the signing key.
	CertificateSHA256 string `json:"certificate_sha256,omitempty"`
	// Reachability is the last self-check through a trusted notary.
	Reachability any `json:"reachability,omitempty"`
	// Destinations are the other servers with an outbound queue.
	Destinations []Destination `json:"destinations"`
}

// Destination is one remote server as the outbound queue sees it.
type Destination struct {
	Name      string    `json:"name"`
	Queued    int       `json:"queued"`
	Failures  int       `json:"failures"`
	LastError string    `json:"last_error,omitempty"`
	NextTry   time.Time `json:"next_try,omitzero"`
	LastSent  time.Time `json:"last_sent,omitzero"`
}

// Error is the control API's error body.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"error"`
	Field   string `json:"field,omitempty"` // the config key or body field at fault
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// Server is the control API handler.
type Server struct {
	backend  Backend
	secret   string
	mux      *http.ServeMux
	sessions *sessions
}

// New returns the handler; secret is the per-install credential.
func New(b Backend, secret string) *Server {
	s := &Server{backend: b, secret: secret, mux: http.NewServeMux(), sessions: newSessions()}
	s.mux.Handle("GET /_hearth/v1/status", handlerFunc(s.status))
	s.mux.Handle("GET /_hearth/v1/accounts", handlerFunc(s.accounts))
	s.mux.Handle("POST /_hearth/v1/accounts", handlerFunc(s.addAccount))
	s.mux.Handle("POST /_hearth/v1/accounts/{name}/password", handlerFunc(s.setPassword))
	s.mux.Handle("GET /_hearth/v1/config", handlerFunc(s.config))
	s.mux.Handle("PUT /_hearth/v1/config/{key}", handlerFunc(s.setConfig))
	s.mux.Handle("GET /_hearth/v1/logs", handlerFunc(s.logs))
	s.mux.Handle("POST /_hearth/v1/open", handlerFunc(s.open))
	s.mux.Handle("POST /_hearth/v1/console", handlerFunc(s.consoleLink))
	s.mux.Handle("POST /_hearth/v1/shutdown", handlerFunc(s.shutdown))
	s.mux.Handle("GET /_hearth/v1/federation", handlerFunc(s.federation))
	s.mux.Handle("POST /_hearth/v1/federation/pause", handlerFunc(s.federationPause(true)))
	s.mux.Handle("POST /_hearth/v1/federation/resume", handlerFunc(s.federationPause(false)))
	s.mux.Handle("POST /_hearth/v1/federation/mode", handlerFunc(s.federationMode))
	s.mux.HandleFunc("GET /_hearth/v1/peers", func(w http.ResponseWriter, r *http.Request) { matrixerr.WriteJSON(w, http.StatusOK, s.backend.Peers()) })
	s.peersRoutes()
	s.discoveryRoutes()
	s.nearbyRoutes()
	s.appserviceRoutes()
	s.welcomeRoutes()
	s.mux.Handle("POST /_hearth/v1/logout", handlerFunc(s.logout))
	s.mux.Handle("GET /_hearth/qr.png", handlerFunc(s.qrCode))
	s.mux.Handle("/_hearth/v1/", handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such control endpoint"}
	}))
	return s
}

// ServeHTTP checks where the request comes from and its credential.
// Every answer is for this computer's owner alone and may hold secrets
// (sessions, config), so none may be cached.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if err := checkOrigin(r); err != nil {
		writeError(w, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	// The page itself holds nothing secret, and the one-time code is its
	// own credential: both are open to anyone who passed checkOrigin.
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/_hearth/":
		s.consolePage(w, r)
		return
	case r.Method == http.MethodPost && r.URL.Path == "/_hearth/v1/session":
		handlerFunc(s.consoleSession).ServeHTTP(w, r)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	authed := ok && subtle.ConstantTimeCompare([]byte(token), []byte(s.secret)) == 1
	// A console session may read what the page shows and log out, nothing
	// more (console.go).
	if !authed && !((consoleCalls[r.Method+" "+r.URL.Path] || consolePeerDecision(r)) && s.sessions.valid(r.Header.Get(SessionHeader))) {
		writeError(w, &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "missing or wrong control credential"})
		return
	}
	s.mux.ServeHTTP(w, r)
}

type socketKey struct{}

// OverSocket is the handler for the unix socket. The socket file's 0600
// mode already keeps other users out, and no browser can reach it, so the
// host and origin checks do not apply; the credential still does.
func (s *Server) OverSocket() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), socketKey{}, true)))
	})
}

// checkOrigin refuses requests from other computers (the client listener
// may be bound to the LAN for phones, client_listen = 0.0.0.0:8008, and
// the Host header is theirs to choose), requests whose Host is not a
// loopback name — a DNS rebinding page reaches 127.0.0.1 under its own
// host name — and browser requests from any origin but the daemon's own.
func checkOrigin(r *http.Request) *Error {
	if r.Context().Value(socketKey{}) != nil {
		return nil
	}
	if peer, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !peer.Addr().Unmap().IsLoopback() {
		return &Error{Status: http.StatusForbidden, Code: "not_local", Message: "the control API only answers this computer"}
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if !isLoopbackName(host) {
		return &Error{Status: http.StatusForbidden, Code: "bad_host", Message: "the control API only answers to localhost"}
	}
	if origin := r.Header.Get("Origin"); origin != "" && origin != "http://"+r.Host {
		return &Error{Status: http.StatusForbidden, Code: "bad_origin", Message: "cross-origin requests are refused"}
	}
	return nil
}

func isLoopbackName(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// handlerFunc is a control handler: it writes its answer and returns
// nil, or returns the error, which ServeHTTP writes with writeError, the
// one place a handler's error is written.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (h handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h(w, r); err != nil {
		writeError(w, err)
	}
}

func writeError(w http.ResponseWriter, err error) {
	var ce *Error
	if !errors.As(err, &ce) {
		slog.Error("control API", "err", err)
		ce = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: err.Error()}
	}
	matrixerr.WriteJSON(w, ce.Status, ce)
}

// BadRequest is a control error for invalid input, naming the field.
func BadRequest(field, message string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: message, Field: field}
}

func readBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return BadRequest("", "body is not the expected JSON object: "+err.Error())
	}
	return nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	matrixerr.WriteJSON(w, http.StatusOK, s.backend.Status())
	return nil
}

func (s *Server) accounts(w http.ResponseWriter, r *http.Request) error {
	ids, err := s.backend.Accounts()
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"accounts": ids})
	return nil
}

func (s *Server) addAccount(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if err := readBody(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return BadRequest("name", "name is required")
	}
	id, pw, err := s.backend.AddAccount(req.Name, req.Password)
	if err != nil {
		return err
	}
	resp := map[string]any{"user_id": id}
	if req.Password == "" {
		resp["password"] = pw
	}
	matrixerr.WriteJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) setPassword(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Password string `json:"password"`
	}
	if err := readBody(r, &req); err != nil {
		return err
	}
	pw, err := s.backend.SetPassword(r.PathValue("name"), req.Password)
	if err != nil {
		return err
	}
	resp := map[string]any{}
	if req.Password == "" {
		resp["password"] = pw
	}
	matrixerr.WriteJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) error {
	matrixerr.WriteJSON(w, http.StatusOK, s.backend.Config())
	return nil
}

func (s *Server) setConfig(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Value string `json:"value"`
	}
	if err := readBody(r, &req); err != nil {
		return err
	}
	if err := s.backend.SetConfig(r.PathValue("key"), req.Value); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"restart_required": true})
	return nil
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	n := 100
	if v := r.URL.Query().Get("lines"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			return BadRequest("lines", "lines must be a positive integer")
		}
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"lines": s.backend.Logs(n)})
	return nil
}

// open makes a one-time login token so the CLI or tray can open a client
// already logged in.
func (s *Server) open(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		User string `json:"user"`
	}
	if err := readBody(r, &req); err != nil {
		return err
	}
	tok, err := s.backend.LoginToken(req.User)
	if err != nil {
		return err
	}
	out := map[string]any{"login_token": tok}
	if u := s.backend.ChatClientURL(req.User, tok); u != "" {
		out["client_url"] = u
	}
	matrixerr.WriteJSON(w, http.StatusOK, out)
	return nil
}

// shutdown stops the daemon (the tray's "Stop Hearth", and the stop path
// where the OS has no signals to send).
func (s *Server) shutdown(w http.ResponseWriter, r *http.Request) error {
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"stopping": true})
	s.backend.Shutdown()
	return nil
}

func (s *Server) federation(w http.ResponseWriter, r *http.Request) error {
	matrixerr.WriteJSON(w, http.StatusOK, s.backend.Federation())
	return nil
}

func (s *Server) federationPause(paused bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := s.backend.FederationPause(paused); err != nil {
			return &Error{Status: http.StatusConflict, Code: "federation_off", Message: err.Error()}
		}
		matrixerr.WriteJSON(w, http.StatusOK, s.backend.Federation())
		return nil
	}
}

// federationMode is POST /_hearth/v1/federation/mode {"mode": "lan"}: the
// tray's, CLI's and console's switch between off, lan and internet.
func (s *Server) federationMode(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Mode string `json:"mode"`
	}
	if err := readBody(r, &req); err != nil {
		return err
	}
	if err := s.backend.SetFederationMode(req.Mode); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, s.backend.Federation())
	return nil
}
