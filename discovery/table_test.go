package discovery

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/store"
)

func openDB(t testing.TB, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return db
}

func newKey(t testing.TB) string {
	t.Helper()
	pub, _, err := genKey()
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawStdEncoding.EncodeToString(pub)
}

func b64(k ed25519.PublicKey) string { return base64.RawStdEncoding.EncodeToString(k) }

// seen is an announcement of name with key at addrs, with our TTL.
func seen(name, key string, addrs ...string) sighting {
	a := announcement{name: name, port: 8448, keyID: "ed25519:a", key: key, extra: testBindingExtra(name, key)}
	for _, s := range addrs {
		a.addrs = append(a.addrs, netip.MustParseAddr(s))
	}
	return sighting{instance: instanceLabel(name) + "." + ServiceType + "." + Domain, ann: a, ttl: RecordTTL}
}

func countPins(t testing.TB, db *store.DB) int {
	t.Helper()
	n := 0
	db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.LANPins)
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n
}

// TestRefreshAndExpiry: a peer's records are refreshed by queries at 80,
// 85, 90 and 95 % of their TTL and the peer is dropped when the TTL runs
// out (RFC 6762 §5.2); an answer in between starts over.
func TestRefreshAndExpiry(t *testing.T) {
	tb := newTable(openDB(t, filepath.Join(t.TempDir(), "h.db")), "me.local", nil)
	t0 := time.Unix(1_800_000_000, 0)
	ch, err := tb.observe(t.Context(), seen("peer.local", newKey(t), "192.0.2.7"), t0)
	if err != nil || len(ch) != 1 || ch[0].Gone || ch[0].Peer.ServerName != "peer.local" {
		t.Fatalf("first announcement: changes %+v, err %v", ch, err)
	}
	key := ch[0].Peer.Key
	var queries []time.Duration
	now := t0
	for {
		next := tb.next()
		if next.IsZero() {
			break
		}
		now = next
		refresh, changes := tb.due(now)
		if len(refresh) > 0 {
			queries = append(queries, now.Sub(t0))
		}
		if len(changes) > 0 {
			if !changes[0].Gone || now.Sub(t0) != RecordTTL {
				t.Fatalf("at %v: %+v", now.Sub(t0), changes)
			}
			break
		}
	}
	if len(queries) != 4 {
		t.Fatalf("refresh queries at %v, want 4", queries)
	}
	for i, q := range queries {
		want := RecordTTL * time.Duration(80+5*i) / 100
		if q < want || q > want+RecordTTL/50 {
			t.Errorf("refresh %d at %v, want %v + up to 2 %%", i, q, want)
		}
	}
	if len(tb.list()) != 0 {
		t.Fatal("expired peer still listed")
	}
	// An answer to the first refresh keeps it for another TTL.
	tb.observe(t.Context(), seen("peer.local", key, "192.0.2.7"), t0)
	tb.due(t0.Add(RecordTTL * 81 / 100))
	if ch, _ := tb.observe(t.Context(), seen("peer.local", key, "192.0.2.7"), t0.Add(RecordTTL*81/100)); len(ch) != 0 {
		t.Errorf("a refresh made changes %+v", ch)
	}
	if _, ch := tb.due(t0.Add(RecordTTL + time.Minute)); len(ch) != 0 || len(tb.list()) != 1 {
		t.Errorf("refreshed peer expired: %+v", ch)
	}
}

// TestGoodbye: a goodbye (TTL 0) drops the peer one second later (RFC
// 6762 §10.1), by server name or, for a bare PTR goodbye, by instance.
func TestGoodbye(t *testing.T) {
	tb := newTable(openDB(t, filepath.Join(t.TempDir(), "h.db")), "me.local", nil)
	t0 := time.Unix(1_800_000_000, 0)
	for _, byInstance := range []bool{false, true} {
		a := seen("peer.local", newKey(t), "192.0.2.7")
		tb.forget(t.Context(), "peer.local")
		tb.observe(t.Context(), a, t0)
		bye := a
		bye.ttl = 0
		if byInstance {
			bye.ann = announcement{}
		}
		tb.observe(t.Context(), bye, t0.Add(time.Minute))
		if _, ch := tb.due(t0.Add(time.Minute + 999*time.Millisecond)); len(ch) != 0 || len(tb.list()) != 1 {
			t.Fatalf("dropped before a second: %+v", ch)
		}
		if next := tb.next(); !next.Equal(t0.Add(time.Minute + time.Second)) {
			t.Errorf("next wake-up %v, want the goodbye's end", next.Sub(t0))
		}
		if _, ch := tb.due(t0.Add(time.Minute + time.Second)); len(ch) != 1 || !ch[0].Gone || len(tb.list()) != 0 {
			t.Fatalf("by instance %v: not dropped after a second: %+v", byInstance, ch)
		}
	}
}

func TestTOFUPinAndKeyChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	db := openDB(t, path)
	tb := newTable(db, "me.local", nil)
	now := time.Unix(1_800_000_000, 0)
	first, other := newKey(t), newKey(t)
	if ch, err := tb.observe(t.Context(), seen("peer.local", first, "192.0.2.7"), now); err != nil || len(ch) != 1 || ch[0].Gone {
		t.Fatalf("first: %+v %v", ch, err)
	}
	// Another key for the same name: listed as a key change beside the
	// pinned peer, never routed, and the pinned peer keeps its route (an
	// impostor cannot take a neighbour off the LAN by announcing its name).
	ch, err := tb.observe(t.Context(), seen("peer.local", other, "192.0.2.8"), now.Add(time.Second))
	if err != nil || len(ch) != 0 {
		t.Fatalf("key change: %+v %v", ch, err)
	}
	if ps := tb.list(); len(ps) != 2 || byKey(ps, other).Routable() || !byKey(ps, other).KeyChanged ||
		!byKey(ps, first).Routable() || byKey(ps, first).KeyChanged {
		t.Fatalf("table after key change: %+v", ps)
	}
	// The pin outlives the process.
	db.Close()
	db = openDB(t, path)
	defer db.Close()
	tb = newTable(db, "me.local", nil)
	ch, err = tb.observe(t.Context(), seen("peer.local", other, "192.0.2.8"), now.Add(2*time.Second))
	if err != nil || len(ch) != 0 || !tb.list()[0].KeyChanged {
		t.Fatalf("changed key after reopening: %+v %v, table %+v", ch, err, tb.list())
	}
	// The pinned key back: routable again.
	ch, _ = tb.observe(t.Context(), seen("peer.local", first, "192.0.2.7"), now.Add(3*time.Second))
	if len(ch) != 1 || ch[0].Gone || ch[0].Peer.KeyChanged {
		t.Fatalf("pinned key again: %+v", ch)
	}
	// A new name is pinned on its own.
	if ch, _ := tb.observe(t.Context(), seen("other", other, "192.0.2.9"), now); len(ch) != 1 || ch[0].Peer.KeyChanged {
		t.Fatalf("second server: %+v", ch)
	}
}

// byKey is the entry of ps announcing key.
func byKey(ps []Peer, key string) Peer {
	for _, p := range ps {
		if p.Key == key {
			return p
		}
	}
	return Peer{}
}

// TestForget: forgetting a name deletes its pin and its entry (the
// observer hears it gone), so the next announcement, even with another
// key, is trusted on first use: how the owner accepts a new key.
func TestForget(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	defer db.Close()
	pub, _, _ := genKey()
	s := New(Config{ServerName: "me.local", KeyID: "ed25519:a", Key: pub, DB: db})
	var gone []string
	s.OnChange(func(p Peer, g bool) {
		if g {
			gone = append(gone, p.ServerName)
		}
	})
	now := time.Unix(1_800_000_000, 0)
	s.table.observe(t.Context(), seen("peer.local", newKey(t), "192.0.2.7"), now)
	if countPins(t, db) != 1 {
		t.Fatal("not pinned")
	}
	if ok, err := s.Forget(t.Context(), "peer.local"); !ok || err != nil {
		t.Fatalf("forget: %v %v", ok, err)
	}
	if countPins(t, db) != 0 || len(s.Peers()) != 0 || len(gone) != 1 {
		t.Fatalf("after forget: %d pins, peers %+v, gone %v", countPins(t, db), s.Peers(), gone)
	}
	if ok, _ := s.Forget(t.Context(), "peer.local"); ok {
		t.Error("forgot a name twice")
	}
	ch, _ := s.table.observe(t.Context(), seen("peer.local", newKey(t), "192.0.2.7"), now.Add(time.Minute))
	if len(ch) != 1 || ch[0].Gone || !ch[0].Peer.Verified {
		t.Errorf("a new key after forget: %+v", ch)
	}
}

// TestPublicNamesNeverRouted: an announcement of a name that public DNS
// could answer for (matrix.org) is listed but never pinned nor routed,
// whatever address it gives; LAN-only names (.local, no dot) are.
func TestPublicNamesNeverRouted(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	tb := newTable(db, "me.local", nil)
	now := time.Unix(1_800_000_000, 0)
	for _, name := range []string{"matrix.org", "example.com:8448", "192.0.2.7", "[fd00::1]:8448", "a.b.c"} {
		ch, err := tb.observe(t.Context(), seen(name, newKey(t), "192.0.2.7"), now)
		if err != nil || len(ch) != 0 {
			t.Errorf("%s: changes %+v, err %v", name, ch, err)
		}
	}
	for _, p := range tb.list() {
		if p.Routable() || p.LAN || p.Verified {
			t.Errorf("public name routable: %+v", p)
		}
	}
	if n := countPins(t, db); n != 0 {
		t.Errorf("%d pins of public names", n)
	}
	for name, lan := range map[string]bool{"anna-laptop-x7k2.local": true, "box": true, "box:8448": true, "BOX.LOCAL.": true,
		"matrix.org": false, "local": true, "x.localhost": false, "127.0.0.1": false, "notlocal.org": false} {
		if isLANName(name) != lan {
			t.Errorf("isLANName(%q) = %v", name, !lan)
		}
	}
}

