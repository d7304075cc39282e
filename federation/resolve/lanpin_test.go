package resolve

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

// pinTable is a CertPins of fixed pins.
type pinTable struct {
	mu sync.Mutex
	m  map[string][32]byte
}

func (p *pinTable) PinnedSPKI(name string) ([32]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.m[name]
	return h, ok
}

func (p *pinTable) set(name string, h [32]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[name] = h
}

func spkiOf(t *testing.T, c tls.Certificate) [32]byte {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
}

// TestLANCertPins: a static (LAN) route's certificate is checked against
// the key its announcement bound, not the CA roots: a certificate no CA
// signed is accepted when its key is the pinned one and refused without
// a pin; a server presenting a certificate whose key is not the bound one
// is refused before any request reaches it, even with a CA-signed
// certificate for the right name; a public name without a pin keeps the
// CA rules.
func TestLANCertPins(t *testing.T) {
	e := newEnv(t, nil)
	own := newTestCA(t).issue(t, "peer.local") // self-signed in effect: its CA is trusted by no one
	var hits atomic.Int32
	srv := newTLSServer(t, own, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		io.WriteString(w, `{}`)
	}))
	e.net.route("peer.lan:8448", srv.Listener.Addr().String())
	if err := e.r.SetStatic("peer.local", "peer.lan:8448"); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: e.r.Transport()}
	get := func(name string) error {
		resp, err := client.Get("matrix://" + name + "/_matrix/federation/v1/version")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err
	}

	if err := get("peer.local"); err == nil || !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Fatalf("no pins: got %v, want the CA rules' refusal", err)
	}
	pins := &pinTable{m: map[string][32]byte{}}
	e.r.SetCertPins(pins)
	if err := get("peer.local"); err == nil {
		t.Fatal("a LAN peer without a pin was accepted")
	}
	pins.set("peer.local", spkiOf(t, own))
	if err := get("peer.local"); err != nil || hits.Load() != 1 {
		t.Fatalf("pinned certificate key: %v (%d requests)", err, hits.Load())
	}

	// Another server at that address, with a certificate for the right
	// name signed by a trusted CA but not the key the peer bound.
	other := e.ca.issue(t, "peer.local")
	impostor := newTLSServer(t, other, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	e.net.route("impostor.lan:8448", impostor.Listener.Addr().String())
	if err := e.r.SetStatic("peer.local", "impostor.lan:8448"); err != nil {
		t.Fatal(err)
	}
	if err := get("peer.local"); !errors.Is(err, ErrCertNotPinned) || hits.Load() != 1 {
		t.Fatalf("a certificate with another key: got %v (%d requests), want ErrCertNotPinned", err, hits.Load())
	}

	// A public name routed statically without a pin: the CA rules.
	e.net.route("pub.lan:8448", impostor.Listener.Addr().String())
	if err := e.r.SetStatic("peer.local", ""); err != nil {
		t.Fatal(err)
	}
	public := e.ca.issue(t, "public.test")
	pubSrv := newTLSServer(t, public, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{}`) }))
	e.net.route("pub.lan:8448", pubSrv.Listener.Addr().String())
	e.r.SetStatic("public.test", "pub.lan:8448")
	if err := get("public.test"); err != nil {
		t.Fatalf("a public name with a CA certificate: %v", err)
	}
	e.net.route("pub2.lan:8448", srv.Listener.Addr().String())
	e.r.SetStatic("public.test", "pub2.lan:8448")
	if err := get("public.test"); !errors.As(err, new(x509.HostnameError)) && !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Fatalf("a public name with an untrusted certificate: got %v", err)
	}
}

// TestReconnectEndsBusyConnections: Reconnect ends a static route's
// connections, a request in flight on one included (it fails at once
// rather than at its timeout), and the next request dials afresh.
func TestReconnectEndsBusyConnections(t *testing.T) {
	e := newEnv(t, nil)
	cert := e.ca.issue(t, "peer.local")
	arrived, release := make(chan struct{}, 4), make(chan struct{})
	var conns atomic.Int32
	srv := newTLSServer(t, cert, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, `{}`)
	}), func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	})
	defer close(release)
	e.net.route("peer.lan:8448", srv.Listener.Addr().String())
	e.r.SetStatic("peer.local", "peer.lan:8448")
	client := &http.Client{Transport: e.r.Transport()}
	errc := make(chan error, 1)
	go func() {
		resp, err := client.Get("matrix://peer.local/hang")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	e.r.Reconnect("peer.local")
	if err := <-errc; err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the request in flight: %v, want it ended by Reconnect", err)
	}
	resp, err := client.Get("matrix://peer.local/ok")
	if err != nil {
		t.Fatalf("after Reconnect: %v", err)
	}
	resp.Body.Close()
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want a new one after Reconnect", n)
	}
}
