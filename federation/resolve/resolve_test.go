package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

func TestResolveStatic(t *testing.T) {
	e := newEnv(t, map[string]string{"origin.test": "127.0.0.1:1234", "[::1]:99": "[::1]:5"})
	e.wk.handle("origin.test", serveJSON(`{"m.server":"deleg.test:1"}`))
	if got, want := e.resolve(t, "origin.test"), (Target{"127.0.0.1:1234", "origin.test", "origin.test", true}); got != want {
		t.Errorf("static: got %+v, want %+v", got, want)
	}
	if got, want := e.resolve(t, "[::1]:99"), (Target{"[::1]:5", "[::1]:99", "::1", true}); got != want {
		t.Errorf("static IPv6: got %+v, want %+v", got, want)
	}
	if e.wk.count("origin.test") != 0 {
		t.Error("a static name must not fetch well-known")
	}

	// SetStatic adds and removes at run time (LAN discovery).
	if err := e.r.SetStatic("peer.test", "10.0.0.5:8448"); err != nil {
		t.Fatal(err)
	}
	if got := e.resolve(t, "peer.test"); got.Addr != "10.0.0.5:8448" || got.TLSServerName != "peer.test" {
		t.Errorf("SetStatic: got %+v", got)
	}
	if err := e.r.SetStatic("peer.test", ""); err != nil {
		t.Fatal(err)
	}
	if got := e.resolve(t, "peer.test"); got.Addr != "peer.test:8448" {
		t.Errorf("after removal: got %+v", got)
	}
	if err := e.r.SetStatic("peer.test", "no-port"); err == nil {
		t.Error("SetStatic accepted an address without port")
	}
}

