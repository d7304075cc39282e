package resolve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestPolicyRefusesLoopbackUnlessAllowed: a server name that is (or
// resolves to) a loopback address is never dialled by default, so a
// forged origin cannot make this server connect to local services; a
// network in AllowNetworks, and a static route, are dialled.
func TestPolicyRefusesLoopbackUnlessAllowed(t *testing.T) {
	ca := newTestCA(t)
	var conns atomic.Int32
	srv := newTLSServer(t, ca.issue(t, "127.0.0.1", "static.test"), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("{}"))
	}), func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	})
	addr := srv.Listener.Addr().String() // 127.0.0.1:port, an IP literal server name
	get := func(r *Resolver, name string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "matrix://"+name+"/_matrix/key/v2/server", nil)
		resp, err := r.Transport().RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}

	def, err := New(Config{CAFile: ca.pemFile})
	if err != nil {
		t.Fatal(err)
	}
	defer def.Forget()
	if err := get(def, addr); !errors.Is(err, ErrAddressRefused) {
		t.Fatalf("default policy dialled %s: err %v, want ErrAddressRefused", addr, err)
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the refused dial reached the listener (%d connections)", n)
	}
	for _, refused := range []string{"10.1.2.3", "192.168.1.1", "172.16.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
		"::1", "fe80::1", "fd00::1", "224.0.0.1", "::ffff:127.0.0.1"} {
		if def.dialPolicy().allows(netip.MustParseAddr(refused)) {
			t.Errorf("the default policy allows %s", refused)
		}
	}
	if !def.dialPolicy().allows(netip.MustParseAddr("8.8.8.8")) || !def.dialPolicy().allows(netip.MustParseAddr("2606:4700::1111")) {
		t.Error("the default policy refuses public addresses")
	}

	nets, err := ParseNetworks([]string{"127.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := New(Config{CAFile: ca.pemFile, AllowNetworks: nets})
	if err != nil {
		t.Fatal(err)
	}
	defer allowed.Forget()
	if err := get(allowed, addr); err != nil {
		t.Fatalf("federation_allow_networks 127.0.0.0/8: %v", err)
	}

	static, err := New(Config{CAFile: ca.pemFile, Static: map[string]string{"static.test": addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer static.Forget()
	if err := get(static, "static.test"); err != nil {
		t.Fatalf("static route to loopback: %v", err)
	}
	if err := get(static, addr); !errors.Is(err, ErrAddressRefused) {
		t.Fatalf("the static route's address reached by another name: err %v, want ErrAddressRefused", err)
	}
}

func TestParseNetworks(t *testing.T) {
	got, err := ParseNetworks([]string{"10.0.0.0/8", "192.168.1.7", "fd00::/8", ""})
	if err != nil || len(got) != 3 || got[1].Bits() != 32 {
		t.Fatalf("ParseNetworks = %v, %v", got, err)
	}
	if _, err := ParseNetworks([]string{"10.0.0.0/8\nregistration"}); err == nil {
		t.Error("a malformed network was accepted")
	}
}

// TestPolicyChecksResolvedAddress: a host name that resolves to loopback
// is refused on the address dialled, not on the name.
func TestPolicyChecksResolvedAddress(t *testing.T) {
	if _, err := net.LookupHost("localhost"); err != nil {
		t.Skip("no localhost in this resolver")
	}
	ca := newTestCA(t)
	var conns atomic.Int32
	srv := newTLSServer(t, ca.issue(t, "localhost"), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	})
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	r, err := New(Config{CAFile: ca.pemFile})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Forget()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "matrix://localhost:"+port+"/_matrix/key/v2/server", nil)
	resp, err := r.Transport().RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
	if !errors.Is(err, ErrAddressRefused) || conns.Load() != 0 {
		t.Fatalf("localhost:%s: err %v, %d connections; want ErrAddressRefused and none", port, err, conns.Load())
	}
}
