package federation

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
)

// putSignedTxn puts a transaction of pdus (or, if body is not nil, that
// body) through the service's mux, the request signed as peer.test with
// key, and returns the status, errcode and results per event ID.
func putSignedTxn(t *testing.T, f *fzServer, txnID string, pdus []gomatrixserverlib.PDU, body any, key ed25519.PrivateKey) (int, string, map[string]string) {
	t.Helper()
	if body == nil {
		raws := make([]json.RawMessage, len(pdus))
		for i, p := range pdus {
			raws[i] = p.JSON()
		}
		body = map[string]any{"origin": fzPeer, "origin_server_ts": 1, "pdus": raws, "edus": []any{}}
	}
	fr := fclient.NewFederationRequest("PUT", fzPeer, fzHome, "/_matrix/federation/v1/send/"+txnID)
	if err := fr.SetContent(body); err != nil {
		t.Fatal(err)
	}
	if err := fr.Sign(fzPeer, f.peerID, key); err != nil {
		t.Fatal(err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	req = req.WithContext(context.Background())
	req.RemoteAddr = "192.0.2.1:4000"
	rec := httptest.NewRecorder()
	f.svc.Mux().ServeHTTP(rec, req)
	var res struct {
		Errcode string `json:"errcode"`
		PDUs    map[string]struct {
			Error string `json:"error"`
		} `json:"pdus"`
	}
	json.Unmarshal(rec.Body.Bytes(), &res)
	out := map[string]string{}
	for id, r := range res.PDUs {
		out[id] = r.Error
	}
	return rec.Code, res.Errcode, out
}

// TestSendBadRequestSignatureChangesNothing: /send checks the request's
// X-Matrix signature beside its events' checks (send_auth.go), so a
// transaction of good events in a request signed with another key is
// parsed and checked, but refused with 401 M_UNAUTHORIZED (Server-Server
// API §"Request Authentication") with nothing stored and no answer
// recorded: the same transaction ID, properly signed, is then taken in
// full. A malformed transaction with a bad signature gets the
// signature's error, as when the body was read only after the check.
func TestSendBadRequestSignatureChangesNothing(t *testing.T) {
	r := newIngestRoom(t)
	chain := r.chain(t, 5)
	_, wrong, _ := ed25519.GenerateKey(nil)
	alice := "@alice:" + fzHome

	status, errcode, _ := putSignedTxn(t, r.f, "forged", chain, nil, wrong)
	if status != http.StatusUnauthorized || errcode != "M_UNAUTHORIZED" {
		t.Fatalf("badly signed request: %d %s, want 401 M_UNAUTHORIZED", status, errcode)
	}
	for _, p := range chain {
		if _, err := r.f.rooms.Event(alice, r.id, p.EventID()); err == nil {
			t.Fatalf("%s was stored from a badly signed request", p.EventID())
		}
	}
	tooMany := make([]json.RawMessage, maxPDUs+1)
	for i := range tooMany {
		tooMany[i] = chain[0].JSON()
	}
	for name, body := range map[string]any{
		"too many PDUs":  map[string]any{"origin": fzPeer, "pdus": tooMany},
		"another origin": map[string]any{"origin": "other.test", "pdus": []any{}},
		"pdus not array": map[string]any{"origin": fzPeer, "pdus": 3},
	} {
		status, errcode, _ := putSignedTxn(t, r.f, "bad-"+fmt.Sprint(len(name)), nil, body, wrong)
		if status != http.StatusUnauthorized || errcode != "M_UNAUTHORIZED" {
			t.Errorf("%s, badly signed: %d %s, want 401 M_UNAUTHORIZED", name, status, errcode)
		}
	}

	status, errcode, res := putSignedTxn(t, r.f, "forged", chain, nil, r.f.peerSK)
	if status != http.StatusOK {
		t.Fatalf("the same transaction, signed: %d %s", status, errcode)
	}
	for _, p := range chain {
		if e, ok := res[p.EventID()]; !ok || e != "" {
			t.Errorf("%s: result %q (present %v), want accepted", p.EventID(), e, ok)
		}
		if _, err := r.f.rooms.Event(alice, r.id, p.EventID()); err != nil {
			t.Errorf("%s not stored: %v", p.EventID(), err)
		}
	}
}