func TestResolveDirect(t *testing.T) {
	e := newEnv(t, nil)
	for name, want := range map[string]Target{
		"1.2.3.4":              {"1.2.3.4:8448", "1.2.3.4", "1.2.3.4", false},
		"1.2.3.4:99":           {"1.2.3.4:99", "1.2.3.4:99", "1.2.3.4", false},
		"[::1]":                {"[::1]:8448", "[::1]", "::1", false},
		"[2001:db8::1]:8080":   {"[2001:db8::1]:8080", "[2001:db8::1]:8080", "2001:db8::1", false},
		"origin.test:1234":     {"origin.test:1234", "origin.test:1234", "origin.test", false},
		"matrix.example.org:8": {"matrix.example.org:8", "matrix.example.org:8", "matrix.example.org", false},
	} {
		if got := e.resolve(t, name); got != want {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}
	if n := e.wk.count("origin.test"); n != 0 {
		t.Errorf("explicit port fetched well-known %d times", n)
	}
	if len(e.srv.calls) != 0 || len(e.net.dials) != 0 {
		t.Errorf("direct names looked up SRV %v or dialled %v", e.srv.calls, e.net.dials)
	}
}

func TestResolveInvalid(t *testing.T) {
	e := newEnv(t, nil)
	for _, name := range []string{"", "bad name", "host:0", "under_score.test", "[::1", "::1"} {
		if _, err := e.r.Resolve(context.Background(), spec.ServerName(name)); !errors.Is(err, ErrInvalidServerName) {
			t.Errorf("%q: got %v, want ErrInvalidServerName", name, err)
		}
	}
}

func TestResolveWellKnownDelegation(t *testing.T) {
	fed := &net.SRV{Target: "fed.host.test.", Port: 7000}
	old := &net.SRV{Target: "old.host.test.", Port: 7001}
	for _, tc := range []struct {
		name    string
		mserver string
		srv     map[string]*net.SRV
		want    Target
	}{
		{"name with port", "deleg.test:9000", nil, Target{"deleg.test:9000", "deleg.test:9000", "deleg.test", false}},
		{"name via _matrix-fed", "deleg.test", map[string]*net.SRV{"_matrix-fed._tcp.deleg.test": fed, "_matrix._tcp.deleg.test": old},
			Target{"fed.host.test:7000", "deleg.test", "deleg.test", false}},
		{"name via _matrix", "deleg.test", map[string]*net.SRV{"_matrix._tcp.deleg.test": old},
			Target{"old.host.test:7001", "deleg.test", "deleg.test", false}},
		{"name without SRV", "deleg.test", nil, Target{"deleg.test:8448", "deleg.test", "deleg.test", false}},
		{"IPv4", "10.1.2.3", nil, Target{"10.1.2.3:8448", "10.1.2.3", "10.1.2.3", false}},
		{"IPv4 with port", "10.1.2.3:4443", nil, Target{"10.1.2.3:4443", "10.1.2.3:4443", "10.1.2.3", false}},
		{"IPv6 with port", "[fd00::2]:4443", nil, Target{"[fd00::2]:4443", "[fd00::2]:4443", "fd00::2", false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.wk.handle("origin.test", serveJSON(`{"m.server":"`+tc.mserver+`"}`))
			// The delegated name's own well-known must never be consulted,
			// nor the original name's SRV records.
			e.wk.handle("deleg.test", serveJSON(`{"m.server":"elsewhere.test:1"}`))
			e.srv.set("_matrix-fed._tcp.origin.test", &net.SRV{Target: "wrong.test.", Port: 1})
			for k, v := range tc.srv {
				e.srv.set(k, v)
			}
			if got := e.resolve(t, "origin.test"); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if n := e.wk.count("deleg.test"); n != 0 {
				t.Errorf("delegated name's well-known fetched %d times", n)
			}
			if n := e.srv.count("_matrix-fed._tcp.origin.test"); n != 0 {
				t.Errorf("original name's SRV looked up %d times despite delegation", n)
			}
		})
	}
}

func TestResolveWithoutWellKnown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		srv    map[string]*net.SRV
		served bool // origin.test:443 answers 404 rather than refusing
		want   Target
	}{
		{"_matrix-fed", map[string]*net.SRV{
			"_matrix-fed._tcp.origin.test": {Target: "fed.host.test.", Port: 7000},
			"_matrix._tcp.origin.test":     {Target: "old.host.test.", Port: 7001},
		}, true, Target{"fed.host.test:7000", "origin.test", "origin.test", false}},
		{"_matrix", map[string]*net.SRV{
			"_matrix._tcp.origin.test": {Target: "old.host.test.", Port: 7001},
		}, true, Target{"old.host.test:7001", "origin.test", "origin.test", false}},
		{"SRV target dot skipped", map[string]*net.SRV{
			"_matrix-fed._tcp.origin.test": {Target: ".", Port: 7000},
		}, true, Target{"origin.test:8448", "origin.test", "origin.test", false}},
		{"fallback 8448", nil, true, Target{"origin.test:8448", "origin.test", "origin.test", false}},
		{"port 443 refused", nil, false, Target{"origin.test:8448", "origin.test", "origin.test", false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if !tc.served {
				e.net.route("origin.test:443", "127.0.0.1:1") // nothing listens there
			}
			for k, v := range tc.srv {
				e.srv.set(k, v)
			}
			if got := e.resolve(t, "origin.test"); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestResolveBadWellKnownFallsThrough(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"not JSON", serveJSON(`<html>`)},
		{"array", serveJSON(`["deleg.test:9000"]`)},
		{"no m.server", serveJSON(`{"m.serverx":"deleg.test:9000"}`)},
		{"m.server not a string", serveJSON(`{"m.server":9000}`)},
		{"m.server invalid", serveJSON(`{"m.server":"deleg test"}`)},
		{"m.server empty", serveJSON(`{"m.server":""}`)},
		// Valid JSON followed by whitespace: a reader that merely truncated
		// at the cap would still parse it.
		{"oversized", serveJSON(`{"m.server":"deleg.test:9000"}` + repeat(' ', wellKnownMaxBytes))},
		{"6 redirects", redirects(6)},
		{"status 500", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"m.server":"deleg.test:9000"}`))
		}},
		{"redirect loop", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/.well-known/matrix/server", http.StatusFound)
		}},
		{"redirect to http", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://deleg.test/x", http.StatusFound)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.wk.handle("origin.test", tc.h)
			e.srv.set("_matrix-fed._tcp.origin.test", &net.SRV{Target: "fed.host.test", Port: 7000})
			// Plain HTTP on deleg.test would answer, were a redirect there followed.
			plain := httptest.NewServer(serveJSON(`{"m.server":"deleg.test:9000"}`))
			defer plain.Close()
			e.net.route("deleg.test:80", plain.Listener.Addr().String())
			want := Target{"fed.host.test:7000", "origin.test", "origin.test", false}
			if got := e.resolve(t, "origin.test"); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestResolveWellKnownAccepted(t *testing.T) {
	// The counterparts of the failures above that must succeed: a body just
	// under the cap, any Content-Type, and a redirect within bounds.
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"large but under the cap", serveJSON(`{"m.server":"deleg.test:9000","pad":"` + repeat('x', wellKnownMaxBytes-60) + `"}`)},
		{"text/plain", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(`{"m.server":"deleg.test:9000"}`))
		}},
		{"5 redirects", redirects(5)},
		{"redirects", func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/.well-known/matrix/server":
				http.Redirect(w, r, "/hop1", http.StatusMovedPermanently)
			case "/hop1":
				http.Redirect(w, r, "https://deleg.test/hop2", http.StatusFound)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.wk.handle("origin.test", tc.h)
			e.wk.handle("deleg.test", serveJSON(`{"m.server":"deleg.test:9000"}`))
			want := Target{"deleg.test:9000", "deleg.test:9000", "deleg.test", false}
			if got := e.resolve(t, "origin.test"); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{CAFile: filepath.Join(t.TempDir(), "missing.pem")}); err == nil {
		t.Error("New accepted a missing CA file")
	}
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{CAFile: junk}); err == nil {
		t.Error("New accepted a CA file without certificates")
	}
	if _, err := New(Config{Static: map[string]string{"a.test": "a.test"}}); err == nil {
		t.Error("New accepted a static address without port")
	}
}

// redirects answers after n redirects: /.well-known/matrix/server → /hop/1
// → … → /hop/n, which serves the delegation.
func redirects(n int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hop := 0
		fmt.Sscanf(r.URL.Path, "/hop/%d", &hop)
		if hop < n {
			http.Redirect(w, r, fmt.Sprintf("/hop/%d", hop+1), http.StatusFound)
			return
		}
		serveJSON(`{"m.server":"deleg.test:9000"}`)(w, r)
	}
}

func repeat(b byte, n int) string {
	s := make([]byte, n)
	for i := range s {
		s[i] = b
	}
	return string(s)
}
