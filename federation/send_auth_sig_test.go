package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
)

// TestVerifyRequestSigAgreesWithGomatrixserverlib: verifyRequestSig, which
// checks a request's X-Matrix signature over bytes it makes itself,
// accepts a request only where fclient.VerifyHTTPRequest does (with the
// same origin), and does accept what peers send: a transaction marshalled
// from gomatrixserverlib's struct (top-level keys out of order around
// canonical events), from a map, indented, with content encoding/json
// escapes; it leaves to gomatrixserverlib a wrong key, an unknown key ID,
// a body, URI, method or destination other than the signed one, a
// Content-Type other than JSON and a query string it would have to
// escape.
func TestVerifyRequestSigAgreesWithGomatrixserverlib(t *testing.T) {
	r := newIngestRoom(t) // mallory's join fetched and cached peer.test's key
	ring := r.f.svc.cfg.KeyRing
	chain := r.chain(t, 3)
	raws := make([]json.RawMessage, len(chain))
	for i, p := range chain {
		raws[i] = p.JSON()
	}
	escaped := r.chain(t, 1)[0] // content the peer's marshalling escapes
	escaped, _ = escaped.SetUnsigned(map[string]any{"note": "<&>"})
	_, wrong, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	uri := "/_matrix/federation/v1/send/t1"

	type variant struct {
		name  string
		req   *http.Request
		body  []byte
		taken bool
	}
	// signed returns a request signed over content as fr.SetContent
	// marshals it, then edit may change what is sent.
	signed := func(method, path string, content any, key ed25519.PrivateKey, keyID gomatrixserverlib.KeyID,
		edit func(*http.Request, []byte) []byte) (*http.Request, []byte) {
		fr := fclient.NewFederationRequest(method, fzPeer, fzHome, path)
		if err := fr.SetContent(content); err != nil {
			t.Fatal(err)
		}
		if err := fr.Sign(fzPeer, keyID, key); err != nil {
			t.Fatal(err)
		}
		req, err := fr.HTTPRequest()
		if err != nil {
			t.Fatal(err)
		}
		body := fr.Content()
		if edit != nil {
			body = edit(req, body)
		}
		return req, body
	}
	txn := gomatrixserverlib.Transaction{TransactionID: "t1", Origin: fzPeer, Destination: fzHome, PDUs: raws}
	asMap := map[string]any{"origin": fzPeer, "origin_server_ts": 1, "pdus": raws, "edus": []any{}}
	var variants []variant
	add := func(name string, taken bool, req *http.Request, body []byte) {
		variants = append(variants, variant{name, req, body, taken})
	}
	req, body := signed("PUT", uri, txn, r.f.peerSK, r.f.peerID, nil)
	add("transaction struct", true, req, body)
	req, body = signed("PUT", uri, asMap, r.f.peerSK, r.f.peerID, nil)
	add("map", true, req, body)
	req, body = signed("PUT", uri, asMap, r.f.peerSK, r.f.peerID, func(_ *http.Request, b []byte) []byte {
		var out bytes.Buffer
		json.Indent(&out, b, "", "  ")
		return out.Bytes()
	})
	add("indented", true, req, body)
	req, body = signed("PUT", uri, map[string]any{"origin": fzPeer, "pdus": []json.RawMessage{escaped.JSON()}}, r.f.peerSK, r.f.peerID, nil)
	add("content with escapes", true, req, body)
	req, body = signed("PUT", uri, txn, wrong, r.f.peerID, nil)
	add("wrong key", false, req, body)
	req, body = signed("PUT", uri, txn, wrong, "ed25519:other", nil)
	add("unknown key ID", false, req, body)
	req, body = signed("PUT", uri, txn, r.f.peerSK, r.f.peerID, func(_ *http.Request, b []byte) []byte {
		return bytes.Replace(b, []byte(`"origin_server_ts":`), []byte(`"origin_server_ts":1`), 1)
	})
	add("body changed", false, req, body)
	req, body = signed("PUT", uri, txn, r.f.peerSK, r.f.peerID, func(q *http.Request, b []byte) []byte {
		q.URL.Path = "/_matrix/federation/v1/send/t2"
		return b
	})
	add("URI changed", false, req, body)
	req, body = signed("PUT", uri, txn, r.f.peerSK, r.f.peerID, func(q *http.Request, b []byte) []byte {
		q.Method = "POST"
		return b
	})
	add("method changed", false, req, body)
	req, body = signed("PUT", uri, txn, r.f.peerSK, r.f.peerID, func(q *http.Request, b []byte) []byte {
		q.Header.Set("Authorization", q.Header.Get("Authorization")+`,destination="other.test"`)
		return b
	})
	add("destination changed", false, req, body)
	req, body = signed("PUT", uri, txn, r.f.peerSK, r.f.peerID, func(q *http.Request, b []byte) []byte {
		q.Header.Set("Content-Type", "text/plain")
		return b
	})
	add("not JSON", false, req, body)
	req, body = signed("PUT", uri+"?a=1&b=2", txn, r.f.peerSK, r.f.peerID, nil)
	add("query string with '&'", false, req, body)

	req, body = signed("PUT", uri, map[string]any{"a": 1, "a!": 2, "a#": 3, "b": []int{1}}, r.f.peerSK, r.f.peerID, nil)
	add("keys prefixes of others", true, req, body)
	fr := fclient.NewFederationRequest("PUT", fzPeer, "other.test", uri)
	fr.SetContent(txn)
	fr.Sign(fzPeer, r.f.peerID, r.f.peerSK)
	req, _ = fr.HTTPRequest()
	add("signed for another server", false, req, fr.Content())
	req, body = signed("PUT", uri, txn, r.f.peerSK, r.f.peerID, nil)
	add("key no longer valid", false, req, body)
	later := now.Add(10 * 365 * 24 * time.Hour)

	for _, v := range variants {
		v.req = v.req.WithContext(context.Background())
		now := now
		if v.name == "key no longer valid" {
			now = later
		}
		fr, ok := verifyRequestSig(context.Background(), v.req, v.body, now, fzHome, ring)
		v.req.Body = io.NopCloser(bytes.NewReader(v.body))
		want, resp := fclient.VerifyHTTPRequest(v.req, now, fzHome, nil, ring)
		if ok && (want == nil || fr.Origin() != want.Origin()) {
			t.Errorf("%s: accepted, but gomatrixserverlib answers %d %v", v.name, resp.Code, resp.JSON)
		}
		if ok != v.taken {
			t.Errorf("%s: accepted here: %v, want %v (gomatrixserverlib: %d)", v.name, ok, v.taken, resp.Code)
		}
		if v.taken && want == nil {
			t.Errorf("%s: gomatrixserverlib refuses it (%d %v): the variant is not what a peer sends", v.name, resp.Code, resp.JSON)
		}
	}
}
