package federation

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestNonNumericPortsInServerNamesRejected: a server name with a port
// that is not a number is a malformed request, 400 M_INVALID_PARAM,
// wherever it arrives: in a user ID of a federation query or path
// (Complement's TestInboundFederationProfile), or as the X-Matrix
// origin (sytest's "Non-numeric ports in server names are rejected"),
// where no key lookup is made for it.
func TestNonNumericPortsInServerNamesRejected(t *testing.T) {
	n := newUKNet()
	hs1, hs2 := newUKServer(t, n, "hs1.test", false), newUKServer(t, n, "hs2.test", false)
	hs1.addUser(t, "alice", "ADEV", false)
	for _, path := range []string{
		"/_matrix/federation/v1/query/profile?user_id=@user1:localhost:http&field=displayname",
		"/_matrix/federation/v1/user/devices/@user1:localhost:http",
	} {
		if status, errcode, _ := hs2.call(t, "GET", "hs1.test", path, nil); status != 400 || errcode != "M_INVALID_PARAM" {
			t.Errorf("GET %s: %d %s, want 400 M_INVALID_PARAM", path, status, errcode)
		}
	}
	// A well-formed unknown user is still 404.
	if status, errcode, _ := hs2.call(t, "GET", "hs1.test", "/_matrix/federation/v1/query/profile?user_id=@nobody:hs1.test", nil); status != 404 {
		t.Errorf("unknown user: %d %s, want 404", status, errcode)
	}

	_, key, _ := ed25519.GenerateKey(nil)
	fr := fclient.NewFederationRequest("GET", "localhost:http", "hs1.test", "/_matrix/federation/v1/query/profile?user_id=@alice:hs1.test")
	if err := fr.Sign("localhost:http", "ed25519:k", key); err != nil {
		t.Fatal(err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	req.Body = http.NoBody // as the server gives a handler
	rec := httptest.NewRecorder()
	hs1.svc.Handler().ServeHTTP(rec, req)
	var body struct {
		Errcode string `json:"errcode"`
	}
	json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusBadRequest || body.Errcode != "M_INVALID_PARAM" {
		t.Errorf("X-Matrix origin localhost:http: %d %s, want 400 M_INVALID_PARAM", rec.Code, rec.Body)
	}
	if !validServerName(spec.ServerName("[::1]:8448")) || !validServerName("hs1.test:8448") || validServerName("hs1.test:http") {
		t.Error("validServerName disagrees with the spec's grammar")
	}
}
