package discovery

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/grandcat/zeroconf"

	"github.com/hearth-chat/hearth/internal/store"
)

func openDB(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return db
}

func newKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawStdEncoding.EncodeToString(pub)
}

func ann(name, key string, addrs ...string) announcement {
	return announcement{name: name, addrs: addrs, port: 8448, keyID: "ed25519:a", key: key}
}

func TestPeerExpiry(t *testing.T) {
	tb := newTable(openDB(t, filepath.Join(t.TempDir(), "h.db")), "me.test", PeerTTL)
	t0 := time.Unix(1_800_000_000, 0)
	ch, err := tb.observe(t.Context(), ann("peer.test", newKey(t), "192.0.2.7"), t0)
	if err != nil || len(ch) != 1 || ch[0].Gone || ch[0].Peer.ServerName != "peer.test" {
		t.Fatalf("first announcement: changes %+v, err %v", ch, err)
	}
	// A refresh keeps it; an unchanged refresh is no routing change.
	if ch, _ := tb.observe(t.Context(), ann("peer.test", ch[0].Peer.Key, "192.0.2.7"), t0.Add(PeerTTL/2)); len(ch) != 0 {
		t.Errorf("refresh made changes %+v", ch)
	}
	if ch := tb.expire(t0.Add(PeerTTL)); len(ch) != 0 || len(tb.list()) != 1 {
		t.Fatalf("refreshed peer expired early: %+v", ch)
	}
	ps := tb.list()
	if !ps[0].FirstSeen.Equal(t0) || !ps[0].LastSeen.Equal(t0.Add(PeerTTL/2)) {
		t.Errorf("first/last seen: %v %v", ps[0].FirstSeen, ps[0].LastSeen)
	}
	ch = tb.expire(t0.Add(PeerTTL/2 + PeerTTL + time.Second))
	if len(ch) != 1 || !ch[0].Gone || len(tb.list()) != 0 {
		t.Fatalf("peer not expired: changes %+v, table %+v", ch, tb.list())
	}
}

func TestTOFUPinAndKeyChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	db := openDB(t, path)
	tb := newTable(db, "me.test", PeerTTL)
	now := time.Unix(1_800_000_000, 0)
	first, other := newKey(t), newKey(t)
	if ch, err := tb.observe(t.Context(), ann("peer.test", first, "192.0.2.7"), now); err != nil || len(ch) != 1 || ch[0].Gone {
		t.Fatalf("first: %+v %v", ch, err)
	}
	// Another key for the same name: listed as changed and withdrawn from routing.
	ch, err := tb.observe(t.Context(), ann("peer.test", other, "192.0.2.8"), now.Add(time.Second))
	if err != nil || len(ch) != 1 || !ch[0].Gone || !ch[0].Peer.KeyChanged {
		t.Fatalf("key change: %+v %v", ch, err)
	}
	if ps := tb.list(); len(ps) != 1 || !ps[0].KeyChanged || ps[0].Key != other || ps[0].Routable() {
		t.Fatalf("table after key change: %+v", ps)
	}
	// The pin outlives the process.
	db.Close()
	db = openDB(t, path)
	defer db.Close()
	tb = newTable(db, "me.test", PeerTTL)
	ch, err = tb.observe(t.Context(), ann("peer.test", other, "192.0.2.8"), now.Add(2*time.Second))
	if err != nil || len(ch) != 0 || !tb.list()[0].KeyChanged {
		t.Fatalf("changed key after reopening: %+v %v, table %+v", ch, err, tb.list())
	}
	// The pinned key back: routable again.
	ch, _ = tb.observe(t.Context(), ann("peer.test", first, "192.0.2.7"), now.Add(3*time.Second))
	if len(ch) != 1 || ch[0].Gone || ch[0].Peer.KeyChanged {
		t.Fatalf("pinned key again: %+v", ch)
	}
	// A new name is pinned on its own.
	if ch, _ := tb.observe(t.Context(), ann("other.test", other, "192.0.2.9"), now); len(ch) != 1 || ch[0].Peer.KeyChanged {
		t.Fatalf("second server: %+v", ch)
	}
}

