package serverkeys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/store"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// fakeNet routes fclient's matrix://name/... requests to TLS httptest
// servers by server name, the way a resolver would route them to hosts.
type fakeNet struct {
	mu      sync.Mutex
	servers map[spec.ServerName]*httptest.Server
	hits    map[spec.ServerName]*atomic.Int64
}

func newFakeNet() *fakeNet {
	return &fakeNet{servers: map[spec.ServerName]*httptest.Server{}, hits: map[spec.ServerName]*atomic.Int64{}}
}

func (n *fakeNet) RoundTrip(req *http.Request) (*http.Response, error) {
	n.mu.Lock()
	srv := n.servers[spec.ServerName(req.URL.Host)]
	n.mu.Unlock()
	if srv == nil {
		return nil, fmt.Errorf("fakeNet: no route to %s", req.URL.Host)
	}
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host, r.Host = "https", srv.Listener.Addr().String(), req.URL.Host
	return srv.Client().Transport.RoundTrip(r)
}

// client is an fclient client that only reaches the servers of n.
func (n *fakeNet) client() *fclient.Client { return fclient.NewClient(fclient.WithTransport(n)) }

// serve publishes k's endpoints as server name over real TLS and counts
// the requests it gets.
func (n *fakeNet) serve(t *testing.T, name spec.ServerName, k *Keys) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	k.Register(mux)
	hits := &atomic.Int64{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	n.mu.Lock()
	n.servers[name], n.hits[name] = srv, hits
	n.mu.Unlock()
	return srv
}

func (n *fakeNet) hitCount(name spec.ServerName) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h := n.hits[name]; h != nil {
		return h.Load()
	}
	return 0
}

func newIdentity(t *testing.T, name spec.ServerName, version string) Identity {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Identity{ServerName: name, KeyID: gomatrixserverlib.KeyID("ed25519:" + version), Key: priv}
}

func openDB(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newDB opens a fresh bbolt file closed at the end of the test.
func newDB(t *testing.T) *store.DB {
	t.Helper()
	db := openDB(t, filepath.Join(t.TempDir(), "hearth.db"))
	t.Cleanup(func() { db.Close() })
	return db
}

func sign(t *testing.T, id Identity, obj string) []byte {
	t.Helper()
	signed, err := gomatrixserverlib.SignJSON(string(id.ServerName), id.KeyID, id.Key, []byte(obj))
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// verify checks msg as signed by server at time at, with the strict
// validity rules of room versions 5+ and of request authentication.
func verify(t *testing.T, ring gomatrixserverlib.JSONVerifier, server spec.ServerName, msg []byte, at time.Time) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := ring.VerifyJSONs(ctx, []gomatrixserverlib.VerifyJSONRequest{{
		ServerName: server, AtTS: spec.AsTimestamp(at), Message: msg,
		ValidityCheckingFunc: gomatrixserverlib.StrictValiditySignatureCheck,
	}})
	if err != nil {
		t.Fatalf("VerifyJSONs: %v", err)
	}
	return res[0].Error
}

// bucketEntries counts the entries of the serverkeys bucket.
func bucketEntries(t *testing.T, db *store.DB) int {
	t.Helper()
	n := 0
	db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.ServerKeys)
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n
}

func readRecord(t *testing.T, db *store.DB, server spec.ServerName, id gomatrixserverlib.KeyID) (keyRecord, bool) {
	t.Helper()
	var rec keyRecord
	var ok bool
	db.View(func(tx *store.Tx) error {
		rec, ok = decodeKeyRecord(tx.Get(store.ServerKeys, keyKey(server, id)))
		return nil
	})
	return rec, ok
}

func writeRecord(t *testing.T, db *store.DB, server spec.ServerName, id gomatrixserverlib.KeyID, rec keyRecord) {
	t.Helper()
	err := db.Update(context.Background(), func(tx *store.Tx) error {
		return tx.Put(store.ServerKeys, keyKey(server, id), rec.encode())
	})
	if err != nil {
		t.Fatal(err)
	}
}
