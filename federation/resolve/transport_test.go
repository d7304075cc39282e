package resolve

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

const (
	localName  = spec.ServerName("hearth.test")
	remoteName = spec.ServerName("remote.test")
	localKeyID = gomatrixserverlib.KeyID("ed25519:a")
)

// oneKey verifies X-Matrix signatures of one server with one key.
type oneKey struct {
	name spec.ServerName
	key  ed25519.PublicKey
}

func (k oneKey) VerifyJSONs(_ context.Context, reqs []gomatrixserverlib.VerifyJSONRequest) ([]gomatrixserverlib.VerifyJSONResult, error) {
	res := make([]gomatrixserverlib.VerifyJSONResult, len(reqs))
	for i, q := range reqs {
		if q.ServerName != k.name {
			res[i].Error = fmt.Errorf("no key for %s", q.ServerName)
			continue
		}
		res[i].Error = gomatrixserverlib.VerifyJSON(string(q.ServerName), localKeyID, k.key, q.Message)
	}
	return res, nil
}

// fedServer is remote.test's federation listener, reached by delegation:
// remote.test's well-known names fed.test:8448, which fakeNet maps here.
type fedServer struct {
	srv      *httptest.Server
	requests atomic.Int32
	conns    atomic.Int32
	mu       sync.Mutex
	problems []string
}

func (f *fedServer) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

func startFedServer(t *testing.T, e *env, cert tls.Certificate, verifier gomatrixserverlib.JSONVerifier) *fedServer {
	t.Helper()
	f := &fedServer{}
	h := func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		if r.Host != "fed.test:8448" {
			f.problem("Host header %q, want fed.test:8448", r.Host)
		}
		if r.TLS == nil || r.TLS.ServerName != "fed.test" {
			f.problem("SNI %v, want fed.test", r.TLS)
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/_matrix/federation/v1/version" {
			io.WriteString(w, `{"server":{"name":"remote","version":"1"}}`)
			return
		}
		fedReq, errResp := fclient.VerifyHTTPRequest(r, time.Now(), remoteName, nil, verifier)
		if fedReq == nil {
			f.problem("X-Matrix verification failed: %d %v", errResp.Code, errResp.JSON)
			w.WriteHeader(errResp.Code)
			io.WriteString(w, `{"errcode":"M_UNAUTHORIZED","error":"bad signature"}`)
			return
		}
		if fedReq.Origin() != localName || !strings.Contains(string(fedReq.Content()), `"origin":"hearth.test"`) {
			f.problem("origin %q, content %s", fedReq.Origin(), fedReq.Content())
		}
		io.WriteString(w, `{"pdus":{}}`)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(h))
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			f.conns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	f.srv = s
	e.wk.handle(string(remoteName), serveJSON(`{"m.server":"fed.test:8448"}`))
	e.net.route("fed.test:8448", s.Listener.Addr().String())
	return f
}

func newFederationClient(t *testing.T, e *env) (fclient.FederationClient, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ids := []*fclient.SigningIdentity{{ServerName: localName, KeyID: localKeyID, PrivateKey: priv}}
	return fclient.NewFederationClient(ids, fclient.WithTransport(e.r.Transport())), pub
}

func sendTxn(ctx context.Context, fc fclient.FederationClient, id string) error {
	_, err := fc.SendTransaction(ctx, gomatrixserverlib.Transaction{
		TransactionID:  gomatrixserverlib.TransactionID(id),
		Origin:         localName,
		Destination:    remoteName,
		OriginServerTS: spec.AsTimestamp(time.Now()),
		PDUs:           []json.RawMessage{},
	})
	return err
}

func TestTransportSignedFederationRequest(t *testing.T) {
	e := newEnv(t, nil)
	fc, pub := newFederationClient(t, e)
	f := startFedServer(t, e, e.ca.issue(t, "fed.test"), oneKey{name: localName, key: pub})
	ctx := context.Background()
	for _, id := range []string{"t1", "t2", "t3"} {
		if err := sendTxn(ctx, fc, id); err != nil {
			t.Fatalf("SendTransaction %s: %v", id, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.problems {
		t.Error(p)
	}
	if n := f.requests.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3", n)
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 requests, want 1 kept alive", n)
	}

	// The unsigned client goes the same way.
	v, err := fclient.NewClient(fclient.WithTransport(e.r.Transport())).GetVersion(ctx, remoteName)
	if err != nil || v.Server.Name != "remote" {
		t.Fatalf("GetVersion: %+v, %v", v, err)
	}
}

func TestTransportRefusesUntrustedCertificates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cert  func(t *testing.T, e *env) tls.Certificate
		check func(err error) bool
	}{
		{"other CA", func(t *testing.T, _ *env) tls.Certificate { return newTestCA(t).issue(t, "fed.test") },
			func(err error) bool { return errors.As(err, new(x509.UnknownAuthorityError)) }},
		{"other name", func(t *testing.T, e *env) tls.Certificate { return e.ca.issue(t, "remote.test", "other.test") },
			func(err error) bool { return errors.As(err, new(x509.HostnameError)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			fc, pub := newFederationClient(t, e)
			f := startFedServer(t, e, tc.cert(t, e), oneKey{name: localName, key: pub})
			err := sendTxn(context.Background(), fc, "t1")
			if err == nil || !tc.check(err) {
				t.Fatalf("got %v, want a certificate verification error", err)
			}
			if n := f.requests.Load(); n != 0 {
				t.Errorf("server received %d requests over an unverified connection", n)
			}
		})
	}
}

func TestTransportURLs(t *testing.T) {
	e := newEnv(t, nil)
	_, pub := newFederationClient(t, e)
	f := startFedServer(t, e, e.ca.issue(t, "fed.test"), oneKey{name: localName, key: pub})
	client := &http.Client{Transport: e.r.Transport()}

	req, err := http.NewRequest(http.MethodGet, "matrix-federation://remote.test/_matrix/federation/v1/version", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("matrix-federation://: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || req.URL.Scheme != "matrix-federation" || req.URL.Host != "remote.test" {
		t.Errorf("status %d; caller's URL now %v", resp.StatusCode, req.URL)
	}

	if _, err := client.Get("https://remote.test/_matrix/federation/v1/version"); err == nil {
		t.Error("https:// URL accepted")
	}
	if _, err := client.Get("matrix://remote.test:0/x"); !errors.Is(err, ErrInvalidServerName) {
		t.Errorf("invalid name: got %v", err)
	}
	var dnsErr *net.DNSError
	if _, err := client.Get("matrix://unknown.test/x"); !errors.As(err, &dnsErr) {
		t.Errorf("unresolvable name: got %v, want a DNS error", err)
	}
	if n := f.requests.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

func TestTLSConfig(t *testing.T) {
	e := newEnv(t, nil)
	c := e.r.TLSConfig()
	if c.MinVersion != tls.VersionTLS12 || c.InsecureSkipVerify || c.RootCAs == nil {
		t.Fatalf("TLSConfig: %+v", c)
	}
	c.ServerName = "changed"
	if e.r.TLSConfig().ServerName != "" {
		t.Error("TLSConfig returned a shared config")
	}
	// It trusts CAFile: a plain HTTPS client with it reaches the test CA's server.
	s := newTLSServer(t, e.ca.issue(t, "127.0.0.1"), http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: e.r.TLSConfig()}}
	resp, err := hc.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
