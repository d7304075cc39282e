// Package matrix serves the Matrix Client-Server API on the localhost
// listener. It authenticates requests, decodes them with size limits, calls
// the room engine and the account service, and writes spec responses. It
// holds no state of its own beyond short-lived UIA sessions.
package matrix

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/media"
	"github.com/hearth-chat/hearth/push"
)

// Registration modes (config key registration).
const (
	RegistrationClosed = "closed"
	RegistrationToken  = "token"
	RegistrationOpen   = "open"
)

// Config is what the API needs beyond its services.
type Config struct {
	// MaxBodyBytes bounds every request body; larger ones get M_TOO_LARGE
	// before they are read.
	MaxBodyBytes int64
	// Registration is closed, token or open.
	Registration string
	// RegistrationTokens are accepted in token mode (spec v1.2).
	RegistrationTokens []string
	// PresenceTimeout is how long a device keeps its user present after
	// its last request ended; 30 s when zero (presence.go).
	PresenceTimeout time.Duration
}

// Server is the Client-Server API handler.
type Server struct {
	accounts *account.Accounts
	rooms    roomEngine
	cfg      Config
	mux      *http.ServeMux
	uia      *uiaSessions
	guard    *passwordGuard // password guessing limits (ratelimit.go)
	presence *presence
	media    *media.Repo   // set by SetMedia (media.go)
	search   searchIndex   // set by SetSearch (search.go)
	push     *push.Service // set by SetPush (pushrules.go)
	keys     *e2ee.Service // set by SetKeys (keys.go)
	fed      Federation    // set by SetFederation (federation.go); nil while federation is off
	nearby   Nearby        // set by SetNearby (nearby.go); nil without LAN discovery
	voip     *voip         // GET /voip/turnServer (voip.go)
	delayed  *delayedAPI   // MSC4140 delayed events (delayed.go)
	appsvc   Appservices   // set by SetAppservices (appservice.go); nil without any

	spaces hierarchyPages // GET /hierarchy walks between pages (hierarchy.go)

	summaryLimits summaryLimits   // anonymous GET /room_summary lookups over federation (roomsummary.go)
	sliding       slidingConns    // sliding sync connections (slidingsync_conn.go)
	ignored       ignoredCache    // each user's ignored users for /sync (sync_ignored.go)
	filters       filterCache     // stored filters /sync was given by ID (sync_filter.go)
	polls         pollDeadlines   // /sync long polls' timeouts (sync_wake.go)
	drained       drainedToDevice // devices with no to-device message queued up to a position (sync_wake.go)
	shared        sharedSyncs     // responses long polls of one span share (sync_shared.go)
}

// New builds the handler.
func New(accounts *account.Accounts, rooms roomEngine, cfg Config) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	s := &Server{accounts: accounts, rooms: rooms, cfg: cfg, mux: http.NewServeMux(),
		uia: newUIASessions(), guard: newPasswordGuard(), voip: newVoip(), presence: newPresence(accounts, rooms, cfg.PresenceTimeout)}
	s.routes()
	if es, ok := rooms.(earlySyncer); ok {
		es.SetEarlySync(preparer{s}) // sync_early.go
	}
	return s
}

var (
	corsOrigin  = []string{"*"}
	corsMethods = []string{"GET, POST, PUT, DELETE, OPTIONS"}
	corsHeaders = []string{"X-Requested-With, Content-Type, Authorization"}
)

// ServeHTTP applies CORS (Client-Server API §"Web Browser Clients") and the
// body limit, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The CORS headers' keys are canonical already and their values are
	// shared, read-only, by every response: Header.Set would canonicalise
	// and allocate them on each request (one /sync per poll adds up).
	h := w.Header()
	h["Access-Control-Allow-Origin"] = corsOrigin
	h["Access-Control-Allow-Methods"] = corsMethods
	h["Access-Control-Allow-Headers"] = corsHeaders
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK)
		return
	}
	r = withR0Alias(r)
	if s.isMediaUpload(r) {
		s.mux.ServeHTTP(w, r) // uploads have their own limit, max_upload_bytes
		return
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		matrixerr.Write(w, matrixerr.TooLarge("request body is too large"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	s.mux.ServeHTTP(w, r)
}

// unrecognized answers paths no route matches: 405 if another method would
// match, else 404, both M_UNRECOGNIZED as the spec asks.
func (s *Server) unrecognized(w http.ResponseWriter, r *http.Request) error {
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pattern := s.mux.Handler(r2); pattern != "" && pattern != "/" {
			e := matrixerr.Unrecognized("method not allowed on this endpoint")
			e.Status = http.StatusMethodNotAllowed
			return e
		}
	}
	return matrixerr.Unrecognized("unrecognized request")
}

// readBody reads a body that must be a JSON object. Syntax errors and
// invalid UTF-8 are M_NOT_JSON, anything but an object is M_BAD_JSON, and an
// empty body reads as {} because several endpoints allow one.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, matrixerr.TooLarge("request body is too large")
	}
	if err != nil {
		return nil, matrixerr.NotJSON("could not read body")
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return []byte("{}"), nil
	}
	if err := jsonContentType(r); err != nil {
		return nil, err
	}
	if !utf8.Valid(body) {
		return nil, matrixerr.NotJSON("body is not valid UTF-8")
	}
	if !json.Valid(body) {
		return nil, matrixerr.NotJSON("body is not valid JSON")
	}
	if body[0] != '{' {
		return nil, matrixerr.BadJSON("body must be a JSON object")
	}
	if jsonDepth(body) > maxJSONDepth {
		return nil, matrixerr.BadJSON("JSON is nested too deeply")
	}
	return body, nil
}

// jsonContentType refuses a body labelled as anything but JSON (with any
// parameters, such as charset). HTML forms and a page's "simple"
// cross-origin requests are text/plain, application/x-www-form-urlencoded
// or multipart/form-data, and those should not be taken for API calls
// (issue 10: a text/plain POST /login was answered). The spec asks
// clients for application/json but does not require the header
// (Client-Server API §"API standards"), so a body without one is still
// read. This is hygiene, not the defence against a web page guessing
// passwords: the spec's CORS policy (Access-Control-Allow-Origin: *,
// Content-Type allowed) lets any page send real JSON after a preflight,
// or an unlabelled Blob without one; the guessing limits in ratelimit.go
// are that defence. The answer is 400 M_NOT_JSON, the spec's code for a
// body that is not JSON.
//
// A request with an Authorization header is neither a form nor a simple
// request (the header makes a browser ask first), so its label is not
// checked: matrix-js-sdk's Rust crypto, as in Element, sends the request
// of a verification in a DM as a JSON string that fetch labels
// text/plain;charset=UTF-8 (issue 11: "Verify user" got M_NOT_JSON).
func jsonContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" || r.Header.Get("Authorization") != "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return matrixerr.NotJSON("Content-Type must be application/json")
	}
	return nil
}

// maxJSONDepth bounds nesting in request bodies. Real Matrix content is a
// few levels deep; thousands of levels only make canonicalisation slow.
const maxJSONDepth = 128

// jsonDepth returns the deepest nesting of objects and arrays in valid JSON.
func jsonDepth(b []byte) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case inString:
			if escaped {
				escaped = false
			} else if c == '\\' {
				escaped = true
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// readJSON decodes the body into v; valid JSON of the wrong shape is
// M_BAD_JSON.
func readJSON(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return decode(body, v)
}

// decode unmarshals a body already checked by readBody.
func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return matrixerr.BadJSON(strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}
