package daemon

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/discovery"
	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/localapi/control"
)

// TestAnnouncesPeopleNearby: the daemon's announcement carries the owner
// made at first start (opted in by default), not a later account until it
// opts in, and follows a display name change and an opt-out at once.
func TestAnnouncesPeopleNearby(t *testing.T) {
	d, _ := startTestDaemon(t)
	if d.lan == nil {
		t.Skip("LAN discovery did not start here (no mDNS socket)")
	}
	ctx := context.Background()
	owner := ownerName()
	people := func() []string {
		var out []string
		for _, s := range d.lan.TXT() {
			if strings.HasPrefix(s, "u") && len(s) > 2 && s[2] == '=' {
				out = append(out, s)
			}
		}
		return out
	}
	if got := people(); !slices.Equal(got, []string{"u0=" + owner + "\t" + owner}) {
		t.Fatalf("announced at first start: %q, want the owner", got)
	}
	if err := d.accounts.Create(ctx, "zed", "pw", false); err != nil {
		t.Fatal(err)
	}
	if got := people(); len(got) != 1 {
		t.Fatalf("a new account is announced without opting in: %q", got)
	}
	if err := d.accounts.SetNearby(ctx, "zed", true); err != nil {
		t.Fatal(err)
	}
	name := "Anna\tBell\n"
	if err := d.accounts.SetProfile(ctx, owner, &name, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"u0=" + owner + "\tAnna Bell", "u1=zed\tzed"}
	if got := people(); !slices.Equal(got, want) {
		t.Fatalf("after zed opted in and the owner was renamed: %q, want %q", got, want)
	}
	if err := d.accounts.SetNearby(ctx, owner, false); err != nil {
		t.Fatal(err)
	}
	if got := people(); !slices.Equal(got, []string{"u0=zed\tzed"}) {
		t.Fatalf("after the owner opted out: %q", got)
	}
}

// TestPeopleTXTBounds: however many people opt in and however long their
// names, the announcement stays within what receivers accept, and what a
// receiver reads back is what was announced, cleaned.
func TestPeopleTXTBounds(t *testing.T) {
	var users []account.User
	for i := range 40 {
		users = append(users, account.User{Localpart: strings.Repeat("p", 10) + string(rune('a'+i%26)) + strings.Repeat("x", i),
			DisplayName: strings.Repeat("é", 100)})
	}
	users = append([]account.User{{Localpart: strings.Repeat("l", 65), DisplayName: "too long"}}, users...)
	if got := peopleTXT([]account.User{{Localpart: "a=b", DisplayName: "Equals"}}); len(got) != 1 || got[0] != "u0=a=b\tEquals" {
		t.Fatalf("a localpart with '=' (allowed by the grammar): %q", got)
	}
	txt := peopleTXT(users)
	total := 0
	for _, s := range txt {
		total += len(s) + 1
	}
	if len(txt) != maxNearbyPeople || total > maxNearbyBytes {
		t.Fatalf("%d strings, %d bytes", len(txt), total)
	}
	kv := map[string]string{}
	for _, s := range txt {
		k, v, _ := strings.Cut(s, "=")
		kv[k] = v
	}
	got := peopleOf(kv)
	if len(got) != len(txt) || got[0].Localpart != users[1].Localpart || got[0].DisplayName != strings.Repeat("é", maxNearbyName/2) {
		t.Fatalf("read back %+v", got)
	}
	// What a stranger could send: bad localparts are dropped, names cleaned.
	got = peopleOf(map[string]string{"u0": "ok\tFine", "u1": "has:colon\tX", "u2": "\tEmpty", "u3": "sp ace\tY",
		"u4": "ctl\t\x1b[31mRed\x00", "u9": "late\tNine"})
	want := []Person{{"ok", "Fine"}, {"ctl", "[31mRed"}}
	if !slices.Equal(got, want) {
		t.Fatalf("peopleOf = %+v, want %+v", got, want)
	}
}

// signedPeer is a peer announcing users under name, its list signed by priv.
func signedPeer(t *testing.T, name string, pub ed25519.PublicKey, priv ed25519.PrivateKey, users ...account.User) discovery.Peer {
	t.Helper()
	kv := map[string]string{}
	for _, s := range signedPeopleTXT(name, priv, users) {
		k, v, _ := strings.Cut(s, "=")
		kv[k] = v
	}
	return discovery.Peer{ServerName: name, LAN: true, Verified: true, KeyID: "ed25519:a",
		Key: base64.RawStdEncoding.EncodeToString(pub), TXT: kv}
}

// TestNearbyOnlyTrustedPeers: only a LAN name with its pinned key puts
// people in the directory or the peer list.
func TestNearbyOnlyTrustedPeers(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	bob := signedPeer(t, "bob-x.local", pub, priv, account.User{Localpart: "bob", DisplayName: "Bob Builder"})
	changed, unbound := bob, bob
	changed.Verified, changed.KeyChanged = false, true
	unbound.Verified = false // no pin yet: its announcement bound no certificate
	for _, c := range []struct {
		p    discovery.Peer
		want bool
	}{
		{bob, true},
		{changed, false},
		{unbound, false},
	} {
		if got := len(controlPeople(c.p)) == 1; got != c.want {
			t.Errorf("%+v: listed %v, want %v", c.p, got, c.want)
		}
	}
}

