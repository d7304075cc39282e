package discovery

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPrivs holds the private halves of the keys tests make with genKey,
// by unpadded base64 public key, so announcements can carry a binding.
var testPrivs sync.Map

func genKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err == nil {
		testPrivs.Store(b64(pub), priv)
	}
	return pub, priv, err
}

// testSPKI is the certificate key hash test announcements bind.
func testSPKI(name string) [32]byte { return sha256.Sum256([]byte("cert of " + name)) }

// testBinding is the binding TXT of name for a key made by genKey.
func testBinding(name string, pub ed25519.PublicKey) []string {
	priv, ok := testPrivs.Load(b64(pub))
	if !ok {
		return nil
	}
	return BindingTXT(name, testSPKI(name), priv.(ed25519.PrivateKey))
}

func testBindingExtra(name, key string) map[string]string {
	pub, _ := base64.RawStdEncoding.DecodeString(key)
	out := map[string]string{}
	for _, kv := range testBinding(name, pub) {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

func extraOf(txt []string) map[string]string {
	out := map[string]string{}
	for _, kv := range txt {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// TestBinding: a binding verifies only for the server name, certificate
// key and signing key it was made for.
func TestBinding(t *testing.T) {
	pub, priv, _ := genKey()
	other, _, _ := genKey()
	spki := testSPKI("a.local")
	txt := extraOf(BindingTXT("a.local", spki, priv))
	if got, err := verifyBinding("a.local", b64(pub), txt); err != nil || got != spki {
		t.Fatalf("own binding: %x %v", got, err)
	}
	if _, err := verifyBinding("b.local", b64(pub), txt); err == nil {
		t.Error("a binding verified for another server name")
	}
	if _, err := verifyBinding("a.local", b64(other), txt); err == nil {
		t.Error("a binding verified with another signing key")
	}
	forged := extraOf(BindingTXT("a.local", spki, priv))
	h := testSPKI("attacker")
	forged[TXTCertKey] = base64.RawStdEncoding.EncodeToString(h[:])
	if _, err := verifyBinding("a.local", b64(pub), forged); err == nil {
		t.Error("a binding verified for another certificate key")
	}
	if _, err := verifyBinding("a.local", b64(pub), nil); err == nil {
		t.Error("no binding verified")
	}
}

// TestUnboundPeerNotTrusted: a LAN name announced without a certificate
// binding, or with one its key did not sign, is listed but neither pinned
// nor routed; the first bound announcement is pinned and routed, and its
// certificate key is the one PinnedSPKI gives the transport.
func TestUnboundPeerNotTrusted(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	defer db.Close()
	pub, _, _ := genKey()
	s := New(Config{ServerName: "me.local", KeyID: "ed25519:a", Key: pub, DB: db})
	now := time.Unix(1_800_000_000, 0)
	key := newKey(t)
	sg := seen("peer.local", key, "192.0.2.7")
	sg.ann.extra = nil
	if ch, err := s.table.observe(t.Context(), sg, now); err != nil || len(ch) != 0 {
		t.Fatalf("unbound: changes %+v, err %v", ch, err)
	}
	impostor := seen("peer.local", newKey(t), "192.0.2.7")
	impostor.ann.extra = testBindingExtra("peer.local", key) // someone else's binding
	if ch, _ := s.table.observe(t.Context(), impostor, now); len(ch) != 0 {
		t.Fatalf("a binding by another key: changes %+v", ch)
	}
	if p := s.Peers(); len(p) != 1 || p[0].Verified || p[0].Bound || countPins(t, db) != 0 {
		t.Fatalf("unbound peer: %+v, %d pins", p, countPins(t, db))
	}
	if _, ok := s.PinnedSPKI("peer.local"); ok {
		t.Error("a certificate key pinned for an unbound peer")
	}
	ch, _ := s.table.observe(t.Context(), seen("peer.local", key, "192.0.2.7"), now)
	if len(ch) != 1 || ch[0].Gone || !ch[0].Peer.Verified || countPins(t, db) != 1 {
		t.Fatalf("bound: changes %+v, %d pins", ch, countPins(t, db))
	}
	if got, ok := s.PinnedSPKI("peer.local"); !ok || got != testSPKI("peer.local") {
		t.Errorf("PinnedSPKI: %x %v", got, ok)
	}
}

// TestAcceptRefuseKeyChange: a peer announcing another key than its pin
// is flagged; Refuse keeps refusing that key and stops flagging it (also
// after a restart: the refusal is stored with the pin); a third key is
// flagged again; Accept pins the key announced now and routes the peer.
func TestAcceptRefuseKeyChange(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	defer db.Close()
	pub, _, _ := genKey()
	s := New(Config{ServerName: "me.local", KeyID: "ed25519:a", Key: pub, DB: db})
	var events []string
	s.OnChange(func(p Peer, gone bool) { events = append(events, map[bool]string{false: "up", true: "gone"}[gone]) })
	now := time.Unix(1_800_000_000, 0)
	first, second, third := newKey(t), newKey(t), newKey(t)
	s.table.observe(t.Context(), seen("peer.local", first, "192.0.2.7"), now)
	if ok, _ := s.Refuse(t.Context(), "peer.local"); ok {
		t.Error("refused a peer whose key did not change")
	}
	s.table.observe(t.Context(), seen("peer.local", second, "192.0.2.9"), now)
	if p := byKey(s.Peers(), second); !p.KeyChanged || p.KeyRefused || p.Routable() || !byKey(s.Peers(), first).Routable() {
		t.Fatalf("changed key: %+v", s.Peers())
	}
	if ok, err := s.Refuse(t.Context(), "peer.local"); !ok || err != nil {
		t.Fatalf("refuse: %v %v", ok, err)
	}
	if p := byKey(s.Peers(), second); !p.KeyChanged || !p.KeyRefused || p.Routable() {
		t.Fatalf("after refuse: %+v", p)
	}
	// A restart: the refusal is remembered with the pin.
	s2 := New(Config{ServerName: "me.local", KeyID: "ed25519:a", Key: pub, DB: db})
	s2.table.observe(t.Context(), seen("peer.local", second, "192.0.2.9"), now)
	if p := byKey(s2.Peers(), second); !p.KeyChanged || !p.KeyRefused || p.Routable() {
		t.Fatalf("refused key after a restart: %+v", p)
	}
	s.table.observe(t.Context(), seen("peer.local", third, "192.0.2.10"), now.Add(time.Second))
	if p := byKey(s.Peers(), third); !p.KeyChanged || p.KeyRefused {
		t.Fatalf("a third key is not flagged: %+v", p)
	}
	// Accept takes the key changed most recently (the third): the peer of
	// the first key leaves routing, the third's enters it.
	events = nil
	if ok, err := s.Accept(t.Context(), "peer.local"); !ok || err != nil {
		t.Fatalf("accept: %v %v", ok, err)
	}
	p := byKey(s.Peers(), third)
	if p.KeyChanged || !p.Verified || !p.Routable() || s.Route(p) != "192.0.2.10:8448" || len(events) != 2 || events[0] != "gone" || events[1] != "up" {
		t.Fatalf("after accept: %+v, events %v", p, events)
	}
	if old := byKey(s.Peers(), first); !old.KeyChanged || old.Routable() {
		t.Errorf("the old key after accepting the new one: %+v", old)
	}
	if got, ok := s.PinnedSPKI("peer.local"); !ok || got != testSPKI("peer.local") {
		t.Errorf("PinnedSPKI after accept: %v", ok)
	}
	if ok, _ := s.Accept(t.Context(), "nobody.local"); ok {
		t.Error("accepted a name not listed")
	}
}

// TestAcceptNeverTakesAnImpostorsKey: Accept names no key, so it must not
// pin one the owner could not have meant. A key the owner refused (an
// impostor) that is heard after a reinstalled neighbour's new key is not
// the one accepted; and with two new unrefused keys for one name, Accept
// pins neither (ErrKeyAmbiguous): otherwise an impostor announcing the
// name over and over would be the key "announced now" when the owner
// accepts the neighbour's reinstall.
func TestAcceptNeverTakesAnImpostorsKey(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	defer db.Close()
	pub, _, _ := genKey()
	s := New(Config{ServerName: "me.local", KeyID: "ed25519:a", Key: pub, DB: db})
	now := time.Unix(1_800_000_000, 0)

	first, impostor, reinstall := newKey(t), newKey(t), newKey(t)
	s.table.observe(t.Context(), seen("peer.local", first, "192.0.2.7"), now)
	s.table.observe(t.Context(), seen("peer.local", impostor, "192.0.2.66"), now.Add(time.Second))
	if ok, err := s.Refuse(t.Context(), "peer.local"); !ok || err != nil {
		t.Fatalf("refuse: %v %v", ok, err)
	}
	s.table.observe(t.Context(), seen("peer.local", reinstall, "192.0.2.8"), now.Add(2*time.Second))
	s.table.observe(t.Context(), seen("peer.local", impostor, "192.0.2.66"), now.Add(3*time.Second))
	if ok, err := s.Accept(t.Context(), "peer.local"); !ok || err != nil {
		t.Fatalf("accept: %v %v", ok, err)
	}
	if p := byKey(s.Peers(), reinstall); p.KeyChanged || !p.Routable() {
		t.Errorf("the reinstalled key after accept: %+v", p)
	}
	if p := byKey(s.Peers(), impostor); !p.KeyChanged || p.Routable() {
		t.Errorf("the refused impostor heard last was accepted: %+v", p)
	}

	other, k2, k3 := newKey(t), newKey(t), newKey(t)
	s.table.observe(t.Context(), seen("other.local", other, "192.0.2.20"), now)
	s.table.observe(t.Context(), seen("other.local", k2, "192.0.2.21"), now.Add(time.Second))
	s.table.observe(t.Context(), seen("other.local", k3, "192.0.2.22"), now.Add(2*time.Second))
	ok, err := s.Accept(t.Context(), "other.local")
	if ok || !errors.Is(err, ErrKeyAmbiguous) {
		t.Fatalf("accept with two new keys: %v %v, want ErrKeyAmbiguous", ok, err)
	}
	if p := byKey(s.Peers(), other); p.KeyChanged || !p.Routable() {
		t.Errorf("the pinned key after an ambiguous accept: %+v", p)
	}
	for _, k := range []string{k2, k3} {
		if p := byKey(s.Peers(), k); !p.KeyChanged || p.Routable() {
			t.Errorf("a new key after an ambiguous accept: %+v", p)
		}
	}
	// Refusing one of them leaves one new key: Accept takes it.
	if ok, err := s.Refuse(t.Context(), "other.local"); !ok || err != nil {
		t.Fatalf("refuse: %v %v", ok, err)
	}
	if ok, err := s.Accept(t.Context(), "other.local"); !ok || err != nil {
		t.Fatalf("accept after refusing one: %v %v", ok, err)
	}
	if p := byKey(s.Peers(), k2); p.KeyChanged || !p.Routable() {
		t.Errorf("the one unrefused key after accept: %+v", p)
	}
}

// TestChangesDeliveredInOrder: Accept and Forget run on the control API's
// goroutines, beside each other and the discovery goroutine. The changes
// each makes reach the observers in the order the table made them: a
// Forget that comes while Accept is still delivering its route does not
// have its "gone" overtaken by that route, which would leave federation
// routing a forgotten peer.
func TestChangesDeliveredInOrder(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	defer db.Close()
	pub, _, _ := genKey()
	s := New(Config{ServerName: "me.local", KeyID: "ed25519:a", Key: pub, DB: db})
	now := time.Unix(1_800_000_000, 0)
	first, second := newKey(t), newKey(t)
	s.table.observe(t.Context(), seen("peer.local", first, "192.0.2.7"), now)
	s.table.observe(t.Context(), seen("peer.local", second, "192.0.2.8"), now.Add(time.Second))

	var mu sync.Mutex
	routed := map[string]bool{}
	inUp, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.OnChange(func(p Peer, gone bool) {
		if !gone && p.Key == second {
			once.Do(func() { close(inUp); <-release })
		}
		mu.Lock()
		routed[p.ServerName] = !gone
		mu.Unlock()
	})
	accepted := make(chan error, 1)
	go func() {
		_, err := s.Accept(context.Background(), "peer.local")
		accepted <- err
	}()
	<-inUp // Accept is delivering the new key's route
	forgotten := make(chan error, 1)
	go func() {
		_, err := s.Forget(context.Background(), "peer.local")
		forgotten <- err
	}()
	// Without ordering, Forget finishes now, before Accept's route is
	// delivered; with it, Forget waits for Accept. Either way Accept is
	// let go after a moment (this wait decides only whether the bug
	// shows, never whether a correct table passes).
	select {
	case <-forgotten:
		forgotten <- nil
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	if err := <-forgotten; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if routed["peer.local"] || len(s.Peers()) != 0 {
		t.Fatalf("after Accept then Forget: observer routes it %v, table %+v", routed["peer.local"], s.Peers())
	}
}

// FuzzBinding: whatever the TXT fields, verifyBinding never panics and
// accepts only a signature by the given key over the given name and hash.
func FuzzBinding(f *testing.F) {
	pub, priv, _ := genKey()
	good := extraOf(BindingTXT("a.local", testSPKI("a.local"), priv))
	f.Add("a.local", b64(pub), good[TXTCertKey], good[TXTCertSig])
	f.Add("a.local", b64(pub), good[TXTCertKey], "")
	f.Add("", "", "====", "\x00")
	f.Add("b.local", b64(pub), good[TXTCertKey], good[TXTCertSig])
	f.Fuzz(func(t *testing.T, name, key, h, sig string) {
		spki, err := verifyBinding(name, key, map[string]string{TXTCertKey: h, TXTCertSig: sig})
		if err != nil {
			return
		}
		k, _ := base64.RawStdEncoding.DecodeString(key)
		s, _ := base64.RawStdEncoding.DecodeString(sig)
		if !ed25519.Verify(k, bindingMessage(name, spki), s) {
			t.Fatalf("accepted a binding that does not verify: %q %q %q %q", name, key, h, sig)
		}
		if key == b64(pub) && (name != "a.local" || spki != testSPKI("a.local")) {
			t.Fatalf("accepted a forged binding for %q", name)
		}
	})
}

// TestHeardAgainAfterSilence: a routable peer heard again after a silence
// (its cable back, re-announcing) is reported again, so the daemon wakes
// what federation queued for it; refreshes in quick succession are not.
func TestHeardAgainAfterSilence(t *testing.T) {
	tb := newTable(openDB(t, filepath.Join(t.TempDir(), "h.db")), "me.local", nil)
	t0 := time.Unix(1_800_000_000, 0)
	key := newKey(t)
	if ch, _ := tb.observe(t.Context(), seen("peer.local", key, "192.0.2.7"), t0); len(ch) != 1 {
		t.Fatalf("first: %+v", ch)
	}
	if ch, _ := tb.observe(t.Context(), seen("peer.local", key, "192.0.2.7"), t0.Add(time.Second)); len(ch) != 0 {
		t.Fatalf("its second start announcement: %+v", ch)
	}
	ch, _ := tb.observe(t.Context(), seen("peer.local", key, "192.0.2.7"), t0.Add(21*time.Second))
	if len(ch) != 1 || ch[0].Gone || ch[0].Peer.ServerName != "peer.local" {
		t.Fatalf("heard again after 20 s: %+v", ch)
	}
}
