package matrix_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/calls/turn"
)

// turnProvider is what the daemon hands the API (daemon/turn.go): a
// calls/turn provider behind the small interface of voip.go.
type turnProvider struct{ turn.Provider }

func (p turnProvider) TURNCredentials(userID, host string) ([]string, string, string, time.Duration, bool) {
	uris, c := p.Credentials(userID, host)
	return uris, c.Username, c.Password, c.TTL, true
}

// GET /voip/turnServer (Client-Server API §"Voice over IP") with the
// built-in relay: credentials of the TURN REST scheme for the caller,
// URIs over UDP and TCP, the ttl; the spec's schema; 401 without a token;
// M_LIMIT_EXCEEDED past a few a minute.
func TestTurnServer(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	c := specChecker{ts, sp}
	const path = "/_matrix/client/v3/voip/turnServer"
	secret := []byte("the relay's secret")
	relay, err := turn.Start(turn.Config{Secret: secret, Realm: testServerName, Listen: "127.0.0.1:0",
		Scope: turn.Scope{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	ts.API.SetTURN(turnProvider{relay})
	alice := ts.register(t, "alice")

	c.call(t, "GET", path, "", nil).wantError(t, 401, "M_MISSING_TOKEN")
	c.call(t, "GET", path, "forged", nil).wantError(t, 401, "M_UNKNOWN_TOKEN")

	before := time.Now().Unix()
	r := c.call(t, "GET", path, alice.Token, nil)
	r.wantStatus(t, 200)
	var got struct {
		Username, Password string
		URIs               []string
		TTL                int64
	}
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	exp, user, _ := strings.Cut(got.Username, ":")
	var expiry int64
	fmt.Sscan(exp, &expiry)
	if user != alice.ID || expiry < before+86400 || expiry > time.Now().Unix()+86400 {
		t.Errorf("username %q: want <now+86400>:%s", got.Username, alice.ID)
	}
	if got.Password != turn.Password(secret, got.Username) {
		t.Errorf("password %q is not the HMAC of the username", got.Password)
	}
	want := turn.URIs("127.0.0.1", relay.Port())
	if got.TTL != 86400 || strings.Join(got.URIs, " ") != strings.Join(want, " ") {
		t.Errorf("uris %v ttl %d; want %v and 86400", got.URIs, got.TTL, want)
	}

	for i := 0; i < 4; i++ { // five in all within the burst
		c.call(t, "GET", path, alice.Token, nil).wantStatus(t, 200)
	}
	limited := c.call(t, "GET", path, alice.Token, nil)
	if e := limited.wantError(t, 429, "M_LIMIT_EXCEEDED"); e["retry_after_ms"] == nil {
		t.Errorf("429 without retry_after_ms: %s", limited.Body)
	}
	bob := ts.register(t, "bob")
	c.call(t, "GET", path, bob.Token, nil).wantStatus(t, 200) // the limit is per user
}

// With an external TURN server configured, its URIs and the shared
// secret's credentials are handed out; with none, {} (as Synapse does).
func TestTurnServerExternalAndNone(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	const path = "/_matrix/client/v3/voip/turnServer"
	if r := ts.do(t, "GET", path, alice.Token, nil); r.Status != 200 || strings.TrimSpace(string(r.Body)) != "{}" {
		t.Fatalf("without TURN: %d %s, want 200 {}", r.Status, r.Body)
	}
	ext := turn.External{URIs: []string{"turns:turn.example.org:5349?transport=tcp"}, Secret: []byte("coturn secret"), TTL: time.Hour}
	ts.API.SetTURN(turnProvider{ext})
	m := ts.do(t, "GET", path, alice.Token, nil).json(t)
	if m["uris"].([]any)[0] != "turns:turn.example.org:5349?transport=tcp" || m["ttl"].(float64) != 3600 ||
		m["password"] != turn.Password([]byte("coturn secret"), m["username"].(string)) {
		t.Fatalf("external: %v", m)
	}
}
