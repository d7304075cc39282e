package discovery

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestAnnounceAndBrowse runs two services in this process over real
// multicast on this machine's interfaces: each lists the other, verified,
// with the announced key and port, and neither lists itself.
func TestAnnounceAndBrowse(t *testing.T) {
	if !hasMulticastInterface() {
		t.Skip("no up multicast interface here to carry mDNS")
	}
	start := func(name string, port int) (*Service, ed25519.PublicKey) {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
		s := New(Config{ServerName: name, KeyID: "ed25519:k", Key: pub, DB: db,
			Advertise: net.JoinHostPort("0.0.0.0", itoa(port))})
		if err := s.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() { s.Stop(); db.Close() })
		return s, pub
	}
	a, aKey := start("a.mdns.test", 18448)
	b, _ := start("b.mdns.test", 28448)
	routed := make(chan Peer, 10)
	b.OnChange(func(p Peer, gone bool) {
		if !gone {
			routed <- p
		}
	})
	for _, tc := range []struct {
		s    *Service
		want string
		port int
	}{{a, "b.mdns.test", 28448}, {b, "a.mdns.test", 18448}} {
		deadline := time.Now().Add(3 * BrowseRound)
		for {
			ps := tc.s.Peers()
			var found *Peer
			for i := range ps {
				if ps[i].ServerName == tc.s.cfg.ServerName {
					t.Fatalf("%s lists itself", tc.s.cfg.ServerName)
				}
				if ps[i].ServerName == tc.want {
					found = &ps[i]
				}
			}
			if found != nil {
				if found.Port != tc.port || found.KeyChanged || len(found.Addrs) == 0 || !found.Routable() {
					t.Fatalf("%s sees %+v", tc.s.cfg.ServerName, *found)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not find %s: %+v", tc.s.cfg.ServerName, tc.want, ps)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	p := <-routed
	if p.ServerName != "a.mdns.test" || p.Key == "" || p.Key != b64(aKey) {
		t.Errorf("observer got %+v", p)
	}
}

func hasMulticastInterface() bool {
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagMulticast != 0 && i.Flags&net.FlagLoopback == 0 {
			return true
		}
	}
	return false
}

func itoa(n int) string { return strconv.Itoa(n) }

func b64(k ed25519.PublicKey) string { return base64.RawStdEncoding.EncodeToString(k) }

// TestReannounceOnNetworkChange: the announcement is registered again when
// the machine's networks change (zeroconf fixes addresses at registration),
// and not otherwise; a loopback listener is never announced.
func TestReannounceOnNetworkChange(t *testing.T) {
	if !hasMulticastInterface() {
		t.Skip("no up multicast interface here to carry mDNS")
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	defer db.Close()
	_, n1, _ := net.ParseCIDR("192.0.2.0/24")
	_, n2, _ := net.ParseCIDR("198.51.100.0/24")
	nets := []*net.IPNet{n1}
	s := New(Config{ServerName: "re.mdns.test", KeyID: "ed25519:k", Key: pub, DB: db, Advertise: "0.0.0.0:38448"})
	s.local = func() []*net.IPNet { return nets }
	if err := s.parseAdvertise(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	s.keepAnnounced()
	first := s.server
	if first == nil {
		t.Fatal("not announced")
	}
	s.keepAnnounced()
	if s.server != first {
		t.Error("registered again without a network change")
	}
	nets = append(nets, n2)
	s.keepAnnounced()
	if s.server == first || s.server == nil {
		t.Error("not registered again after the networks changed")
	}

	lo := New(Config{ServerName: "lo.mdns.test", KeyID: "ed25519:k", Key: pub, DB: db, Advertise: "127.0.0.1:38449"})
	if err := lo.parseAdvertise(); err != nil {
		t.Fatal(err)
	}
	if lo.keepAnnounced(); lo.server != nil {
		t.Error("a loopback listener was announced")
	}
	if err := New(Config{Advertise: "no-port"}).parseAdvertise(); err == nil {
		t.Error("a malformed address was accepted")
	}
}