// TestNearbyConfirmedPublicNamePeople: a public name discovery confirmed
// (its announced key is the one the internet gave for it, so it is routed
// LAN-first) lists its signed people under that server name, in the
// directory and the peer list; an unconfirmed one (no internet key to
// compare with) or one whose key differs from the internet's does not.
// The peers carry the flags discovery's table gives a public name with a
// valid certificate binding (discovery/table.go, checkInternetKey); each
// list is signed by the key its peer announces.
func TestNearbyConfirmedPublicNamePeople(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, otherPriv, _ := ed25519.GenerateKey(nil)
	anna := account.User{Localpart: "anna", DisplayName: "Anna"}
	confirmed := signedPeer(t, "example.org", pub, priv, anna)
	confirmed.LAN, confirmed.Bound = false, true
	unconfirmed := confirmed
	unconfirmed.Verified = false
	mismatch := signedPeer(t, "example.org", otherPub, otherPriv, anna)
	mismatch.LAN, mismatch.Bound, mismatch.Verified, mismatch.KeyMismatch = false, true, false, true
	if confirmed.Unconfirmed() || !unconfirmed.Unconfirmed() || mismatch.Unconfirmed() {
		t.Fatalf("the peers do not carry discovery's flags: %+v %+v %+v", confirmed, unconfirmed, mismatch)
	}
	for _, c := range []struct {
		name string
		p    discovery.Peer
		want []control.Person
	}{
		{"confirmed", confirmed, []control.Person{{UserID: "@anna:example.org", DisplayName: "Anna"}}},
		{"unconfirmed", unconfirmed, nil},
		{"key mismatch", mismatch, nil},
	} {
		if got := controlPeople(c.p); !slices.Equal(got, c.want) {
			t.Errorf("%s: controlPeople = %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestNearbyPeopleMustBeSigned: the certificate binding signs only the
// server name and certificate key, so an impostor on the LAN can replay
// a neighbour's name, key and binding (the table then holds a verified
// entry with the impostor's TXT). The people it lists must still be the
// ones the neighbour's signing key signed, for that server name, unaltered.
func TestNearbyPeopleMustBeSigned(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	bob := account.User{Localpart: "bob", DisplayName: "Bob Builder"}
	good := signedPeer(t, "bob-x.local", pub, priv, bob)
	if got := controlPeople(good); len(got) != 1 || got[0].UserID != "@bob:bob-x.local" || got[0].DisplayName != "Bob Builder" {
		t.Fatalf("a signed list from the pinned key: %+v", got)
	}
	forged := func(edit func(p *discovery.Peer)) discovery.Peer {
		p := signedPeer(t, "bob-x.local", pub, priv, bob)
		edit(&p)
		return p
	}
	for name, p := range map[string]discovery.Peer{
		"unsigned": forged(func(p *discovery.Peer) { delete(p.TXT, nearbySigKey) }),
		"replayed binding, made-up people": forged(func(p *discovery.Peer) {
			p.TXT = map[string]string{"u0": "mallory\tBob's bank"}
		}),
		"display name altered":  forged(func(p *discovery.Peer) { p.TXT["u0"] = "bob\tSend money here" }),
		"person added":          forged(func(p *discovery.Peer) { p.TXT["u1"] = "mallory\tMallory" }),
		"signed by another key": signedPeer(t, "bob-x.local", pub, otherPriv, bob),
		"signed for another name": func() discovery.Peer {
			p := signedPeer(t, "carol.local", pub, priv, bob)
			p.ServerName = "bob-x.local"
			return p
		}(),
		"bad signature encoding": forged(func(p *discovery.Peer) { p.TXT[nearbySigKey] = "!!" }),
		"bad key encoding":       forged(func(p *discovery.Peer) { p.Key = "short" }),
	} {
		if got := controlPeople(p); len(got) != 0 {
			t.Errorf("%s: listed %+v", name, got)
		}
	}
}

// TestNoNearbyPeopleWithoutFederation: with federation off, discovery
// still browses, but its peers' people stay out of the user directory,
// since no DM could reach them.
func TestNoNearbyPeopleWithoutFederation(t *testing.T) {
	d, _ := startTestDaemon(t) // federation off
	if d.lan == nil {
		t.Skip("LAN discovery did not start here (no mDNS socket)")
	}
	if d.nearby.lan.Load() != nil {
		t.Fatal("the directory reads discovery's peers while federation is off")
	}
}

// TestSignedPeopleFitTheRecord: with the longest server name, the
// certificate binding and the most people, the signed list still fits the
// 16 strings and 1300 bytes every receiver accepts (discovery/wire.go).
func TestSignedPeopleFitTheRecord(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	name := strings.Repeat("n", 249) + ".local"
	var users []account.User
	for i := range 20 {
		users = append(users, account.User{Localpart: strings.Repeat(string(rune('a'+i)), maxNearbyLocal), DisplayName: strings.Repeat("é", 100)})
	}
	txt := []string{"v=1", "server_name=" + name, "key=ed25519:abcdefgh:" + base64.RawStdEncoding.EncodeToString(pub)}
	txt = append(txt, discovery.BindingTXT(name, [32]byte{}, priv)...)
	people := signedPeopleTXT(name, priv, users)
	txt = append(txt, people...)
	total := 0
	for _, s := range txt {
		total += len(s) + 1
	}
	if len(txt) > 16 || total > 1300 || len(people) < 2 {
		t.Fatalf("%d strings, %d bytes (%d people strings)", len(txt), total, len(people))
	}
}
