package queue

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/internal/stream"
)

const (
	origin   = "test.local"
	keyID    = "ed25519:t"
	remoteHS = "remote.test"
)

// node is this server's parts over one bbolt file: store, notifier, the
// real room engine, and a federation client that really signs requests.
type node struct {
	path   string
	db     *store.DB
	n      *stream.Notifier
	engine *room.Engine
	client fclient.FederationClient
}

func openNode(t *testing.T, path string, key ed25519.PrivateKey, r *remote) *node {
	t.Helper()
	nd := &node{path: path}
	st, err := room.Open(room.Options{Path: path, Engine: room.Config{ServerName: origin, KeyID: keyID, PrivateKey: key}})
	if err != nil {
		t.Fatal(err)
	}
	nd.db, nd.n, nd.engine = st.DB, st.Notifier, st.Engine
	nd.client = fclient.NewFederationClient(
		[]*fclient.SigningIdentity{{ServerName: origin, KeyID: keyID, PrivateKey: key}},
		fclient.WithTransport(r.transport()))
	return nd
}

func newNode(t *testing.T, r *remote) (*node, ed25519.PrivateKey) {
	key := r.key()
	nd := openNode(t, filepath.Join(t.TempDir(), "h.db"), key, r)
	t.Cleanup(func() { nd.db.Close() })
	return nd, key
}

// queue returns a started queue over nd, stopped at cleanup (before the
// store closes: cleanups run last-registered first).
func (nd *node) queue(t *testing.T, tune func(*Queue)) *Queue {
	q := New(nd.db, nd.engine, nd.n, nd.client, origin)
	if tune != nil {
		tune(q)
	}
	q.Start()
	t.Cleanup(q.Stop)
	return q
}

// got is one transaction as the remote received it.
type got struct {
	Dest, ID string
	Body     []byte
	Txn      gomatrixserverlib.Transaction
}

// remote is a federation receiver: PUT /_matrix/federation/v1/send/{txnId}
// over TLS, checking the X-Matrix signature against this server's key.
type remote struct {
	t   *testing.T
	srv *httptest.Server
	pub ed25519.PublicKey

	mu       sync.Mutex
	attempts []got           // every request that verified
	accepted []got           // those answered 200
	reply    func(g got) int // status for a request; nil: 200
	hang     chan struct{}   // while non-nil, requests block until it closes
	arrived  chan struct{}   // signalled on every request
}

func newRemote(t *testing.T) *remote {
	r := &remote{t: t, arrived: make(chan struct{}, 1000)}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /_matrix/federation/v1/send/{txnID}", r.send)
	r.srv = httptest.NewTLSServer(mux)
	t.Cleanup(func() {
		r.setHang(false)
		r.srv.Close()
	})
	return r
}

func (r *remote) send(w http.ResponseWriter, req *http.Request) {
	fr, errResp := fclient.VerifyHTTPRequest(req, time.Now(), "",
		func(s spec.ServerName) bool { return strings.HasSuffix(string(s), ".test") }, r)
	if fr == nil {
		w.WriteHeader(errResp.Code)
		json.NewEncoder(w).Encode(errResp.JSON)
		return
	}
	g := got{Dest: string(fr.Destination()), ID: req.PathValue("txnID"), Body: fr.Content()}
	if err := json.Unmarshal(g.Body, &g.Txn); err != nil || g.Txn.Origin != origin {
		w.WriteHeader(400)
		return
	}
	r.mu.Lock()
	r.attempts = append(r.attempts, g)
	hang, reply := r.hang, r.reply
	r.mu.Unlock()
	r.arrived <- struct{}{}
	if hang != nil {
		select {
		case <-hang:
		case <-req.Context().Done():
			return
		}
	}
	code := 200
	if reply != nil {
		code = reply(g)
	}
	w.WriteHeader(code)
	if code != 200 {
		errcode := "M_UNKNOWN"
		if code == 400 {
			errcode = "M_BAD_JSON"
		}
		json.NewEncoder(w).Encode(map[string]string{"errcode": errcode, "error": "no"})
		return
	}
	r.mu.Lock()
	r.accepted = append(r.accepted, g)
	r.mu.Unlock()
	w.Write([]byte(`{"pdus":{}}`))
}

// VerifyJSONs checks signatures with the origin's one key: the key
// fetching itself is federation/serverkeys' business, not this test's.
func (r *remote) VerifyJSONs(_ context.Context, reqs []gomatrixserverlib.VerifyJSONRequest) ([]gomatrixserverlib.VerifyJSONResult, error) {
	out := make([]gomatrixserverlib.VerifyJSONResult, len(reqs))
	for i, q := range reqs {
		out[i].Error = gomatrixserverlib.VerifyJSON(string(q.ServerName), keyID, r.pub, q.Message)
	}
	return out, nil
}

// key makes this server's signing key and tells the remote about it.
func (r *remote) key() ed25519.PrivateKey {
	pub, key, _ := ed25519.GenerateKey(nil)
	r.pub = pub
	return key
}

func (r *remote) setReply(f func(g got) int) {
	r.mu.Lock()
	r.reply = f
	r.mu.Unlock()
}

func (r *remote) setHang(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case on && r.hang == nil:
		r.hang = make(chan struct{})
	case !on && r.hang != nil:
		close(r.hang)
		r.hang = nil
	}
}

func (r *remote) snapshot() (attempts, accepted []got) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]got(nil), r.attempts...), append([]got(nil), r.accepted...)
}

// transport sends matrix://dest/... to the test server, keeping the
// destination as the Host header.
func (r *remote) transport() http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		u, _ := url.Parse(r.srv.URL)
		out := req.Clone(req.Context())
		out.Host = req.URL.Host
		out.URL.Scheme, out.URL.Host = "https", u.Host
		return r.srv.Client().Transport.RoundTrip(out)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// eventually waits (up to 10 s) for cond, failing the test otherwise.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func status(q *Queue, name string) Destination {
	for _, d := range q.Status() {
		if d.Name == name {
			return d
		}
	}
	return Destination{Name: name}
}

func pduCount(gs []got) int {
	n := 0
	for _, g := range gs {
		n += len(g.Txn.PDUs)
	}
	return n
}

func eduCount(gs []got) int {
	n := 0
	for _, g := range gs {
		n += len(g.Txn.EDUs)
	}
	return n
}
