package serverkeys

import (
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestKnownForLAN: Known answers LAN discovery's "which key did the
// internet give for this public name?" (issue 11, LAN-first routing)
// from the cache only: nothing before a fetch, the fetched key after it,
// still after the key's validity lapsed with the server unreachable (the
// internet being gone is when the LAN route matters), never a key the
// server retired, and never our own.
func TestKnownForLAN(t *testing.T) {
	net := newFakeNet()
	remoteID := newIdentity(t, "remote.test", "r1")
	net.serve(t, "remote.test", New(newDB(t), remoteID, net.client(), nil))
	db := newDB(t)
	local := New(db, newIdentity(t, "local.test", "l1"), net.client(), nil)

	if _, ok := local.Known("remote.test", remoteID.KeyID); ok {
		t.Fatal("a key is known before anything was fetched")
	}
	if err := verify(t, local.KeyRing(), "remote.test", sign(t, remoteID, `{"a":1}`), time.Now()); err != nil {
		t.Fatal(err)
	}
	before := net.hitCount("remote.test")
	key, ok := local.Known("remote.test", remoteID.KeyID)
	if !ok || !key.Equal(remoteID.Key.Public()) {
		t.Fatalf("fetched key not known: %x %v", key, ok)
	}
	if net.hitCount("remote.test") != before {
		t.Fatal("Known went to the network")
	}
	if _, ok := local.Known("remote.test", "ed25519:other"); ok {
		t.Fatal("an unknown key ID is known")
	}
	if _, ok := local.Known("local.test", "ed25519:l1"); ok {
		t.Fatal("our own key is answered as the internet's")
	}

	// Validity lapsed (and the server gone): still the internet's key.
	net.servers["remote.test"].Close()
	writeRecord(t, db, "remote.test", remoteID.KeyID, keyRecord{Key: key, ValidUntil: spec.AsTimestamp(time.Now().Add(-time.Hour))})
	if _, ok := local.Known("remote.test", remoteID.KeyID); !ok {
		t.Fatal("a lapsed key is no longer known")
	}
	// Retired by its server: not believed on the LAN.
	writeRecord(t, db, "remote.test", remoteID.KeyID, keyRecord{Key: key, Expired: spec.AsTimestamp(time.Now().Add(-time.Minute))})
	if _, ok := local.Known("remote.test", remoteID.KeyID); ok {
		t.Fatal("a retired key is still known")
	}
}
