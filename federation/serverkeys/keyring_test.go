package serverkeys

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/store"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// A second server's signature verifies through a real TLS fetch, and keeps
// verifying from the bbolt file once that server is gone, across a reopen.
func TestKeyRingFetchesAndPersists(t *testing.T) {
	net := newFakeNet()
	remoteID := newIdentity(t, "remote.test", "r1")
	net.serve(t, "remote.test", New(newDB(t), remoteID, net.client(), nil))

	path := filepath.Join(t.TempDir(), "hearth.db")
	db := openDB(t, path)
	local := New(db, newIdentity(t, "local.test", "l1"), net.client(), nil)
	msg := sign(t, remoteID, `{"hello":"world"}`)

	if err := verify(t, local.KeyRing(), "remote.test", msg, time.Now()); err != nil {
		t.Fatalf("verify via TLS fetch: %v", err)
	}
	if net.hitCount("remote.test") == 0 {
		t.Fatal("the remote server was never asked for its keys")
	}
	rec, ok := readRecord(t, db, "remote.test", remoteID.KeyID)
	if !ok || !ed25519.PublicKey(rec.Key).Equal(remoteID.Key.Public()) {
		t.Fatalf("key not cached: %+v %v", rec, ok)
	}
	// A second verification is answered from the cache.
	before := net.hitCount("remote.test")
	if err := verify(t, local.KeyRing(), "remote.test", msg, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := net.hitCount("remote.test"); got != before {
		t.Fatalf("cached key refetched: %d requests, want %d", got, before)
	}

	net.servers["remote.test"].Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, path)
	t.Cleanup(func() { db.Close() })
	reopened := New(db, newIdentity(t, "local.test", "l1"), net.client(), nil)
	if err := verify(t, reopened.KeyRing(), "remote.test", msg, time.Now()); err != nil {
		t.Fatalf("verify from the reopened cache: %v", err)
	}
}

// A cached key whose valid_until_ts has passed is fetched again before it
// is trusted for a new signature; for a signature made while it was valid
// it is used as it is, even with its server gone.
func TestLapsedKeyIsRefetched(t *testing.T) {
	net := newFakeNet()
	remoteID := newIdentity(t, "remote.test", "r1")
	net.serve(t, "remote.test", New(newDB(t), remoteID, net.client(), nil))
	db := newDB(t)
	local := New(db, newIdentity(t, "local.test", "l1"), net.client(), nil)
	msg := sign(t, remoteID, `{"n":1}`)
	if err := verify(t, local.KeyRing(), "remote.test", msg, time.Now()); err != nil {
		t.Fatal(err)
	}

	lapsed := time.Now().Add(-time.Hour)
	pub := remoteID.Key.Public().(ed25519.PublicKey)
	writeRecord(t, db, "remote.test", remoteID.KeyID, keyRecord{Key: pub, ValidUntil: spec.AsTimestamp(lapsed)})
	before := net.hitCount("remote.test")
	if err := verify(t, local.KeyRing(), "remote.test", msg, time.Now()); err != nil {
		t.Fatalf("verify after refetch: %v", err)
	}
	if net.hitCount("remote.test") == before {
		t.Fatal("lapsed key used for a new signature without refetching it")
	}
	rec, _ := readRecord(t, db, "remote.test", remoteID.KeyID)
	if !rec.ValidUntil.Time().After(time.Now()) {
		t.Fatalf("refetched validity not stored: %v", rec.ValidUntil.Time())
	}

	// A lapsed key covers signatures made while it was valid, without a
	// fetch, and is not written back as anything else (a batch of two makes
	// the KeyRing hand it to StoreKeys).
	writeRecord(t, db, "remote.test", remoteID.KeyID, keyRecord{Key: pub, ValidUntil: spec.AsTimestamp(lapsed)})
	before = net.hitCount("remote.test")
	oldTS := spec.AsTimestamp(lapsed.Add(-time.Minute))
	res, err := local.KeyRing().VerifyJSONs(t.Context(), []gomatrixserverlib.VerifyJSONRequest{
		{ServerName: "remote.test", AtTS: oldTS, Message: msg, ValidityCheckingFunc: gomatrixserverlib.StrictValiditySignatureCheck},
		{ServerName: "remote.test", AtTS: oldTS, Message: sign(t, remoteID, `{"n":2}`), ValidityCheckingFunc: gomatrixserverlib.StrictValiditySignatureCheck},
	})
	if err != nil || res[0].Error != nil || res[1].Error != nil {
		t.Fatalf("old signatures with lapsed key: %v %+v", err, res)
	}
	if net.hitCount("remote.test") != before {
		t.Fatal("lapsed key refetched for signatures it covers")
	}
	if rec, _ := readRecord(t, db, "remote.test", remoteID.KeyID); rec.Expired != 0 || rec.ValidUntil != spec.AsTimestamp(lapsed) {
		t.Fatalf("lapsed key rewritten as %+v", rec)
	}

	// With the server gone, a new signature cannot be accepted.
	net.servers["remote.test"].Close()
	if err := verify(t, local.KeyRing(), "remote.test", msg, time.Now()); err == nil {
		t.Fatal("new signature accepted with a lapsed key that could not be refetched")
	}
	if rec, _ := readRecord(t, db, "remote.test", remoteID.KeyID); rec.Expired != 0 || rec.ValidUntil != spec.AsTimestamp(lapsed) {
		t.Fatalf("lapsed key rewritten as %+v", rec)
	}
}

