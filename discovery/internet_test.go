package discovery

import (
	"crypto/ed25519"
	"encoding/base64"
	"path/filepath"
	"testing"
	"time"
)

// knownKeys is what the internet told us: server name → key ID → key.
// The daemon's implementation reads federation/serverkeys' cache
// (serverkeys.TestKnownForLAN).
type knownKeys map[string]map[string]ed25519.PublicKey

func (k knownKeys) InternetKey(name, keyID string) (ed25519.PublicKey, bool) {
	key, ok := k[name][keyID]
	return key, ok
}

// TestLANFirstPublicName: a public name heard on the LAN is routed over
// the LAN only when its announced key is the one the internet gave for
// it (issue 11); with no internet-known key it is listed unconfirmed, and
// with another key listed as a mismatch, never routed, beside the
// confirmed peer whose route it cannot take. Its goodbye ends the route,
// so federation falls back to DNS.
func TestLANFirstPublicName(t *testing.T) {
	real := newKey(t)
	realPub, _ := base64.RawStdEncoding.DecodeString(real)
	internet := knownKeys{"hs-a.test": {"ed25519:a": realPub}}
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	tb := newTable(db, "me.local", internet)
	t0 := time.Unix(1_800_000_000, 0)

	// Unknown to the internet: listed, unconfirmed, not routed.
	other := newKey(t)
	ch, err := tb.observe(t.Context(), seen("hs-b.test", other, "192.0.2.8"), t0)
	if err != nil || len(ch) != 0 {
		t.Fatalf("unknown public name: changes %+v, err %v", ch, err)
	}
	if ps := tb.list(); len(ps) != 1 || !ps[0].Unconfirmed() || ps[0].Routable() || ps[0].KeyMismatch {
		t.Fatalf("unknown public name listed as %+v", ps)
	}
	if _, ok := tb.pinnedSPKI("hs-b.test"); ok {
		t.Fatal("an unconfirmed public name has a certificate pin")
	}

	// An impostor first: another key than the internet's.
	ch, err = tb.observe(t.Context(), seen("hs-a.test", other, "192.0.2.66"), t0)
	if err != nil || len(ch) != 0 {
		t.Fatalf("mismatching key: changes %+v, err %v", ch, err)
	}
	// Then the real one: confirmed and routed, certificate pinned to its binding.
	ch, err = tb.observe(t.Context(), seen("hs-a.test", real, "192.0.2.7"), t0.Add(time.Second))
	if err != nil || len(ch) != 1 || ch[0].Gone || !ch[0].Peer.Routable() || ch[0].Peer.Route(nil) != "192.0.2.7:8448" {
		t.Fatalf("confirmed public name: changes %+v, err %v", ch, err)
	}
	if spki, ok := tb.pinnedSPKI("hs-a.test"); !ok || spki != testSPKI("hs-a.test") {
		t.Fatalf("confirmed public name's certificate pin: %x %v", spki, ok)
	}
	// The impostor again, after: still no change, the route stays.
	if ch, _ := tb.observe(t.Context(), seen("hs-a.test", other, "192.0.2.66"), t0.Add(2*time.Second)); len(ch) != 0 {
		t.Fatalf("impostor after the real peer: changes %+v", ch)
	}
	var confirmed, mismatch int
	for _, p := range tb.list() {
		switch {
		case p.ServerName != "hs-a.test":
		case p.Routable() && p.Key == real:
			confirmed++
		case p.KeyMismatch && !p.Routable() && p.Key == other:
			mismatch++
		}
	}
	if confirmed != 1 || mismatch != 1 {
		t.Fatalf("hs-a.test listed %d confirmed and %d mismatching entries: %+v", confirmed, mismatch, tb.list())
	}
	if spki, ok := tb.pinnedSPKI("hs-a.test"); !ok || spki != testSPKI("hs-a.test") {
		t.Fatal("the impostor took the certificate pin")
	}
	// Public names are never pinned: the internet is their authority.
	if n := countPins(t, db); n != 0 {
		t.Fatalf("%d pins for public names", n)
	}

	// A correct key without a valid certificate binding is not routed.
	unbound := seen("hs-a.test", real, "192.0.2.7")
	unbound.ann.extra = nil
	tb2 := newTable(openDB(t, filepath.Join(t.TempDir(), "h2.db")), "me.local", internet)
	if ch, _ := tb2.observe(t.Context(), unbound, t0); len(ch) != 0 || tb2.list()[0].Routable() {
		t.Fatalf("unbound announcement routed: %+v", ch)
	}

	// Goodbye: the route goes a second later.
	bye := seen("hs-a.test", real, "192.0.2.7")
	bye.ttl = 0
	tb.observe(t.Context(), bye, t0.Add(time.Minute))
	if _, ch := tb.due(t0.Add(time.Minute + time.Second)); len(ch) != 1 || !ch[0].Gone || ch[0].Peer.ServerName != "hs-a.test" {
		t.Fatalf("goodbye of a confirmed public name: %+v", ch)
	}
	if _, ok := tb.pinnedSPKI("hs-a.test"); ok {
		t.Fatal("certificate pin left after the goodbye")
	}

	// Without InternetKeys (nil) a public name is never routed.
	tb3 := newTable(openDB(t, filepath.Join(t.TempDir(), "h3.db")), "me.local", nil)
	if ch, _ := tb3.observe(t.Context(), seen("hs-a.test", real, "192.0.2.7"), t0); len(ch) != 0 {
		t.Fatalf("public name routed without internet keys: %+v", ch)
	}
}

// TestLANFirstRecheck: a public name heard before its key was learned
// from the internet is routed as soon as the key is learned (Recheck,
// which the daemon calls from serverkeys.OnLearn), not at its next
// announcement; and loses the route when the internet's key turns out to
// be another.
func TestLANFirstRecheck(t *testing.T) {
	key := newKey(t)
	pub, _ := base64.RawStdEncoding.DecodeString(key)
	internet := knownKeys{}
	tb := newTable(openDB(t, filepath.Join(t.TempDir(), "h.db")), "me.local", internet)
	t0 := time.Unix(1_800_000_000, 0)
	if ch, _ := tb.observe(t.Context(), seen("hs-b.test", key, "192.0.2.8"), t0); len(ch) != 0 {
		t.Fatalf("unconfirmed peer routed: %+v", ch)
	}
	if ch := tb.recheck("hs-b.test"); len(ch) != 0 {
		t.Fatalf("recheck with nothing learned: %+v", ch)
	}
	internet["hs-b.test"] = map[string]ed25519.PublicKey{"ed25519:a": pub}
	ch := tb.recheck("hs-b.test")
	if len(ch) != 1 || ch[0].Gone || ch[0].Peer.Route(nil) != "192.0.2.8:8448" {
		t.Fatalf("recheck after the key was learned: %+v", ch)
	}
	if ch := tb.recheck("hs-b.test"); len(ch) != 0 {
		t.Fatalf("a second recheck changed the route again: %+v", ch)
	}
	other, _ := base64.RawStdEncoding.DecodeString(newKey(t))
	internet["hs-b.test"]["ed25519:a"] = other
	ch = tb.recheck("hs-b.test")
	if len(ch) != 1 || !ch[0].Gone {
		t.Fatalf("recheck after the internet's key changed: %+v", ch)
	}
	if ps := tb.list(); len(ps) != 1 || !ps[0].KeyMismatch || ps[0].Routable() {
		t.Fatalf("listed after the mismatch: %+v", ps)
	}
}