func TestOwnAnnouncementIgnored(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	defer db.Close()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	s := New(Config{ServerName: "me.test", KeyID: "ed25519:a", Key: pub, DB: db})
	var seen []string
	s.OnChange(func(p Peer, gone bool) { seen = append(seen, p.ServerName) })
	own := &zeroconf.ServiceEntry{Port: 8448, AddrIPv4: []net.IP{net.ParseIP("192.0.2.1")},
		Text: txtRecords("me.test", "ed25519:a", pub)}
	s.handle(t.Context(), own)
	if len(s.Peers()) != 0 || len(seen) != 0 {
		t.Fatalf("own announcement listed: %+v %v", s.Peers(), seen)
	}
	// The same entry under another name is a peer: the path above works.
	other := *own
	other.Text = txtRecords("peer.test", "ed25519:a", pub)
	other.AddrIPv6 = []net.IP{net.ParseIP("fd00::7")}
	s.handle(t.Context(), &other)
	ps := s.Peers()
	if len(ps) != 1 || ps[0].ServerName != "peer.test" || !slices.Equal(ps[0].Addrs, []string{"192.0.2.1", "fd00::7"}) ||
		!slices.Equal(seen, []string{"peer.test"}) {
		t.Fatalf("peer: %+v, observed %v", ps, seen)
	}
	// Its pin is in the store.
	db.View(func(tx *store.Tx) error {
		if tx.Get(store.LANPins, []byte("peer.test")) == nil || tx.Get(store.LANPins, []byte("me.test")) != nil {
			t.Error("lanpins should hold peer.test only")
		}
		return nil
	})
}

func TestParseTXT(t *testing.T) {
	key := newKey(t)
	good := []string{"v=1", "server_name=hs.test", "key=ed25519:abc:" + key}
	a, err := parseTXT(good)
	if err != nil || a.name != "hs.test" || a.keyID != "ed25519:abc" || a.key != key {
		t.Fatalf("good TXT: %+v %v", a, err)
	}
	for name, txt := range map[string][]string{
		"no version":      good[1:],
		"version 2":       {"v=2", good[1], good[2]},
		"no name":         {"v=1", good[2]},
		"bad name":        {"v=1", "server_name=a b", good[2]},
		"no key":          good[:2],
		"not ed25519":     {"v=1", good[1], "key=rsa:abc:" + key},
		"no key id":       {"v=1", good[1], "key=ed25519:" + key},
		"short key":       {"v=1", good[1], "key=ed25519:abc:AAAA"},
		"not base64":      {"v=1", good[1], "key=ed25519:abc:!!!"},
		"padded base64 ≠": {"v=1", good[1], "key=ed25519:abc:" + key + "="},
	} {
		if _, err := parseTXT(txt); err == nil {
			t.Errorf("%s: accepted %v", name, txt)
		}
	}
}

func TestRoute(t *testing.T) {
	_, lan, _ := net.ParseCIDR("192.168.1.0/24")
	p := Peer{Port: 8448, Addrs: []string{"172.17.0.1", "192.168.1.20", "fe80::1"}}
	if got := p.Route([]*net.IPNet{lan}); got != "192.168.1.20:8448" {
		t.Errorf("route in the local network: %q", got)
	}
	if got := p.Route(nil); got != "172.17.0.1:8448" {
		t.Errorf("route without local networks: %q", got)
	}
	if got := (Peer{Port: 8448, Addrs: []string{"fe80::1", "fd00::2"}}).Route(nil); got != "[fd00::2]:8448" {
		t.Errorf("IPv6 route: %q", got)
	}
	if (Peer{Port: 8448, Addrs: []string{"fe80::1"}}).Routable() {
		t.Error("a link-local address alone is routable")
	}
}

// TestRouteNeverLoopback: a LAN peer's route is exempt from federation's
// address policy, and its addresses are whatever the device announced, so
// one announcing this computer's loopback (in any spelling) or a multicast
// address gets no route: it would make federation dial local services.
func TestRouteNeverLoopback(t *testing.T) {
	_, lo, _ := net.ParseCIDR("127.0.0.0/8")
	p := Peer{Port: 631, Addrs: []string{"127.0.0.1", "::1", "::ffff:127.0.0.2", "224.0.0.251"}}
	if got := p.Route([]*net.IPNet{lo}); got != "" {
		t.Errorf("route %q to a peer announcing loopback and multicast only", got)
	}
	if p.Routable() {
		t.Error("a peer announcing loopback is routable")
	}
	p.Addrs = append(p.Addrs, "192.168.1.20")
	if got := p.Route(nil); got != "192.168.1.20:631" {
		t.Errorf("route %q, want its LAN address", got)
	}
}
