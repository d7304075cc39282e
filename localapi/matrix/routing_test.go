package matrix_test

import (
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"testing"
)

// TestR0Aliases: the r0 paths of endpoints that still exist in v3 reach
// the same handlers (the spec's releases up to r0.6.1 named them so);
// endpoints that arrived with v1.1 or later never had an r0 path.
func TestR0Aliases(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	const r0 = "/_matrix/client/r0"
	if id := ts.do(t, "GET", r0+"/account/whoami", alice.Token, nil).str(t, "user_id"); id != alice.ID {
		t.Errorf("r0 whoami: %q", id)
	}
	roomID := ts.createRoom(t, alice, nil)
	rid := url.PathEscape(roomID)
	sent := ts.do(t, "PUT", r0+"/rooms/"+rid+"/send/m.room.message/r0txn", alice.Token, map[string]any{"msgtype": "m.text", "body": "via r0"})
	sent.wantStatus(t, 200)
	got := ts.do(t, "GET", "/_matrix/client/v3/rooms/"+rid+"/event/"+url.PathEscape(sent.str(t, "event_id")), alice.Token, nil)
	got.wantStatus(t, 200)
	ts.do(t, "GET", r0+"/rooms/"+rid+"/state/m.room.create/", alice.Token, nil).wantStatus(t, 200)
	ts.do(t, "GET", r0+"/sync?timeout=0", alice.Token, nil).wantStatus(t, 200)
	ts.do(t, "GET", r0+"/pushrules/", alice.Token, nil).wantStatus(t, 200)
	// This test server has no content repository: reaching the media
	// handler is what shows the alias works.
	if e := ts.do(t, "GET", "/_matrix/media/r0/config", alice.Token, nil).wantError(t, 404, "M_UNRECOGNIZED"); e["error"] != "the content repository is not enabled" {
		t.Errorf("media r0 alias did not reach the media handler: %v", e)
	}

	for _, p := range []string{r0 + "/room_keys/version", r0 + "/refresh", r0 + "/knock/" + rid,
		r0 + "/rooms/" + rid + "/relations/$x", r0 + "/login/get_token"} {
		ts.do(t, "GET", p, alice.Token, nil).wantError(t, 404, "M_UNRECOGNIZED")
	}
	ts.do(t, "POST", r0+"/keys/device_signing/upload", alice.Token, map[string]any{}).wantError(t, 404, "M_UNRECOGNIZED")
	ts.do(t, "POST", r0+"/keys/signatures/upload", alice.Token, map[string]any{}).wantError(t, 404, "M_UNRECOGNIZED")
}

// TestUnknownEndpoints: what Complement's TestUnknownEndpoints asks of the
// client listener, the federation and key paths included (Client-Server
// API §"Unsupported endpoints": 404 for an unknown path, 405 for a known
// path with the wrong method, both M_UNRECOGNIZED).
func TestUnknownEndpoints(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	for _, p := range []string{"/_matrix/unknown", "/_matrix/client/unknown", "/_matrix/client/v1/unknown",
		"/_matrix/client/v3/room/unknown", "/_matrix/federation/unknown", "/_matrix/federation/v1/unknown",
		"/_matrix/key/unknown", "/_matrix/key/v2/unknown", "/_matrix/media/unknown", "/_matrix/media/v3/unknown"} {
		ts.do(t, "GET", p, alice.Token, nil).wantError(t, 404, "M_UNRECOGNIZED")
	}
	for _, tc := range []struct{ method, path string }{
		{"PUT", "/_matrix/client/v3/login"},
		{"PUT", "/_matrix/federation/v1/version"},
		{"PUT", "/_matrix/key/v2/query"},
		{"PATCH", "/_matrix/media/v3/upload"},
	} {
		ts.do(t, tc.method, tc.path, alice.Token, nil).wantError(t, 405, "M_UNRECOGNIZED")
	}
	// Asked with their own method, federation paths are known but not
	// served here.
	ts.do(t, "GET", "/_matrix/federation/v1/version", "", nil).wantError(t, 404, "M_UNRECOGNIZED")
	ts.do(t, "GET", "/_matrix/key/v2/server", "", nil).wantError(t, 404, "M_UNRECOGNIZED")
}

// TestWrongMethodEverywhere: for every endpoint of the spec that Hearth
// serves, each method the spec does not define on that path is 405
// M_UNRECOGNIZED, whatever the shape of the route's pattern ({x...}
// wildcards and {$} ends included).
func TestWrongMethodEverywhere(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	param := regexp.MustCompile(`\{[^}]*\}`)
	sample := func(name string) string {
		switch name {
		case "{roomId}", "{roomIdOrAlias}":
			return url.PathEscape("!room:test.local")
		case "{userId}":
			return url.PathEscape("@someone:test.local")
		case "{eventId}":
			return url.PathEscape("$event")
		case "{roomAlias}":
			return url.PathEscape("#alias:test.local")
		}
		return "x"
	}
	methods := map[string][]string{} // concrete path → the spec's methods on it
	var paths []string
	for _, op := range sp.ops {
		p := param.ReplaceAllStringFunc(op.template, sample)
		if _, ok := methods[p]; !ok {
			paths = append(paths, p)
		}
		methods[p] = append(methods[p], op.method)
	}
	checked := 0
	for _, p := range paths {
		served := false
		for _, m := range methods[p] {
			r := ts.do(t, m, p, alice.Token, nil)
			if r.Status != 404 || !hasErrcode(r, "M_UNRECOGNIZED") {
				served = true
				break
			}
		}
		if !served {
			continue
		}
		for _, m := range []string{"GET", "PUT", "POST", "DELETE"} {
			if slices.Contains(methods[p], m) {
				continue
			}
			r := ts.do(t, m, p, alice.Token, nil)
			if r.Status != 405 || !hasErrcode(r, "M_UNRECOGNIZED") {
				t.Errorf("%s %s (the spec has %v): got %d %s, want 405 M_UNRECOGNIZED", m, p, methods[p], r.Status, r.Body)
			}
			checked++
		}
	}
	t.Logf("%d wrong-method requests on %d spec paths", checked, len(paths))
	if checked < 100 {
		t.Errorf("only %d wrong-method requests checked; the spec's endpoints were not found", checked)
	}
}

func hasErrcode(r *response, code string) bool {
	var e struct {
		Errcode string `json:"errcode"`
	}
	return json.Unmarshal(r.Body, &e) == nil && e.Errcode == code
}

// TestUnstableCrossSigningUpload: Element uploads cross-signing keys
// through the unstable prefix of MSC1756; it reaches the v3 handler.
func TestUnstableCrossSigningUpload(t *testing.T) {
	ts, c := newKeysServer(t)
	alice := ts.register(t, "alice")
	msk, ssk, usk := newEdKey(t), newEdKey(t), newEdKey(t)
	keysA := map[string]any{"master_key": crossKey(t, alice, "master", msk, nil),
		"self_signing_key": crossKey(t, alice, "self_signing", ssk, &msk), "user_signing_key": crossKey(t, alice, "user_signing", usk, &msk)}
	ts.do(t, "POST", "/_matrix/client/unstable/keys/device_signing/upload", alice.Token, keysA).wantStatus(t, 200)
	r := c.call(t, "POST", kv3+"/keys/query", alice.Token, map[string]any{"device_keys": map[string]any{alice.ID: []string{}}})
	r.wantStatus(t, 200)
	if mk, _ := r.json(t)["master_keys"].(map[string]any); mk[alice.ID] == nil {
		t.Errorf("the master key uploaded through the unstable path is not served: %s", r.Body)
	}
}
