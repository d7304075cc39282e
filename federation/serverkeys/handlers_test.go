package serverkeys

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func post(t *testing.T, srv *httptest.Server, path string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// Our /key/v2/server answer is self-signed, passes CheckKeys, always has an
// old_verify_keys object, lasts a day, and lists the old key after a
// rotation.
func TestServeOwnKeys(t *testing.T) {
	net := newFakeNet()
	first := newIdentity(t, "local.test", "a")
	srv := net.serve(t, "local.test", New(newDB(t), first, net.client(), nil))
	code, body := get(t, srv, "/_matrix/key/v2/server")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	keys := checkOwn(t, first, body)
	if !bytes.Contains(body, []byte(`"old_verify_keys":{}`)) || len(keys.OldVerifyKeys) != 0 {
		t.Fatalf("want an empty old_verify_keys object: %s", body)
	}
	if v := keys.ValidUntilTS.Time(); v.Before(time.Now().Add(23*time.Hour)) || v.After(time.Now().Add(25*time.Hour)) {
		t.Fatalf("valid_until_ts %v, want about a day ahead", v)
	}

	// Rotation: the daemon hands over a new key and the old one.
	rotated := newIdentity(t, "local.test", "b")
	expired := spec.AsTimestamp(time.Now())
	rotated.Old = []OldKey{{KeyID: first.KeyID, Public: first.Key.Public().(ed25519.PublicKey), ExpiredTS: expired}}
	srv = net.serve(t, "local.test", New(newDB(t), rotated, net.client(), nil))
	_, body = get(t, srv, "/_matrix/key/v2/server")
	keys = checkOwn(t, rotated, body)
	old, ok := keys.OldVerifyKeys[first.KeyID]
	if !ok || old.ExpiredTS != expired || !bytes.Equal(old.Key, first.Key.Public().(ed25519.PublicKey)) {
		t.Fatalf("old key missing after rotation: %s", body)
	}
	if _, ok := keys.VerifyKeys[first.KeyID]; ok {
		t.Fatal("old key still listed as current")
	}
}

func checkOwn(t *testing.T, id Identity, body []byte) gomatrixserverlib.ServerKeys {
	t.Helper()
	var keys gomatrixserverlib.ServerKeys
	if err := json.Unmarshal(body, &keys); err != nil {
		t.Fatal(err)
	}
	if checks, _ := gomatrixserverlib.CheckKeys(id.ServerName, time.Now(), keys); !checks.AllChecksOK {
		t.Fatalf("CheckKeys failed: %+v for %s", checks, body)
	}
	if err := gomatrixserverlib.VerifyJSON(string(id.ServerName), id.KeyID, id.Key.Public().(ed25519.PublicKey), body); err != nil {
		t.Fatalf("VerifyJSON: %v", err)
	}
	return keys
}

// A notary answers with the other server's own response plus its
// signature, by GET and POST, keeps answering from its cache when that
// server is gone, and a KeyRing that can only reach the notary verifies
// through it after learning the notary's keys on first use.
func TestNotaryQuery(t *testing.T) {
	net := newFakeNet()
	remoteID := newIdentity(t, "remote.test", "r1")
	remoteSrv := net.serve(t, "remote.test", New(newDB(t), remoteID, net.client(), nil))
	notaryID := newIdentity(t, "notary.test", "n1")
	notaryKeys := New(newDB(t), notaryID, net.client(), nil)
	notarySrv := net.serve(t, "notary.test", notaryKeys)

	checkNotaryAnswer := func(body []byte) {
		t.Helper()
		var out struct {
			ServerKeys []json.RawMessage `json:"server_keys"`
		}
		if err := json.Unmarshal(body, &out); err != nil || len(out.ServerKeys) != 1 {
			t.Fatalf("want one result: %s (%v)", body, err)
		}
		raw := out.ServerKeys[0]
		if err := gomatrixserverlib.VerifyJSON("remote.test", remoteID.KeyID, remoteID.Key.Public().(ed25519.PublicKey), raw); err != nil {
			t.Fatalf("origin signature: %v", err)
		}
		if err := gomatrixserverlib.VerifyJSON("notary.test", notaryID.KeyID, notaryID.Key.Public().(ed25519.PublicKey), raw); err != nil {
			t.Fatalf("notary signature: %v", err)
		}
	}
	code, body := post(t, notarySrv, "/_matrix/key/v2/query",
		[]byte(`{"server_keys":{"remote.test":{"`+string(remoteID.KeyID)+`":{"minimum_valid_until_ts":1}}}}`))
	if code != http.StatusOK {
		t.Fatalf("POST status %d: %s", code, body)
	}
	checkNotaryAnswer(body)
	code, body = get(t, notarySrv, "/_matrix/key/v2/query/remote.test")
	if code != http.StatusOK {
		t.Fatalf("GET status %d: %s", code, body)
	}
	checkNotaryAnswer(body)

	// A KeyRing that cannot reach remote.test directly goes through the
	// notary, whose keys it has to learn first.
	onlyNotary := newFakeNet()
	onlyNotary.servers["notary.test"] = notarySrv
	local := New(newDB(t), newIdentity(t, "local.test", "l1"), onlyNotary.client(), []Notary{{ServerName: "notary.test"}})
	if err := verify(t, local.KeyRing(), "remote.test", sign(t, remoteID, `{"via":"notary"}`), time.Now()); err != nil {
		t.Fatalf("verify through notary: %v", err)
	}
	if len(local.currentKeys("notary.test")) != 1 {
		t.Fatal("notary keys not cached after first use")
	}

	// A cached answer that is fresh and valid long enough is served as it
	// is; one that falls short of minimum_valid_until_ts is fetched again
	// (once the last fetch is more than minRefetch old).
	far := time.Now().Add(30 * 24 * time.Hour).UnixMilli()
	farQuery := fmt.Sprintf("/_matrix/key/v2/query/remote.test?minimum_valid_until_ts=%d", far)
	hits := net.hitCount("remote.test")
	get(t, notarySrv, farQuery)
	if net.hitCount("remote.test") != hits {
		t.Fatal("server fetched again within minRefetch")
	}
	notaryKeys.ageCache(t, "remote.test", 2*minRefetch)
	if code, body = get(t, notarySrv, "/_matrix/key/v2/query/remote.test?minimum_valid_until_ts=1"); code != http.StatusOK {
		t.Fatalf("GET status %d: %s", code, body)
	}
	checkNotaryAnswer(body)
	if net.hitCount("remote.test") != hits {
		t.Fatal("fresh cached answer fetched again")
	}
	if code, body = get(t, notarySrv, farQuery); code != http.StatusOK {
		t.Fatalf("GET status %d: %s", code, body)
	}
	checkNotaryAnswer(body)
	if net.hitCount("remote.test") == hits {
		t.Fatal("minimum_valid_until_ts beyond the cached answer did not trigger a fetch")
	}

	// The notary keeps serving its last answer once the server is gone,
	// even when asked for more validity than it has.
	remoteSrv.Close()
	notaryKeys.ageCache(t, "remote.test", 2*minRefetch)
	code, body = get(t, notarySrv, farQuery)
	if code != http.StatusOK {
		t.Fatalf("GET status %d: %s", code, body)
	}
	checkNotaryAnswer(body)

	// Unknown, unreachable servers are left out, not errors.
	code, body = post(t, notarySrv, "/_matrix/key/v2/query", []byte(`{"server_keys":{"gone.test":{}}}`))
	if code != http.StatusOK || !bytes.Equal(bytes.TrimSpace(body), []byte(`{"server_keys":[]}`)) {
		t.Fatalf("status %d: %s", code, body)
	}
}

// Oversized, malformed and over-wide queries are refused before anything
// is fetched or stored.
func TestQueryRejectsBadBodies(t *testing.T) {
	net := newFakeNet()
	net.serve(t, "remote.test", New(newDB(t), newIdentity(t, "remote.test", "r1"), net.client(), nil))
	db := newDB(t)
	srv := net.serve(t, "notary.test", New(db, newIdentity(t, "notary.test", "n1"), net.client(), nil))

	var many strings.Builder
	many.WriteString(`{"server_keys":{"remote.test":{}`)
	for i := range maxQueryServers {
		fmt.Fprintf(&many, `,"s%d.test":{}`, i)
	}
	many.WriteString(`}}`)
	huge := `{"server_keys":{"remote.test":{}},"pad":"` + strings.Repeat("x", maxQueryBody) + `"}`
	cases := []struct {
		name, body string
		status     int
		errcode    string
	}{
		{"too large", huge, 413, "M_TOO_LARGE"},
		{"garbage", `{"server_keys":{"remote.test":`, 400, "M_NOT_JSON"},
		{"invalid utf-8", "{\"server_keys\":{\"remote.test\xff\":{}}}", 400, "M_NOT_JSON"},
		{"array", `[{"server_keys":{"remote.test":{}}}]`, 400, "M_BAD_JSON"},
		{"missing server_keys", `{"remote.test":{}}`, 400, "M_BAD_JSON"},
		{"null server_keys", `{"server_keys":null}`, 400, "M_BAD_JSON"},
		{"criteria not an object", `{"server_keys":{"remote.test":["ed25519:r1"]}}`, 400, "M_BAD_JSON"},
		{"negative timestamp", `{"server_keys":{"remote.test":{"ed25519:r1":{"minimum_valid_until_ts":-1}}}}`, 400, "M_BAD_JSON"},
		{"bad server name", `{"server_keys":{"remote.test/../x":{}}}`, 400, "M_INVALID_PARAM"},
		{"too many servers", many.String(), 413, "M_TOO_LARGE"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := post(t, srv, "/_matrix/key/v2/query", []byte(c.body))
			var e struct {
				Errcode string `json:"errcode"`
			}
			json.Unmarshal(body, &e)
			if code != c.status || e.Errcode != c.errcode {
				t.Fatalf("got %d %s, want %d %s", code, body, c.status, c.errcode)
			}
		})
	}
	code, _ := get(t, srv, "/_matrix/key/v2/query/remote.test?minimum_valid_until_ts=soon")
	if code != http.StatusBadRequest {
		t.Fatalf("bad minimum_valid_until_ts: status %d", code)
	}
	if n := bucketEntries(t, db); n != 0 {
		t.Fatalf("rejected queries stored %d entries", n)
	}
	if n := net.hitCount("remote.test"); n != 0 {
		t.Fatalf("rejected queries fetched from remote.test %d times", n)
	}
	// The same server, asked properly, is fetched and stored.
	if code, body := post(t, srv, "/_matrix/key/v2/query", []byte(`{"server_keys":{"remote.test":{}}}`)); code != 200 || bucketEntries(t, db) == 0 {
		t.Fatalf("valid query: %d %s", code, body)
	}
}