// TestPeerTableBounded: 300 made-up names leave at most MaxPeers entries;
// when full, a name whose key we pinned still gets in.
func TestPeerTableBounded(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	tb := newTable(db, "me.local", nil)
	now := time.Unix(1_800_000_000, 0)
	friend := newKey(t)
	tb.observe(t.Context(), seen("friend.local", friend, "192.0.2.7"), now)
	// Pinned, then gone from the table (its records ran out).
	tb.mu.Lock()
	delete(tb.peers, "friend.local")
	tb.mu.Unlock()
	for i := range 300 {
		tb.observe(t.Context(), seen(fmt.Sprintf("flood%d.example.org", i), newKey(t), "192.0.2.8"), now)
	}
	if n := len(tb.list()); n != MaxPeers {
		t.Fatalf("%d peers after 300 names, want the cap %d", n, MaxPeers)
	}
	ch, _ := tb.observe(t.Context(), seen("friend.local", friend, "192.0.2.7"), now.Add(time.Second))
	if len(ch) != 1 || len(tb.list()) != MaxPeers {
		t.Errorf("a pinned friend was kept out of a full table: %+v, %d peers", ch, len(tb.list()))
	}
}

// TestPinTableBounded: pins stop at MaxPins. A new name evicts the pin
// seen least recently only when that was more than PinKeep ago, so a
// flood cannot make us forget a neighbour's key.
func TestPinTableBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a thousand pins")
	}
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	defer db.Close()
	t0 := time.Unix(1_800_000_000, 0)
	// Fill the table directly: one transaction instead of a thousand.
	err := db.Update(t.Context(), func(tx *store.Tx) error {
		for i := range MaxPins {
			v := fmt.Sprintf(`{"key":"ed25519:a:%s","pinned_ts":%d}`, "x", t0.Add(time.Duration(i)*time.Second).UnixMilli())
			if err := tx.Put(store.LANPins, fmt.Appendf(nil, "old%d.local", i), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tb := newTable(db, "me.local", nil)
	// Within PinKeep of the last sighting of every pin: nothing evicted, not pinned.
	ch, _ := tb.observe(t.Context(), seen("new.local", newKey(t), "192.0.2.7"), t0.Add(time.Hour))
	if len(ch) != 0 || countPins(t, db) != MaxPins || tb.list()[0].Verified {
		t.Fatalf("pinned over a full table of recent pins: %+v, %d pins", ch, countPins(t, db))
	}
	// A day later: 300 new names evict the oldest pins, the count stays.
	later := t0.Add(PinKeep + 2*time.Hour)
	for i := range 300 {
		tb.observe(t.Context(), seen(fmt.Sprintf("n%d.local", i), newKey(t), "192.0.2.7"), later)
	}
	if n := countPins(t, db); n != MaxPins {
		t.Fatalf("%d pins, want the cap %d", n, MaxPins)
	}
	db.View(func(tx *store.Tx) error {
		if tx.Get(store.LANPins, []byte("old0.local")) != nil || tx.Get(store.LANPins, []byte("n299.local")) == nil {
			t.Error("the least recently seen pin was not the one evicted")
		}
		return nil
	})
}

func TestParseTXT(t *testing.T) {
	key := newKey(t)
	good := []string{"v=1", "server_name=hs.local", "key=ed25519:abc:" + key}
	a, err := parseTXT(append(good, "cert=xyz", "v=2"))
	if err != nil || a.name != "hs.local" || a.keyID != "ed25519:abc" || a.key != key || a.extra["cert"] != "xyz" {
		t.Fatalf("good TXT: %+v %v", a, err)
	}
	long := make([]string, 17)
	for i := range long {
		long[i] = "x=1"
	}
	for name, txt := range map[string][]string{
		"no version":      good[1:],
		"version 2":       {"v=2", good[1], good[2]},
		"no name":         {"v=1", good[2]},
		"bad name":        {"v=1", "server_name=a b", good[2]},
		"name with slash": {"v=1", "server_name=a/b", good[2]},
		"long name":       {"v=1", "server_name=" + string(make([]byte, 256)), good[2]},
		"no key":          good[:2],
		"not ed25519":     {"v=1", good[1], "key=rsa:abc:" + key},
		"no key id":       {"v=1", good[1], "key=ed25519:" + key},
		"short key":       {"v=1", good[1], "key=ed25519:abc:AAAA"},
		"not base64":      {"v=1", good[1], "key=ed25519:abc:!!!"},
		"padded base64 ≠": {"v=1", good[1], "key=ed25519:abc:" + key + "="},
		"too many":        append(good, long...),
		"too long":        append(good, "pad="+string(make([]byte, 1300))),
	} {
		if _, err := parseTXT(txt); err == nil {
			t.Errorf("%s: accepted %v", name, txt)
		}
	}
}

func TestRoute(t *testing.T) {
	p := Peer{Port: 8448, Addrs: []string{"192.168.1.20", "fd00::2"}}
	if got := p.Route(nil); got != "192.168.1.20:8448" {
		t.Errorf("route: %q", got)
	}
	if (Peer{Port: 8448, LAN: true, Verified: true}).Routable() {
		t.Error("a peer without addresses is routable")
	}
}
