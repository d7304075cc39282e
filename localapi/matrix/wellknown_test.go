package matrix_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// wellKnownAt asks the real handler for /.well-known/matrix/client as if
// the connection had come in on the local address local with the Host
// header host: a test cannot listen on a LAN address without sending
// traffic off loopback.
func (ts *testServer) wellKnownAt(t *testing.T, local, host string) string {
	t.Helper()
	req := httptest.NewRequest("GET", "/.well-known/matrix/client", nil)
	req.Host = host
	addr, err := net.ResolveTCPAddr("tcp", local)
	if err != nil {
		t.Fatal(err)
	}
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, net.Addr(addr)))
	rec := httptest.NewRecorder()
	ts.API.ServeHTTP(rec, req)
	var body struct {
		HS struct {
			BaseURL string `json:"base_url"`
		} `json:"m.homeserver"`
	}
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
		t.Fatalf("well-known at %s, Host %q: %d %s", local, host, rec.Code, rec.Body)
	}
	return body.HS.BaseURL
}

// TestWellKnownClientLAN: with the client API on the LAN, the base URL is
// the address the client reached, never localhost for a phone that came
// in over the LAN, and never a host the request made up; the server's
// own name and the machine's address are kept as the client wrote them.
func TestWellKnownClientLAN(t *testing.T) {
	ts := newTestServer(t)
	// The machine's .local name, which the console shows phones.
	machine, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	machineLabel, _, _ := strings.Cut(strings.ToLower(machine), ".")
	for _, c := range []struct{ local, host, want string }{
		{"192.168.1.23:8008", "192.168.1.23:8008", "http://192.168.1.23:8008"},
		{"192.168.1.23:8008", "localhost:8008", "http://192.168.1.23:8008"},
		{"192.168.1.23:8008", "127.0.0.1:8008", "http://192.168.1.23:8008"},
		{"192.168.1.23:8008", "evil.example:8008", "http://192.168.1.23:8008"},
		{"192.168.1.23:8008", "evil.example:1234", "http://192.168.1.23:8008"},
		{"192.168.1.23:8008", "10.0.0.9:8008", "http://192.168.1.23:8008"},
		{"192.168.1.23:8008", "", "http://192.168.1.23:8008"},
		{"192.168.1.23:8008", "a/b@c:8008", "http://192.168.1.23:8008"},
		{"192.168.1.23:8008", "192.168.1.23:notaport", "http://192.168.1.23:8008"},
		{"192.168.1.23:8008", "test.local:8008", "http://test.local:8008"},
		{"192.168.1.23:8008", "192.168.1.23", "http://192.168.1.23:8008"},
		{"[fd00::5]:8008", "evil.example", "http://[fd00::5]:8008"},
		{"[fd00::5]:8008", "[fd00::5]:8008", "http://[fd00::5]:8008"},
		{"[::ffff:192.168.1.23]:8008", "192.168.1.23:8008", "http://192.168.1.23:8008"},
		{"127.0.0.1:8008", "localhost:8008", "http://localhost:8008"},
		{"127.0.0.1:8008", "127.0.0.1:8008", "http://127.0.0.1:8008"},
		{"127.0.0.1:8008", "evil.example:8008", "http://127.0.0.1:8008"},
		{"192.168.1.23:8008", machineLabel + ".local:8008", "http://" + machineLabel + ".local:8008"},
		{"192.168.1.23:8008", "not-" + machineLabel + ".local:8008", "http://192.168.1.23:8008"},
	} {
		if got := ts.wellKnownAt(t, c.local, c.host); got != c.want {
			t.Errorf("reached at %s with Host %q: base_url %q, want %q", c.local, c.host, got, c.want)
		}
	}
}

// TestWellKnownClientCORS: a web client on another origin may read the
// well-known document (Client-Server API §"Web Browser Clients"), the
// preflight included.
func TestWellKnownClientCORS(t *testing.T) {
	ts := newTestServer(t)
	req := ts.newRequest(t, "GET", "/.well-known/matrix/client", "", nil)
	req.Header.Set("Origin", "https://app.element.io")
	r := ts.doRequest(t, req)
	r.wantStatus(t, 200)
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("GET: Access-Control-Allow-Origin %q, want *", got)
	}
	req = ts.newRequest(t, "OPTIONS", "/.well-known/matrix/client", "", nil)
	req.Header.Set("Origin", "https://app.element.io")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "Authorization")
	r = ts.doRequest(t, req)
	r.wantStatus(t, 200)
	h := r.Header
	if h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Access-Control-Allow-Methods") == "" ||
		h.Get("Access-Control-Allow-Headers") == "" {
		t.Errorf("preflight headers: %v", h)
	}
}