// ageCache makes the cached key response of server look fetched age ago.
func (k *Keys) ageCache(t *testing.T, server spec.ServerName, age time.Duration) {
	t.Helper()
	r, ok := k.loadResponse(server)
	if !ok {
		t.Fatalf("no cached response for %s", server)
	}
	r.FetchedAt = spec.AsTimestamp(time.Now().Add(-age))
	if err := k.storeResults(t.Context(), nil, &r); err != nil {
		t.Fatal(err)
	}
}

// TestNotaryLimitPerClient: the notary endpoints are unauthenticated and
// every server named may cost an outbound fetch, so one client address may
// name only notaryBurst servers at once (then notaryRate a second); over
// that it gets 429 M_LIMIT_EXCEEDED and nothing is fetched.
func TestNotaryLimitPerClient(t *testing.T) {
	net := newFakeNet()
	net.serve(t, "remote.test", New(newDB(t), newIdentity(t, "remote.test", "r1"), net.client(), nil))
	srv := net.serve(t, "notary.test", New(newDB(t), newIdentity(t, "notary.test", "n1"), net.client(), nil))

	spent := 0
	for spent+maxQueryServers <= notaryBurst {
		var q strings.Builder
		q.WriteString(`{"server_keys":{"gone0.test":{}`)
		for i := 1; i < maxQueryServers; i++ {
			fmt.Fprintf(&q, `,"gone%d-%d.test":{}`, spent, i)
		}
		q.WriteString(`}}`)
		if code, body := post(t, srv, "/_matrix/key/v2/query", []byte(q.String())); code != http.StatusOK {
			t.Fatalf("query within the burst: %d %s", code, body)
		}
		spent += maxQueryServers
	}
	for _, try := range []func() (int, []byte){
		func() (int, []byte) {
			return post(t, srv, "/_matrix/key/v2/query", []byte(`{"server_keys":{"remote.test":{},"gone.test":{}}}`))
		},
		func() (int, []byte) { return get(t, srv, "/_matrix/key/v2/query/remote.test") },
	} {
		code, body := try()
		var e struct {
			Errcode      string `json:"errcode"`
			RetryAfterMs int64  `json:"retry_after_ms"`
		}
		json.Unmarshal(body, &e)
		if code != http.StatusTooManyRequests || e.Errcode != "M_LIMIT_EXCEEDED" || e.RetryAfterMs <= 0 {
			t.Fatalf("over the limit: got %d %s, want 429 M_LIMIT_EXCEEDED with retry_after_ms", code, body)
		}
	}
	if n := net.hitCount("remote.test"); n != 0 {
		t.Fatalf("refused queries fetched from remote.test %d times", n)
	}
}
