package control

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// stubBackend answers the few calls the console tests make; the control
// package owns only the HTTP side, the daemon implements Backend for real
// (daemon/control_test.go drives that one).
type stubBackend struct{ Backend }

func (stubBackend) Status() Status {
	return Status{ServerName: "test", Listeners: map[string]string{"client": "http://127.0.0.1:1"}}
}
func (stubBackend) LoginToken(string) (string, error)   { return "login-token", nil }
func (stubBackend) ChatClientURL(string, string) string { return "" }

const secret = "the-control-secret"

// call makes one request to srv as a loopback client; header is added.
func call(t *testing.T, srv http.Handler, method, path, body string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:8008"+path, strings.NewReader(body))
	r.RemoteAddr = "127.0.0.1:50000"
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, r)
	return w
}

// login runs the console's sign-in: a code from the owner, traded by the
// page for a session token.
func login(t *testing.T, srv *Server) string {
	t.Helper()
	w := call(t, srv, "POST", "/_hearth/v1/console", "{}", http.Header{"Authorization": {"Bearer " + secret}})
	var link struct{ Path string }
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &link) != nil {
		t.Fatalf("console link: %d %s", w.Code, w.Body)
	}
	code, ok := strings.CutPrefix(link.Path, "/_hearth/#code=")
	if !ok {
		t.Fatalf("the code must travel in the fragment, not to the server: %q", link.Path)
	}
	w = call(t, srv, "POST", "/_hearth/v1/session", `{"code":"`+code+`"}`, nil)
	var sess struct{ Session string }
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &sess) != nil || sess.Session == "" {
		t.Fatalf("redeem: %d %s", w.Code, w.Body)
	}
	if len(w.Result().Cookies()) != 0 {
		t.Fatalf("a console session must not be a cookie (cookies ignore ports): %v", w.Result().Cookies())
	}
	if again := call(t, srv, "POST", "/_hearth/v1/session", `{"code":"`+code+`"}`, nil); again.Code != 401 {
		t.Fatalf("code redeemed twice: %d", again.Code)
	}
	return sess.Session
}

func asSession(tok string) http.Header { return http.Header{SessionHeader: {tok}} }

// TestConsoleSessionScope: a session reads what the page shows, but cannot mint login tokens
// or console links, change settings or stop the daemon, and only the
// header carries it.
func TestConsoleSessionScope(t *testing.T) {
	srv := New(stubBackend{}, secret)
	tok := login(t, srv)
	for _, tc := range []struct {
		method, path string
		header       http.Header
		want         int
	}{
		{"GET", "/_hearth/v1/status", asSession(tok), 200},
		{"GET", "/_hearth/qr.png", asSession(tok), 200},
		{"GET", "/_hearth/v1/status", http.Header{"Cookie": {"hearth_console=" + tok}}, 401},
		{"GET", "/_hearth/v1/status", http.Header{"Authorization": {"Bearer " + tok}}, 401},
		{"GET", "/_hearth/v1/status", asSession("guess"), 401},
		{"POST", "/_hearth/v1/open", asSession(tok), 401},
		{"POST", "/_hearth/v1/console", asSession(tok), 401},
		{"POST", "/_hearth/v1/shutdown", asSession(tok), 401},
		{"PUT", "/_hearth/v1/config/registration", asSession(tok), 401},
		{"GET", "/_hearth/v1/config", asSession(tok), 401}, // registration tokens
		{"POST", "/_hearth/v1/accounts", asSession(tok), 401},
		{"GET", "/_hearth/", nil, 200}, // the page holds nothing secret
	} {
		if got := call(t, srv, tc.method, tc.path, "{}", tc.header).Code; got != tc.want {
			t.Errorf("%s %s %v: %d, want %d", tc.method, tc.path, tc.header, got, tc.want)
		}
	}
}

// TestConsoleSessionEnds: logout, a restarted daemon (a new Server), idle
// time and age each end a session.
func TestConsoleSessionEnds(t *testing.T) {
	srv := New(stubBackend{}, secret)
	tok := login(t, srv)
	if w := call(t, srv, "POST", "/_hearth/v1/logout", "", asSession(tok)); w.Code != 200 {
		t.Fatalf("logout: %d %s", w.Code, w.Body)
	}
	if got := call(t, srv, "GET", "/_hearth/v1/status", "", asSession(tok)).Code; got != 401 {
		t.Fatalf("session after logout: %d", got)
	}

	tok = login(t, srv)
	restarted := New(stubBackend{}, secret)
	if got := call(t, restarted, "GET", "/_hearth/v1/status", "", asSession(tok)).Code; got != 401 {
		t.Fatalf("session after restart: %d", got)
	}

	// The owner's CLI can end every console session at once.
	tok = login(t, srv)
	call(t, srv, "POST", "/_hearth/v1/logout", "", http.Header{"Authorization": {"Bearer " + secret}})
	if got := call(t, srv, "GET", "/_hearth/v1/status", "", asSession(tok)).Code; got != 401 {
		t.Fatalf("session after logout of all: %d", got)
	}

	now := time.Now()
	srv.sessions.now = func() time.Time { return now }
	idle, old := login(t, srv), login(t, srv)
	for i := 1; i <= 17; i++ { // old is used every half hour: never idle, but 8h30 old at the end
		now = now.Add(30 * time.Minute)
		if i == 3 {
			if got := call(t, srv, "GET", "/_hearth/v1/status", "", asSession(idle)).Code; got != 401 {
				t.Fatalf("session unused for 90 min: %d", got)
			}
		}
		want := 200
		if i == 17 {
			want = 401
		}
		if got := call(t, srv, "GET", "/_hearth/v1/status", "", asSession(old)).Code; got != want {
			t.Fatalf("session at %v: %d, want %d", time.Duration(i)*30*time.Minute, got, want)
		}
	}
}

// TestConsoleSessionsBounded: live sessions are capped, the least recently
// used going first.
func TestConsoleSessionsBounded(t *testing.T) {
	srv := New(stubBackend{}, secret)
	first := login(t, srv)
	for i := 0; i < maxSessions; i++ {
		login(t, srv)
	}
	if n := len(srv.sessions.live); n > maxSessions {
		t.Fatalf("%d live sessions, cap %d", n, maxSessions)
	}
	if got := call(t, srv, "GET", "/_hearth/v1/status", "", asSession(first)).Code; got != 401 {
		t.Fatalf("oldest session kept past the cap: %d", got)
	}
}
