package control

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"rsc.io/qr"
)

// lanBackend is a daemon whose client API listens on the LAN, and
// lanNamedBackend one on a machine with an mDNS name.
type lanBackend struct{ stubBackend }
type lanNamedBackend struct{ stubBackend }

func (lanBackend) Status() Status {
	return Status{ServerName: "test", Listeners: map[string]string{"client": "http://127.0.0.1:8008", "client_lan": "http://192.168.1.23:8008"}}
}

func (lanNamedBackend) Status() Status {
	return Status{ServerName: "test", Listeners: map[string]string{"client": "http://127.0.0.1:8008",
		"client_lan": "http://192.168.1.23:8008", "client_lan_name": "http://mybox.local:8008"}}
}

// TestQRCodeAddress: the console's QR code holds the address a phone on
// the LAN reaches when the client API listens there (the machine's .local
// name when it has one, which Element X on Android accepts over http),
// never the loopback one; on loopback only it holds the address of this
// computer, as before.
func TestQRCodeAddress(t *testing.T) {
	for _, tc := range []struct {
		backend Backend
		want    string
	}{
		{lanNamedBackend{}, "http://mybox.local:8008"},
		{lanBackend{}, "http://192.168.1.23:8008"},
		{stubBackend{}, "http://127.0.0.1:1"},
	} {
		srv := New(tc.backend, secret)
		w := call(t, srv, "GET", "/_hearth/qr.png", "", http.Header{"Authorization": {"Bearer " + secret}})
		if w.Code != 200 {
			t.Fatalf("qr.png: %d %s", w.Code, w.Body)
		}
		code, err := qr.Encode(tc.want, qr.M)
		if err != nil {
			t.Fatal(err)
		}
		code.Scale = 6
		if !bytes.Equal(w.Body.Bytes(), code.PNG()) {
			t.Errorf("qr.png of %T is not the QR code of %s", tc.backend, tc.want)
		}
	}
}

// TestControlOnlyThisComputer: with the client listener on the LAN, a
// request from another computer is refused before its credential is
// looked at, whatever Host it claims; the console page too.
func TestControlOnlyThisComputer(t *testing.T) {
	srv := New(stubBackend{}, secret)
	for _, path := range []string{"/_hearth/v1/status", "/_hearth/"} {
		for _, remote := range []string{"192.168.1.50:4444", "[fd00::7]:4444", "garbage"} {
			r := httptest.NewRequest("GET", "http://127.0.0.1:8008"+path, strings.NewReader(""))
			r.RemoteAddr = remote
			r.Header.Set("Authorization", "Bearer "+secret)
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r)
			if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "not_local") {
				t.Errorf("GET %s from %s: %d %s", path, remote, w.Code, w.Body)
			}
		}
		for _, remote := range []string{"127.0.0.1:4444", "[::1]:4444", "[::ffff:127.0.0.1]:4444"} {
			r := httptest.NewRequest("GET", "http://127.0.0.1:8008"+path, strings.NewReader(""))
			r.RemoteAddr = remote
			r.Header.Set("Authorization", "Bearer "+secret)
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r)
			if w.Code != 200 {
				t.Errorf("GET %s from %s (this computer): %d %s", path, remote, w.Code, w.Body)
			}
		}
	}
}