// Forged and tampered signatures, and servers nobody can reach, fail.
func TestForgedSignatureFails(t *testing.T) {
	net := newFakeNet()
	remoteID := newIdentity(t, "remote.test", "r1")
	net.serve(t, "remote.test", New(newDB(t), remoteID, net.client(), nil))
	local := New(newDB(t), newIdentity(t, "local.test", "l1"), net.client(), nil)

	forger := newIdentity(t, "remote.test", "r1") // same name and key ID, other key
	if err := verify(t, local.KeyRing(), "remote.test", sign(t, forger, `{"a":1}`), time.Now()); err == nil {
		t.Fatal("forged signature verified")
	}
	good := sign(t, remoteID, `{"a":1}`)
	tampered := []byte(string(good[:len(good)-1]) + `,"b":2}`)
	if err := verify(t, local.KeyRing(), "remote.test", tampered, time.Now()); err == nil {
		t.Fatal("tampered object verified")
	}
	if err := verify(t, local.KeyRing(), "nowhere.test", sign(t, newIdentity(t, "nowhere.test", "x"), `{}`), time.Now()); err == nil {
		t.Fatal("signature of an unreachable server verified")
	}
	if err := verify(t, local.KeyRing(), "remote.test", good, time.Now()); err != nil {
		t.Fatalf("genuine signature after forgeries: %v", err)
	}
}

// Our own current and retired keys verify without any network; a retired
// key only for what it signed before it expired, and an ID we never had
// not at all.
func TestOwnKeysNeedNoNetwork(t *testing.T) {
	net := newFakeNet() // routes nowhere: any fetch fails
	old := newIdentity(t, "local.test", "old")
	expired := time.Now().Add(-time.Hour)
	id := newIdentity(t, "local.test", "new")
	id.Old = []OldKey{{KeyID: old.KeyID, Public: old.Key.Public().(ed25519.PublicKey), ExpiredTS: spec.AsTimestamp(expired)}}
	db := newDB(t)
	k := New(db, id, net.client(), []Notary{{ServerName: "notary.test"}})

	if err := verify(t, k.KeyRing(), "local.test", sign(t, id, `{"x":1}`), time.Now()); err != nil {
		t.Fatalf("own current key: %v", err)
	}
	oldMsg := sign(t, old, `{"x":2}`)
	if err := verify(t, k.KeyRing(), "local.test", oldMsg, expired.Add(-time.Minute)); err != nil {
		t.Fatalf("own old key before expiry: %v", err)
	}
	if err := verify(t, k.KeyRing(), "local.test", oldMsg, time.Now()); err == nil {
		t.Fatal("own old key accepted after its expiry")
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	odd := Identity{ServerName: "local.test", KeyID: "ed25519:unknown", Key: stranger}
	if err := verify(t, k.KeyRing(), "local.test", sign(t, odd, `{}`), time.Now()); err == nil {
		t.Fatal("unknown own key ID accepted")
	}
	// The same key under an ID we never published is refused too
	// (gomatrixserverlib's DirectKeyFetcher would hand out our current key
	// for any ID).
	alias := id
	alias.KeyID = "ed25519:alias"
	if err := verify(t, k.KeyRing(), "local.test", sign(t, alias, `{}`), time.Now()); err == nil {
		t.Fatal("current key accepted under an unpublished key ID")
	}
	if n := bucketEntries(t, db); n != 0 {
		t.Fatalf("own keys written to the cache: %d entries", n)
	}
}

// Verifying a batch from the cache commits nothing, though the KeyRing
// hands every key it used back to StoreKeys.
func TestCachedVerificationCommitsNothing(t *testing.T) {
	net := newFakeNet()
	remoteID := newIdentity(t, "remote.test", "r1")
	net.serve(t, "remote.test", New(newDB(t), remoteID, net.client(), nil))
	var commits atomic.Int64
	db, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"), store.Options{OnCommit: func(uint64) { commits.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	local := New(db, newIdentity(t, "local.test", "l1"), net.client(), nil)
	if err := verify(t, local.KeyRing(), "remote.test", sign(t, remoteID, `{"n":0}`), time.Now()); err != nil {
		t.Fatal(err)
	}
	if commits.Load() == 0 {
		t.Fatal("fetched key not stored")
	}
	before := commits.Load()
	var reqs []gomatrixserverlib.VerifyJSONRequest
	for i := range 3 {
		reqs = append(reqs, gomatrixserverlib.VerifyJSONRequest{ServerName: "remote.test", AtTS: spec.AsTimestamp(time.Now()),
			Message: sign(t, remoteID, fmt.Sprintf(`{"n":%d}`, i)), ValidityCheckingFunc: gomatrixserverlib.StrictValiditySignatureCheck})
	}
	res, err := local.KeyRing().VerifyJSONs(t.Context(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Error != nil {
			t.Fatalf("request %d: %v", i, r.Error)
		}
	}
	if got := commits.Load(); got != before {
		t.Fatalf("verification from the cache committed %d times", got-before)
	}
}
