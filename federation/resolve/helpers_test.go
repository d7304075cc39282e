package resolve

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pemFile string // the CA certificate, for Config.CAFile
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hearth test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pemFile: file}
}

// issue makes a server certificate for names (DNS names or IP addresses).
func (ca *testCA) issue(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// newTLSServer starts an HTTPS server presenting cert. connState, if
// given, is set before the server starts: setting Config.ConnState on a
// started server races with its accept loop.
func newTLSServer(t *testing.T, cert tls.Certificate, h http.Handler, connState ...func(net.Conn, http.ConnState)) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if len(connState) > 0 {
		s.Config.ConnState = connState[0]
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// fakeNet is the test's DNS for dials: it maps "name:port" to a loopback
// listener and refuses everything else, recording what was dialled.
type fakeNet struct {
	mu     sync.Mutex
	routes map[string]string
	dials  []string
}

func (n *fakeNet) route(addr, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.routes == nil {
		n.routes = make(map[string]string)
	}
	n.routes[addr] = to
}

func (n *fakeNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	n.dials = append(n.dials, addr)
	to, ok := n.routes[addr]
	n.mu.Unlock()
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: addr, IsNotFound: true}}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

// fakeSRV answers SRV queries from a table and counts them.
type fakeSRV struct {
	mu      sync.Mutex
	records map[string][]*net.SRV // "_service._proto.name" → records
	calls   map[string]int
}

func (f *fakeSRV) set(key string, recs ...*net.SRV) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.records == nil {
		f.records = make(map[string][]*net.SRV)
	}
	f.records[key] = recs
}

func (f *fakeSRV) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

func (f *fakeSRV) lookup(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	key := "_" + service + "._" + proto + "." + name
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = make(map[string]int)
	}
	f.calls[key]++
	if recs, ok := f.records[key]; ok {
		return key, recs, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: key, IsNotFound: true}
}

// clock is a settable time source for cache expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// wellKnownHost serves /.well-known/matrix/server for many names from one
// HTTPS listener, choosing the answer by Host and counting requests.
type wellKnownHost struct {
	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	hits     map[string]int
}

func (w *wellKnownHost) handle(name string, h http.HandlerFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.handlers[name] = h
}

func (w *wellKnownHost) count(name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hits[name]
}

func (w *wellKnownHost) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	w.mu.Lock()
	w.hits[req.Host]++
	h := w.handlers[req.Host]
	w.mu.Unlock()
	if h == nil {
		http.NotFound(rw, req)
		return
	}
	h(rw, req)
}

// env is a Resolver wired to fakes, a test CA and a well-known server whose
// certificate covers wkNames; each of those names' port 443 leads to it.
type env struct {
	r     *Resolver
	ca    *testCA
	net   *fakeNet
	srv   *fakeSRV
	wk    *wellKnownHost
	clock *clock
}

var wkNames = []string{"origin.test", "deleg.test", "remote.test"}

func newEnv(t *testing.T, static map[string]string) *env {
	t.Helper()
	e := &env{
		ca:    newTestCA(t),
		net:   &fakeNet{},
		srv:   &fakeSRV{},
		wk:    &wellKnownHost{handlers: map[string]http.HandlerFunc{}, hits: map[string]int{}},
		clock: &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	s := newTLSServer(t, e.ca.issue(t, wkNames...), e.wk)
	for _, n := range wkNames {
		e.net.route(n+":443", s.Listener.Addr().String())
	}
	r, err := New(Config{
		Static:      static,
		CAFile:      e.ca.pemFile,
		Timeout:     5 * time.Second,
		LookupSRV:   e.srv.lookup,
		DialContext: e.net.dial,
		Now:         e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Forget)
	e.r = r
	return e
}

// serveJSON answers with body and the given extra headers.
func serveJSON(body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}
}

func (e *env) resolve(t *testing.T, name string) Target {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := e.r.Resolve(ctx, spec.ServerName(name))
	if err != nil {
		t.Fatalf("Resolve(%q): %v", name, err)
	}
	return got
}
