package discovery

import (
	"crypto/ed25519"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// startService starts a service for name on the private LAN, announcing
// advertise (ip:port).
func startService(t *testing.T, name, advertise string) (*Service, ed25519.PublicKey) {
	t.Helper()
	pub, _, _ := genKey()
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	s := New(Config{ServerName: name, KeyID: "ed25519:k", Key: pub, DB: db, Advertise: advertise,
		Interfaces: []string{testIface}, TXT: testBinding(name, pub)})
	if err := s.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { s.Stop(); db.Close() })
	return s, pub
}

// waitPeer polls s's table until name is listed (or gone) and returns
// how long it took; it fails after limit.
func waitPeer(t *testing.T, s *Service, name string, present bool, limit time.Duration) (Peer, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		ps := s.Peers()
		i := slices.IndexFunc(ps, func(p Peer) bool { return p.ServerName == name })
		if (i >= 0) == present {
			if i >= 0 {
				return ps[i], time.Since(start)
			}
			return Peer{}, time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: %s still %v after %v: %+v", s.cfg.ServerName, name, map[bool]string{true: "missing", false: "listed"}[present], limit, ps)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFindEachOtherAndGoodbye: two daemons on one LAN list each other,
// verified and routable, within the 3 s of starting (from the
// start announcements, not a browse round), neither lists itself; when
// one stops cleanly the other drops it within 2 s (its goodbye, RFC 6762
// §10.1), and the observer hears both. Before, zeroconf browsed in 10 s
// rounds and dropped goodbyes, so a stopped peer stayed listed 25 s.
func TestFindEachOtherAndGoodbye(t *testing.T) {
	if !inPrivateLAN(t) {
		return
	}
	var mu sync.Mutex
	var events []string
	a, _ := startService(t, "anna.local", "10.77.0.1:18448")
	a.OnChange(func(p Peer, gone bool) {
		mu.Lock()
		events = append(events, map[bool]string{false: "up ", true: "gone "}[gone]+p.ServerName)
		mu.Unlock()
	})
	start := time.Now()
	b, bKey := startService(t, "bob", "0.0.0.0:28448")
	p, _ := waitPeer(t, a, "bob", true, 3*time.Second)
	t.Logf("a listed b %v after b started", time.Since(start).Round(time.Millisecond))
	if p.Port != 28448 || !p.Routable() || p.KeyChanged || p.Key != b64(bKey) || !slices.Contains(p.Addrs, "10.77.0.1") {
		t.Fatalf("a sees b as %+v", p)
	}
	if r := a.Route(p); r != "10.77.0.1:28448" && r != "10.77.0.2:28448" {
		t.Errorf("route to b: %q", r)
	}
	q, _ := waitPeer(t, b, "anna.local", true, 3*time.Second)
	if !slices.Equal(q.Addrs, []string{"10.77.0.1"}) || q.Port != 18448 || !q.Routable() {
		t.Errorf("b sees a as %+v (a announces only its listener's address)", q)
	}
	for _, s := range []*Service{a, b} {
		for _, p := range s.Peers() {
			if p.ServerName == s.cfg.ServerName {
				t.Errorf("%s lists itself", p.ServerName)
			}
		}
	}
	stopped := time.Now()
	b.Stop()
	_, took := waitPeer(t, a, "bob", false, 2*time.Second)
	t.Logf("a dropped b %v after b stopped", took.Round(time.Millisecond))
	if since := time.Since(stopped); since < 900*time.Millisecond {
		t.Errorf("dropped after %v: a goodbye keeps the record one second (§10.1)", since)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(events, []string{"up bob", "gone bob"}) {
		t.Errorf("observer heard %v", events)
	}
}

// TestReannounceOnAddressChange: when this machine gains an address, it
// announces again within a few seconds (netlink, or a 3 s poll), so a
// peer learns the new address without waiting for a query.
func TestReannounceOnAddressChange(t *testing.T) {
	if !inPrivateLAN(t) {
		return
	}
	a, _ := startService(t, "anna.local", "0.0.0.0:18448")
	b, _ := startService(t, "bob.local", "0.0.0.0:28448")
	waitPeer(t, b, "anna.local", true, 3*time.Second)
	time.Sleep(2500 * time.Millisecond) // past the start announcements
	if out, err := exec.Command("ip", "addr", "add", "10.77.0.3/24", "dev", testIface).CombinedOutput(); err != nil {
		t.Fatalf("add an address: %v: %s", err, out)
	}
	start := time.Now()
	for {
		p, _ := waitPeer(t, b, "anna.local", true, time.Second)
		if slices.Contains(p.Addrs, "10.77.0.3") {
			t.Logf("b saw a's new address after %v", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("b still sees a at %v", p.Addrs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = a
}

// TestBrowseOnly: lan_discovery = browse finds others and never
// announces itself, not even when asked.
func TestBrowseOnly(t *testing.T) {
	if !inPrivateLAN(t) {
		return
	}
	pub, _, _ := genKey()
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	defer db.Close()
	quiet := New(Config{ServerName: "quiet.local", KeyID: "ed25519:k", Key: pub, DB: db, Advertise: "0.0.0.0:38448",
		BrowseOnly: true, Interfaces: []string{testIface}})
	if err := quiet.Start(); err != nil {
		t.Fatal(err)
	}
	defer quiet.Stop()
	b, _ := startService(t, "bob.local", "0.0.0.0:28448")
	waitPeer(t, quiet, "bob.local", true, 3*time.Second)
	time.Sleep(1500 * time.Millisecond) // b's first queries have been answered, if anyone answered
	for _, p := range b.Peers() {
		t.Errorf("a browse-only daemon was announced: %+v", p)
	}
}

// TestForgetAcceptsNewKey: a reinstalled peer (same name, new key) is
// listed as a key change and not routed; once the owner forgets the pin,
// the query Forget sends brings its answer and its new key is pinned,
// without waiting for it to announce again.
func TestForgetAcceptsNewKey(t *testing.T) {
	if !inPrivateLAN(t) {
		return
	}
	a, _ := startService(t, "anna.local", "0.0.0.0:18448")
	old, _ := startService(t, "bob.local", "10.77.0.2:28448")
	waitPeer(t, a, "bob.local", true, 3*time.Second)
	old.Stop()
	waitPeer(t, a, "bob.local", false, 2*time.Second)
	_, newKey := startService(t, "bob.local", "10.77.0.2:28448")
	p, _ := waitPeer(t, a, "bob.local", true, 3*time.Second)
	if !p.KeyChanged || p.Routable() || p.Key != b64(newKey) {
		t.Fatalf("a reinstalled peer: %+v", p)
	}
	time.Sleep(1500 * time.Millisecond) // past its start announcements
	if ok, err := a.Forget(t.Context(), "bob.local"); !ok || err != nil {
		t.Fatalf("forget: %v %v", ok, err)
	}
	start := time.Now()
	for {
		p, _ = waitPeer(t, a, "bob.local", true, 3*time.Second)
		if p.Verified && !p.KeyChanged && p.Key == b64(newKey) && p.Routable() {
			t.Logf("the new key was pinned %v after forget", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("after forget: %+v", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOwnPacketsNotParsed: a daemon alone on the LAN hears its own
// announcements and queries come back (multicast loopback, which other
// daemons on the same machine need) and drops them unparsed. Before, each
// was parsed and handled: an idle daemon's first minute paid for its
// packets twice (issue 15, "The first minute after ready"). A peer's
// packets are still handled.
func TestOwnPacketsNotParsed(t *testing.T) {
	if !inPrivateLAN(t) {
		return
	}
	a, _ := startService(t, "anna.local", "0.0.0.0:18448")
	// Two announcements (at once and a second later) and two queries.
	for start := time.Now(); a.PacketsSent() < 4; {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("sent %d packets in 5 s", a.PacketsSent())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := a.heard.Load(); n != 0 {
		t.Fatalf("alone on the LAN, a handled %d packets after sending %d: its own", n, a.PacketsSent())
	}
	startService(t, "bob.local", "0.0.0.0:28448")
	waitPeer(t, a, "bob.local", true, 3*time.Second)
	if a.heard.Load() == 0 {
		t.Fatal("a listed bob without handling a packet")
	}
}
